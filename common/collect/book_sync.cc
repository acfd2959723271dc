#include "common/collect/book_sync.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace marketprism::common {

namespace {

// Moves a diff's levels into its record: the book has its own copies.
void AddLevels(std::vector<PriceLevel>& from, google::protobuf::RepeatedPtrField<v1::Level>* to) {
  to->Reserve(static_cast<int>(from.size()));
  for (PriceLevel& l : from) {
    v1::Level* out = to->Add();
    out->set_price(std::move(l.price));
    out->set_quantity(std::move(l.quantity));
  }
}

}  // namespace

BookProtocol BookProtocolFor(absl::string_view exchange) {
  if (exchange == "binance_usdm") return BookProtocol::kBinanceUsdm;
  if (exchange == "okx") return BookProtocol::kOkx;
  if (exchange == "deribit") return BookProtocol::kDeribit;
  return BookProtocol::kBinanceSpot;
}

DecimalKey OrderBook::Side::KeyOf(const Entry& e) const {
  if (e.wide) return DecimalKey{0, 0, true, slots_[e.slot].canonical};
  Side::Rank v = ask_ ? ~e.rank : e.rank;
  return DecimalKey{static_cast<uint64_t>(v >> 64), static_cast<uint64_t>(v), false, std::string()};
}

uint32_t OrderBook::Side::NewSlot(const DecimalKey& key, absl::string_view price,
                                  absl::string_view quantity) {
  uint32_t slot;
  if (!free_.empty()) {
    slot = free_.back();
    free_.pop_back();
  } else {
    slot = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  Slot& s = slots_[slot];
  s.level.first.assign(price.data(), price.size());
  s.level.second.assign(quantity.data(), quantity.size());
  if (key.wide) s.canonical = key.canonical;
  return slot;
}

void OrderBook::Side::Set(const DecimalKey& key, absl::string_view price,
                          absl::string_view quantity, bool remove) {
  Probe probe = ProbeOf(key);
  std::vector<Entry>::iterator at;
  bool found;
  if (wide_ == 0 && !key.wide) {  // the usual book: integers only
    // Branch-free: which half holds it is a coin toss the CPU cannot predict.
    size_t base = 0, len = entries_.size();
    while (len > 1) {
      size_t half = len / 2;
      base += entries_[base + half - 1].rank < probe.rank ? half : 0;
      len -= half;
    }
    base += len == 1 && entries_[base].rank < probe.rank;
    at = entries_.begin() + static_cast<std::ptrdiff_t>(base);
    found = at != entries_.end() && at->rank == probe.rank;
  } else {
    at = std::lower_bound(entries_.begin(), entries_.end(), probe,
                          [this](const Entry& e, const Probe& p) { return Worse(e, p); });
    found = at != entries_.end() && !Worse(probe, *at);
  }
  if (remove) {
    if (found) {
      free_.push_back(at->slot);
      wide_ -= at->wide;
      entries_.erase(at);
    }
    return;
  }
  if (found) {
    Level& l = slots_[at->slot].level;
    l.first.assign(price.data(), price.size());
    l.second.assign(quantity.data(), quantity.size());
    return;
  }
  wide_ += key.wide;
  entries_.insert(at, Entry{probe.rank, NewSlot(key, price, quantity), key.wide});
}

bool OrderBook::Side::Append(const DecimalKey& key, absl::string_view price,
                             absl::string_view quantity) {
  // Appended best first, reversed once the run ends (OrderBook::ApplySide).
  Probe probe = ProbeOf(key);
  if (!entries_.empty() && !Worse(probe, entries_.back())) return false;
  wide_ += key.wide;
  entries_.push_back(Entry{probe.rank, NewSlot(key, price, quantity), key.wide});
  return true;
}

void OrderBook::Side::Clear() {
  entries_.clear();
  wide_ = 0;
  free_.clear();
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    free_.push_back(static_cast<uint32_t>(slots_.size()) - 1 - i);
  }
}

bool OrderBook::ApplySide(const std::vector<PriceLevel>& levels, Side& side, absl::string_view name,
                          std::string* error) {
  DecimalKey price, qty;
  // A snapshot fills an empty side best first: appended, then reversed,
  // rather than each level inserted in front of the others.
  bool appending = side.empty();
  for (const PriceLevel& l : levels) {
    if (!ParseDecimalKey(l.price, &price) || !ParseDecimalKey(l.quantity, &qty)) {
      if (appending) std::reverse(side.entries_.begin(), side.entries_.end());
      *error = absl::StrCat("malformed ", name, " level [\"", l.price, "\", \"", l.quantity, "\"]");
      return false;
    }
    bool remove = DecimalKeyIsZero(qty);
    if (appending && (remove || !side.Append(price, l.price, l.quantity))) {
      std::reverse(side.entries_.begin(), side.entries_.end());
      appending = false;
    }
    if (!appending) side.Set(price, l.price, l.quantity, remove);
  }
  if (appending) std::reverse(side.entries_.begin(), side.entries_.end());
  return true;
}

