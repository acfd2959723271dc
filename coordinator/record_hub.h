// File: coordinator/record_hub.h
//
// Where the nodes' records meet their subscribers (Collector.Subscribe). The
// copies of a redundant unit are merged here so that a subscriber sees each
// record once and in order, and continuity is judged on the merged stream,
// not per copy:
//
//  * trades: by the exchange's trade id; a repeat is dropped, a hole is one
//    Gap record made here (a copy's own gap says only that that copy lost
//    something: the other may not have);
//  * books: the hub keeps the book itself with a BookSync fed by both copies'
//    snapshots and updates; an update it already has is dropped, a break
//    rejoins on the latest snapshot a copy sent, and only then is a Gap
//    emitted. A new book subscriber first gets the hub's book as a snapshot;
//  * anything else: once per record key.
//
// The copies' records reach the hub with different delays, so a record
// ahead of the next one expected is held (up to Options::reorder_hold) for
// a copy that has the missing ones; only then is the hole a gap.
//
// A subscriber that falls `Options::subscriber_queue` records behind is cut
// off (its Sink is told why) rather than slowing anyone else.
//
// Thread-safe: Publish from the session reactors, Subscribe and Unsubscribe
// from the service's. Offer and Cut are called under the hub's lock: they
// must only queue, and never call back into the hub. Kick, which starts
// sending what was queued, comes after the hub's lock is released and the
// whole batch is merged: a write that takes long (gRPC may send inline) holds
// up neither the rest of the batch nor another node's records.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/collect/book_sync.h"
#include "marketprism/v1/collector.pb.h"
#include "marketprism/v1/node.pb.h"

namespace marketprism::coordinator {

class RecordSink {
 public:
  virtual ~RecordSink() = default;
  // Queues a record; false when the subscriber's queue is full.
  virtual bool Offer(const v1::MarketEvent& event) = 0;
  // The hub drops this subscriber, for `why` (it is not offered more).
  virtual void Cut(const absl::Status& why) = 0;
  // Sends what Offer queued; outside the hub's lock, never after
  // Unsubscribe has returned.
  virtual void Kick() {}
};

class RecordHub {
 public:
  struct Options {
    size_t dedupe_keys = 200'000;  // record keys remembered for "once per key"
    size_t subscriber_queue = 10'000;
    absl::Duration reorder_hold = absl::Milliseconds(250);
  };
  explicit RecordHub(Options options);
  RecordHub() : RecordHub(Options{}) {}

  // Adds a subscriber for records that match `filter` (an empty field
  // matches all). Book subscribers are sent the current books at once.
  // `sink` must stay valid until Unsubscribe returns.
  int64_t Subscribe(const v1::SubscribeRequest& filter, RecordSink* sink) ABSL_LOCKS_EXCLUDED(mu_);
  void Unsubscribe(int64_t id) ABSL_LOCKS_EXCLUDED(mu_);
  // Every subscriber is cut, for `why` (this coordinator stopped leading:
  // the records no longer come here).
  void CutAll(const absl::Status& why) ABSL_LOCKS_EXCLUDED(mu_);

  // `now`: when the batch came (it times the reorder hold).
  void Publish(const v1::RecordBatch& batch, absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);
  // Releases what was held past the reorder hold (call it every ~100 ms).
  void Flush(absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);

  struct Counts {
    int64_t received = 0;   // records the nodes sent
    int64_t delivered = 0;  // merged records (each counted once, whoever got it)
    int64_t duplicates = 0;
    int64_t gaps = 0;       // gaps on the merged streams
    int64_t cut = 0;        // subscribers cut off for falling behind
  };
  Counts counts() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Unit {
    std::unique_ptr<common::BookSync> book;
    std::optional<common::BookSnapshot> latest_snapshot;  // the newest a copy sent
    int64_t last_trade = 0;
    // Records ahead of the next expected, by their first id, with when
    // they came.
    std::map<int64_t, std::pair<absl::Time, v1::MarketEvent>> held;
  };
  struct Subscriber {
    v1::SubscribeRequest filter;
    RecordSink* sink;
  };

  void Accept(const v1::MarketEvent& e, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Trades and book updates in id order: delivers `e` if it is next (or
  // `force`), else holds it; false when held.
  bool Sequence(Unit& u, const v1::MarketEvent& e, bool force) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Delivers what is held and now next, and what was held too long.
  void Release(Unit& u, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DeliverTrade(Unit& u, const v1::MarketEvent& e, int64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FeedBook(Unit& u, const v1::MarketEvent& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AcceptBook(Unit& u, const v1::MarketEvent& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool SeenKey(const std::string& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Deliver(const v1::MarketEvent& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Releases mu_ (held by `lock`) and kicks the sinks offered records
  // since the last call. (Unchecked by the analysis, which cannot follow a
  // lock released through a reference.)
  void KickAndUnlock(absl::ReleasableMutexLock& lock) ABSL_NO_THREAD_SAFETY_ANALYSIS;
  static bool Matches(const v1::SubscribeRequest& f, const v1::MarketEvent& e);

  const Options options_;
  absl::Mutex mu_;
  // Held shared while sinks are kicked, exclusively by Unsubscribe after
  // the sink is gone from subscribers_: a sink is never kicked after
  // Unsubscribe returns. Taken after mu_, never before.
  absl::Mutex kick_mu_ ABSL_ACQUIRED_AFTER(mu_);
  std::vector<RecordSink*> to_kick_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Unit> units_ ABSL_GUARDED_BY(mu_);  // "exchange/channel/symbol"
  std::unordered_set<std::string> keys_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> key_order_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, Subscriber> subscribers_ ABSL_GUARDED_BY(mu_);
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  Counts counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace marketprism::coordinator
