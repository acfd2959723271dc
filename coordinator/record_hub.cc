#include "coordinator/record_hub.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/collect/job.h"

namespace marketprism::coordinator {

namespace {

std::vector<common::PriceLevel> Levels(const google::protobuf::RepeatedPtrField<v1::Level>& in) {
  std::vector<common::PriceLevel> out;
  out.reserve(static_cast<size_t>(in.size()));
  for (const v1::Level& l : in) out.push_back({l.price(), l.quantity()});
  return out;
}

}  // namespace

RecordHub::RecordHub(Options options) : options_(options) {}

bool RecordHub::Matches(const v1::SubscribeRequest& f, const v1::MarketEvent& e) {
  if (!f.exchange().empty() && f.exchange() != e.exchange()) return false;
  // A kline filter may name its interval too ("kline_1m").
  if (!f.channel().empty() && f.channel() != e.channel() &&
      !(e.has_kline() && f.channel() == absl::StrCat(e.channel(), "_", e.kline().interval()))) {
    return false;
  }
  if (f.symbols_size() == 0) return true;
  for (const std::string& s : f.symbols()) {
    if (s == e.symbol()) return true;
  }
  return false;
}

int64_t RecordHub::Subscribe(const v1::SubscribeRequest& filter, RecordSink* sink) {
  absl::ReleasableMutexLock lock(&mu_);
  int64_t id = next_id_++;
  subscribers_[id] = Subscriber{filter, sink};
  // A book subscriber starts from the book as the hub holds it.
  for (const auto& [key, u] : units_) {
    if (!u.book || !u.book->live()) continue;
    v1::MarketEvent e;
    size_t a = key.find('/'), b = key.find('/', a + 1);
    e.set_exchange(key.substr(0, a));
    e.set_channel(key.substr(a + 1, b - a - 1));
    e.set_symbol(key.substr(b + 1));
    if (!Matches(filter, e)) continue;
    int64_t id_now = u.book->last_update_id();
    e.set_key(absl::StrCat(key, "/snapshot/", id_now, "-", id_now));
    v1::BookUpdate* book = e.mutable_book();
    book->set_snapshot(true);
    book->set_first_update_id(id_now);
    book->set_last_update_id(id_now);
    u.book->book().Top(0, book);
    if (!sink->Offer(e)) {
      sink->Cut(absl::ResourceExhaustedError("the books did not fit the subscriber's queue"));
      subscribers_.erase(id);
      ++counts_.cut;
      KickAndUnlock(lock);
      return id;
    }
  }
  to_kick_.push_back(sink);
  KickAndUnlock(lock);
  return id;
}

void RecordHub::Unsubscribe(int64_t id) {
  {
    absl::MutexLock lock(&mu_);
    auto it = subscribers_.find(id);
    if (it != subscribers_.end()) {
      std::erase(to_kick_, it->second.sink);
      subscribers_.erase(it);
    }
  }
  // Kicks under way end first (a cut sink, already gone from subscribers_,
  // may be among them).
  absl::MutexLock wait(&kick_mu_);
}

void RecordHub::KickAndUnlock(absl::ReleasableMutexLock& lock) {
  std::vector<RecordSink*> kick;
  kick.swap(to_kick_);
  kick_mu_.ReaderLock();
  lock.Release();
  for (RecordSink* s : kick) s->Kick();
  kick_mu_.ReaderUnlock();
}

void RecordHub::CutAll(const absl::Status& why) {
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, s] : subscribers_) s.sink->Cut(why);
    counts_.cut += static_cast<int64_t>(subscribers_.size());
    subscribers_.clear();
    to_kick_.clear();
  }
  absl::MutexLock wait(&kick_mu_);  // as Unsubscribe: no kick outlives this
}

RecordHub::Counts RecordHub::counts() {
  absl::MutexLock lock(&mu_);
  return counts_;
}

bool RecordHub::SeenKey(const std::string& key) {
  if (key.empty()) return false;
  if (!keys_.insert(key).second) return true;
  key_order_.push_back(key);
  if (key_order_.size() > options_.dedupe_keys) {
    keys_.erase(key_order_.front());
    key_order_.pop_front();
  }
  return false;
}