bool OrderBook::Apply(const std::vector<PriceLevel>& bids, const std::vector<PriceLevel>& asks, std::string* error) {
  return ApplySide(bids, bids_, "bid", error) && ApplySide(asks, asks_, "ask", error);
}

void OrderBook::Clear() {
  bids_.Clear();
  asks_.Clear();
}

bool OrderBook::Crossed() const {
  if (bids_.empty() || asks_.empty()) return false;
  // The best bid is at or above the best ask.
  return !DecimalKeyLess(bids_.KeyOf(bids_.entries_.back()), asks_.KeyOf(asks_.entries_.back()));
}

void OrderBook::Top(size_t n, v1::BookUpdate* out) const {
  for (auto [side, to] :
       {std::pair{&bids_, out->mutable_bids()}, std::pair{&asks_, out->mutable_asks()}}) {
    size_t count = n == 0 ? side->size() : std::min(n, side->size());
    to->Reserve(static_cast<int>(count));
    for (size_t i = 0; i < count; ++i) {
      v1::Level* l = to->Add();
      l->set_price((*side)[i].first);
      l->set_quantity((*side)[i].second);
    }
  }
}

BookSync::BookSync(BookProtocol protocol, size_t max_buffered)
    : protocol_(protocol), max_buffered_(max_buffered == 0 ? 1 : max_buffered) {}

BookSync::Join BookSync::JoinsSnapshot(const BookDiff& d, int64_t s) const {
  switch (protocol_) {
    case BookProtocol::kBinanceSpot:
      if (d.last <= s) return Join::kDrop;
      return d.first <= s + 1 ? Join::kJoin : Join::kStale;
    case BookProtocol::kBinanceUsdm:
      if (d.last < s) return Join::kDrop;
      return d.first <= s ? Join::kJoin : Join::kStale;
    case BookProtocol::kOkx:
      if (d.last <= s) return Join::kDrop;
      return d.prev <= s ? Join::kJoin : Join::kStale;
    case BookProtocol::kDeribit:
      if (d.last <= s) return Join::kDrop;
      return d.prev == s ? Join::kJoin : Join::kStale;
  }
  return Join::kStale;
}

bool BookSync::Follows(const BookDiff& d) const {
  if (protocol_ == BookProtocol::kBinanceSpot) return d.first == last_ + 1;
  // OKX resets its sequence at maintenance: seqId below prevSeqId. What
  // follows cannot be checked against the book held, so it resyncs.
  if (protocol_ == BookProtocol::kOkx && d.last < d.prev) return false;
  return d.prev == last_;
}

void BookSync::Break(std::string reason, BookDiff* keep) {
  ++gaps_;
  if (!gap_pending_) {
    gap_pending_ = true;
    gap_after_ = last_;
    gap_reason_ = std::move(reason);
  }
  book_.Clear();
  buffer_.clear();
  // The diff that showed the break may join the next snapshot; Deribit's
  // next snapshot comes with a new subscription, after it.
  if (keep != nullptr && protocol_ != BookProtocol::kDeribit) buffer_.push_back(std::move(*keep));
  state_ = State::kAwaitSnapshot;
}

void BookSync::OnStreamRestart(absl::string_view reason) {
  if (state_ == State::kLive) {
    Break(std::string(reason), nullptr);
    return;
  }
  buffer_.clear();  // what the new stream sends need not continue it
  if (protocol_ == BookProtocol::kDeribit) state_ = State::kAwaitSnapshot;  // the snapshot comes with the subscription
}

bool BookSync::ApplyLive(BookDiff d, std::vector<BookRecord>& out) {
  std::string error;
  if (!book_.Apply(d.bids, d.asks, &error)) {
    Break(error, nullptr);
    return false;
  }
  if (book_.Crossed()) {
    Break(absl::StrCat("crossed book after update ", d.last, ": best bid ",
                       CanonicalDecimal(book_.bids().front().first).value_or(""), " >= best ask ",
                       CanonicalDecimal(book_.asks().front().first).value_or("")),
          nullptr);
    return false;
  }
  last_ = d.last;
  BookRecord r;
  r.kind = BookRecord::Kind::kUpdate;
  r.update.set_first_update_id(d.first);
  r.update.set_last_update_id(d.last);
  if (d.prev >= 0) r.update.set_previous_update_id(d.prev);
  AddLevels(d.bids, r.update.mutable_bids());
  AddLevels(d.asks, r.update.mutable_asks());
  out.push_back(std::move(r));
  return true;
}

