#include "common/collect/book_sync.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace marketprism::common {

namespace {

void AddLevels(const std::vector<PriceLevel>& from, google::protobuf::RepeatedPtrField<v1::Level>* to) {
  for (const PriceLevel& l : from) {
    v1::Level* out = to->Add();
    out->set_price(l.price);
    out->set_quantity(l.quantity);
  }
}

template <typename Side>
bool ApplySide(const std::vector<PriceLevel>& levels, Side& side, absl::string_view name, std::string* error) {
  for (const PriceLevel& l : levels) {
    std::optional<std::string> price = CanonicalDecimal(l.price);
    std::optional<std::string> qty = CanonicalDecimal(l.quantity);
    if (!price || !qty) {
      *error = absl::StrCat("malformed ", name, " level [\"", l.price, "\", \"", l.quantity, "\"]");
      return false;
    }
    if (DecimalIsZero(*qty)) {
      side.erase(*price);
    } else {
      side[*price] = {l.price, l.quantity};
    }
  }
  return true;
}

template <typename Side>
void TopOf(const Side& side, size_t n, google::protobuf::RepeatedPtrField<v1::Level>* out) {
  for (const auto& [key, level] : side) {
    if (n != 0 && static_cast<size_t>(out->size()) >= n) break;
    v1::Level* l = out->Add();
    l->set_price(level.first);
    l->set_quantity(level.second);
  }
}

}  // namespace

BookProtocol BookProtocolFor(absl::string_view exchange) {
  if (exchange == "binance_usdm") return BookProtocol::kBinanceUsdm;
  if (exchange == "okx") return BookProtocol::kOkx;
  if (exchange == "deribit") return BookProtocol::kDeribit;
  return BookProtocol::kBinanceSpot;
}

bool OrderBook::Apply(const std::vector<PriceLevel>& bids, const std::vector<PriceLevel>& asks, std::string* error) {
  return ApplySide(bids, bids_, "bid", error) && ApplySide(asks, asks_, "ask", error);
}

void OrderBook::Clear() {
  bids_.clear();
  asks_.clear();
}

bool OrderBook::Crossed() const {
  if (bids_.empty() || asks_.empty()) return false;
  return !DecimalLess(bids_.begin()->first, asks_.begin()->first);
}

void OrderBook::Top(size_t n, v1::BookUpdate* out) const {
  TopOf(bids_, n, out->mutable_bids());
  TopOf(asks_, n, out->mutable_asks());
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
    Break(absl::StrCat("crossed book after update ", d.last, ": best bid ", book_.bids().begin()->first,
                       " >= best ask ", book_.asks().begin()->first),
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