void RecordHub::Deliver(const v1::MarketEvent& e) {
  ++counts_.delivered;
  if (e.has_gap()) ++counts_.gaps;
  for (auto it = subscribers_.begin(); it != subscribers_.end();) {
    if (!Matches(it->second.filter, e)) {
      ++it;
      continue;
    }
    if (it->second.sink->Offer(e)) {
      if (std::find(to_kick_.begin(), to_kick_.end(), it->second.sink) == to_kick_.end()) {
        to_kick_.push_back(it->second.sink);
      }
      ++it;
      continue;
    }
    std::erase(to_kick_, it->second.sink);
    it->second.sink->Cut(absl::ResourceExhaustedError(absl::StrCat(
        "subscriber too slow: ", options_.subscriber_queue, " records behind; subscribe again (books start over)")));
    ++counts_.cut;
    it = subscribers_.erase(it);
  }
}

void RecordHub::Publish(const v1::RecordBatch& batch, absl::Time now) {
  absl::ReleasableMutexLock lock(&mu_);
  for (const v1::MarketEvent& e : batch.events()) {
    ++counts_.received;
    Accept(e, now);
  }
  KickAndUnlock(lock);
}

void RecordHub::Flush(absl::Time now) {
  absl::ReleasableMutexLock lock(&mu_);
  for (auto& [key, u] : units_) {
    if (!u.held.empty()) Release(u, now);
  }
  KickAndUnlock(lock);
}

namespace {

// The sequence trades are merged and checked by: Trade.sequence (Deribit's
// trade_seq; its trade ids are not consecutive), else a numeric trade id.
int64_t TradeId(const v1::MarketEvent& e) {
  if (e.trade().sequence() > 0) return e.trade().sequence();
  int64_t id = 0;
  return absl::SimpleAtoi(e.trade().trade_id(), &id) ? id : -1;
}

}  // namespace

void RecordHub::DeliverTrade(Unit& u, const v1::MarketEvent& e, int64_t id) {
  if (u.last_trade != 0 && id > u.last_trade + 1) {
    std::string key = common::UnitKeyOf(e);
    v1::MarketEvent g = e;
    g.clear_trade();
    g.set_key(absl::StrCat(key, "/gap/", u.last_trade, "-", id));
    g.mutable_gap()->set_after_update_id(u.last_trade);
    g.mutable_gap()->set_resumed_update_id(id);
    g.mutable_gap()->set_reason(absl::StrCat("trade ids ", u.last_trade + 1, "..", id - 1, " missed by every copy"));
    Deliver(g);
  }
  u.last_trade = id;
  Deliver(e);
}

bool RecordHub::Sequence(Unit& u, const v1::MarketEvent& e, bool force) {
  if (e.has_trade()) {
    int64_t id = TradeId(e);
    if (id <= u.last_trade) {
      ++counts_.duplicates;
      return true;
    }
    if (!force && u.last_trade != 0 && id > u.last_trade + 1) return false;
    DeliverTrade(u, e, id);
    return true;
  }
  // A book update while the hub's book is live.
  const v1::BookUpdate& b = e.book();
  if (b.last_update_id() <= u.book->last_update_id()) {
    ++counts_.duplicates;  // the other copy's
    return true;
  }
  bool next = b.previous_update_id() != 0 ? b.previous_update_id() == u.book->last_update_id()
                                          : b.first_update_id() <= u.book->last_update_id() + 1;
  if (!force && !next) return false;
  FeedBook(u, e);
  return true;
}

void RecordHub::Release(Unit& u, absl::Time now) {
  while (!u.held.empty()) {
    auto it = u.held.begin();
    bool live_book = it->second.second.has_book() && u.book && u.book->live();
    bool overdue = now - it->second.first >= options_.reorder_hold;
    if (it->second.second.has_book() && !live_book) {
      FeedBook(u, it->second.second);  // the book resynchronises: order is BookSync's business now
    } else if (!Sequence(u, it->second.second, overdue)) {
      return;
    }
    u.held.erase(u.held.begin());
  }
}