namespace {

BookRecord SnapshotRecord(const OrderBook& book, int64_t id) {
  BookRecord r;
  r.kind = BookRecord::Kind::kSnapshot;
  r.update.set_snapshot(true);
  r.update.set_first_update_id(id);
  r.update.set_last_update_id(id);
  book.Top(0, &r.update);
  return r;
}

}  // namespace

void BookSync::ReportGap(int64_t resumed, std::vector<BookRecord>& out) {
  if (!gap_pending_) return;
  BookRecord g;
  g.kind = BookRecord::Kind::kGap;
  g.gap.set_after_update_id(gap_after_);
  g.gap.set_resumed_update_id(resumed);
  g.gap.set_reason(gap_reason_);
  out.push_back(std::move(g));
  gap_pending_ = false;
}

// Goes live on the snapshot in the book (its levels are in the book): reports a gap
// first, then the snapshot.
void BookSync::Drain(std::vector<BookRecord>& out) {
  while (state_ == State::kJoining && !buffer_.empty()) {
    Join j = JoinsSnapshot(buffer_.front(), snapshot_id_);
    if (j == Join::kDrop) {
      buffer_.pop_front();
      continue;
    }
    if (j == Join::kStale) {
      // The snapshot is older than the stream we hold: fetch another.
      ++stale_snapshots_;
      book_.Clear();
      state_ = State::kAwaitSnapshot;
      return;
    }
    state_ = State::kLive;
    last_ = snapshot_id_;
    ReportGap(snapshot_id_, out);
    out.push_back(SnapshotRecord(book_, snapshot_id_));
    // The joining diff is applied as it is; every later one must follow.
    BookDiff first = std::move(buffer_.front());
    buffer_.pop_front();
    if (!ApplyLive(std::move(first), out)) return;
  }
  while (state_ == State::kLive && !buffer_.empty()) {
    BookDiff d = std::move(buffer_.front());
    buffer_.pop_front();
    if (!Follows(d)) {
      Break(absl::StrCat("sequence break: update ", d.first, "..", d.last,
                         d.prev >= 0 ? absl::StrCat(" (previous ", d.prev, ")") : "", " does not follow ", last_),
            &d);
      return;
    }
    if (!ApplyLive(std::move(d), out)) return;
  }
}

std::vector<BookRecord> BookSync::OnSnapshot(BookSnapshot s) {
  std::vector<BookRecord> out;
  if (state_ == State::kLive && protocol_ != BookProtocol::kDeribit) return out;  // a late answer: not needed
  bool was_live = state_ == State::kLive;
  book_.Clear();
  std::string error;
  if (!book_.Apply(s.bids, s.asks, &error) || book_.Crossed()) {
    // Unusable: ask for another (on Deribit the live book is gone with it).
    ++stale_snapshots_;
    if (was_live) Break(error.empty() ? "crossed snapshot" : std::move(error), nullptr);
    book_.Clear();
    state_ = State::kAwaitSnapshot;
    return out;
  }
  snapshot_id_ = s.update_id;
  if (protocol_ == BookProtocol::kDeribit) {
    // The subscription's snapshot is the book's state: live at once.
    std::deque<BookDiff> buffered = std::move(buffer_);
    buffer_.clear();
    state_ = State::kLive;
    last_ = s.update_id;
    ReportGap(s.update_id, out);
    out.push_back(SnapshotRecord(book_, s.update_id));
    for (BookDiff& d : buffered) {
      if (d.last > last_) buffer_.push_back(std::move(d));
    }
    Drain(out);
    return out;
  }
  state_ = State::kJoining;
  Drain(out);
  return out;
}

std::vector<BookRecord> BookSync::OnDiff(BookDiff d) {
  std::vector<BookRecord> out;
  if (state_ == State::kLive && buffer_.empty()) {
    if (!Follows(d)) {
      Break(absl::StrCat("sequence break: update ", d.first, "..", d.last,
                         d.prev >= 0 ? absl::StrCat(" (previous ", d.prev, ")") : "", " does not follow ", last_),
            &d);
      return out;
    }
    ApplyLive(std::move(d), out);
    return out;
  }
  if (buffer_.size() >= max_buffered_) buffer_.pop_front();
  buffer_.push_back(std::move(d));
  Drain(out);
  return out;
}

}  // namespace marketprism::common