void RecordHub::Accept(const v1::MarketEvent& e, absl::Time now) {
  std::string key = common::UnitKeyOf(e);
  if (e.has_trade() && TradeId(e) >= 0) {
    Unit& u = units_[key];
    if (!Sequence(u, e, /*force=*/false)) {
      if (!u.held.emplace(TradeId(e), std::make_pair(now, e)).second) ++counts_.duplicates;
    }
    Release(u, now);
    return;
  }
  if (e.has_book()) {
    Unit& u = units_[key];
    if (!e.book().snapshot() && u.book && u.book->live()) {
      if (!Sequence(u, e, /*force=*/false)) {
        if (!u.held.emplace(e.book().first_update_id(), std::make_pair(now, e)).second) ++counts_.duplicates;
      }
    } else {
      AcceptBook(u, e);
    }
    Release(u, now);
    return;
  }
  if (e.has_gap()) {
    // One copy's gap: whether the merged stream has one is judged here.
    auto it = units_.find(key);
    if (it != units_.end() && (it->second.book || it->second.last_trade != 0)) return;
  }
  if (SeenKey(e.key())) {
    ++counts_.duplicates;
    return;
  }
  Deliver(e);
}

void RecordHub::AcceptBook(Unit& u, const v1::MarketEvent& e) {
  if (!u.book) u.book = std::make_unique<common::BookSync>(common::BookProtocolFor(e.exchange()));
  const v1::BookUpdate& b = e.book();
  if (!b.snapshot()) {
    FeedBook(u, e);
    return;
  }
  common::BookSnapshot s{b.last_update_id(), Levels(b.bids()), Levels(b.asks())};
  if (!u.latest_snapshot || s.update_id >= u.latest_snapshot->update_id) u.latest_snapshot = s;
  if (u.book->live()) {
    ++counts_.duplicates;  // the hub's book already runs
    return;
  }
  FeedBook(u, e);
}

// Hands a book record to the hub's BookSync and delivers what it says.
void RecordHub::FeedBook(Unit& u, const v1::MarketEvent& e) {
  if (!u.book) u.book = std::make_unique<common::BookSync>(common::BookProtocolFor(e.exchange()));
  const v1::BookUpdate& b = e.book();
  std::vector<common::BookRecord> out;
  if (b.snapshot()) {
    out = u.book->OnSnapshot({b.last_update_id(), Levels(b.bids()), Levels(b.asks())});
  } else {
    if (u.book->live() && b.last_update_id() <= u.book->last_update_id()) {
      ++counts_.duplicates;
      return;
    }
    common::BookDiff d{b.first_update_id(), b.last_update_id(), b.previous_update_id() != 0 ? b.previous_update_id() : -1,
                       Levels(b.bids()), Levels(b.asks())};
    out = u.book->OnDiff(std::move(d));
    if (u.book->wants_snapshot() && u.latest_snapshot) {
      for (common::BookRecord& r : u.book->OnSnapshot(*u.latest_snapshot)) out.push_back(std::move(r));
    }
  }
  std::string key = common::UnitKeyOf(e);
  for (common::BookRecord& r : out) {
    v1::MarketEvent m;
    m.set_exchange(e.exchange());
    m.set_symbol(e.symbol());
    m.set_channel(e.channel());
    m.set_exchange_time_us(e.exchange_time_us());
    m.set_received_time_us(e.received_time_us());
    m.set_node_id(e.node_id());
    if (r.kind == common::BookRecord::Kind::kGap) {
      m.set_key(absl::StrCat(key, "/gap/", r.gap.after_update_id(), "-", r.gap.resumed_update_id()));
      *m.mutable_gap() = std::move(r.gap);
    } else {
      const char* kind = r.kind == common::BookRecord::Kind::kSnapshot ? "/snapshot/" : "/";
      m.set_key(absl::StrCat(key, kind, r.update.first_update_id(), "-", r.update.last_update_id()));
      *m.mutable_book() = std::move(r.update);
    }
    Deliver(m);
  }
}

}  // namespace marketprism::coordinator
