// File: node/collector.h
//
// The node's collection units: the streams the leader assigned it (the
// Units message on the session), run on WebSocket connections from the
// node's egress IP, turned into normalized records (collector.proto's
// MarketEvent) and handed to the sink (the session, which carries them to the
// leader for Subscribe; the sinks of a later issue write them too).
//
//   SetUnits -> group by (exchange, connection index) -> one WebSocket per
//   group, its streams in the URL, later changes as SUBSCRIBE / UNSUBSCRIBE
//   (at most one message per 250 ms per connection: Binance allows 5 a
//   second) -> each message parsed by the exchange's feed -> trades become
//   Trade records (a hole in the trade ids is a Gap record); depth diffs go
//   to the unit's BookSync, which asks for a REST snapshot through the
//   injected fetcher (a budgeted request through the coordinator's scheduler)
//   and says what to emit.
//
// A connection that closes or stays silent for `silence` is reopened with
// jittered back-off (100 ms doubling to 5 s); its books resynchronise and
// report the gap. Where the exchange cuts connections at an age (Binance:
// 24 h), each is rotated before the cut without loss: a successor with the
// same streams overlaps it until, unit by unit, the sequences meet.
// Streams go through the exchange's HTTP proxy, if it has one (ws_proxy).
// Each exchange's wire format is a Feed (node/feeds/): Binance spot and
// USD-M, OKX and Deribit, every channel; units of another exchange are
// refused with a log line naming them.
//
// Threads: callbacks arrive on the WebSocket client's thread, the snapshot
// fetcher's and the maintenance timer's (on the injected clock); one mutex
// serialises them, and the sink is called under it (it must only queue).
// Stop() must not be called from a callback.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "marketprism/v1/node.pb.h"

#include "common/clock.h"
#include "common/collect/book_sync.h"
#include "common/collect/job.h"
#include "common/net/ws_client.h"
#include "common/rules/rules.h"
#include "common/timer.h"
#include "node/feeds/feed.h"

namespace marketprism::node {

struct CollectorOptions {
  std::string node_id;
  std::string egress_ip;
  absl::Duration silence = absl::Seconds(10);   // a stream quiet this long is reopened
  absl::Duration tick = absl::Milliseconds(100);
  absl::Duration subscribe_gap = absl::Milliseconds(250);
  JsonParser json_parser = JsonParser::kSimdjson;  // for the feeds' hot streams (feed.h)
  // Snapshots asked for at once per exchange; the other books wait their
  // turn here, in turn, their buffers trimmed. The budget paces snapshots
  // anyway: thousands of calls queued at the coordinator only time out
  // there (2,000 books on one IP lost every call to its 10 s deadline).
  int snapshots_in_flight = 4;
  // Exchanges that cut a connection at an age (rules: websocket
  // max_lifetime_seconds; Binance 24 h): each connection is rotated before
  // its cut, `rotate_before` ahead of it (at most a quarter of the lifetime).
  std::map<std::string, absl::Duration> max_lifetime = {};
  absl::Duration rotate_before = absl::Minutes(10);
  // The proxy for a connection to `url` of `exchange` (WsConnectSpec::proxy;
  // "" for none); unset: none.
  std::function<std::string(const std::string& exchange, const std::string& url)> ws_proxy = {};
};

// Fetches `path` with `query` from `exchange` (a book's snapshot). `done`
// gets the reply's body or an error, on any thread, exactly once.
// Never before the fetcher returns: the collector asks under its lock.
using SnapshotFetcher =
    std::function<void(const std::string& exchange, const std::string& path, const common::QueryParams& query,
                       std::function<void(absl::StatusOr<std::string>)> done)>;
// Takes records in the order each unit made them. Must only queue.
using RecordSink = std::function<void(std::vector<v1::MarketEvent>)>;
// The WebSocket base URL for an exchange now ("" if none is known).
using WsBaseFn = std::function<std::string(const std::string& exchange)>;
// Charges a message that `exchange` prices like a request at `path` to this
// IP's budget: zero when charged (send it), else how long to hold it.
using SpendFn = std::function<absl::StatusOr<absl::Duration>(const std::string& exchange, const std::string& path)>;

class Collector {
 public:
  // `clock` and `ws` must outlive the collector.
  // Without `spend`, no message is charged.
  Collector(CollectorOptions options, common::Clock& clock, common::WsClient& ws, WsBaseFn ws_base,
            SnapshotFetcher fetch, RecordSink sink, SpendFn spend = nullptr);
  ~Collector();  // Stop()

  void Start();
  // Every unit the node runs from now on.
  void SetUnits(const v1::Units& units) ABSL_LOCKS_EXCLUDED(mu_);
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  struct UnitStatus {
    std::string key;
    std::string state;  // "connecting", "syncing", "live"
    int64_t messages = 0;
    int64_t gaps = 0;
    absl::Time last_record = absl::InfinitePast();
  };
  std::vector<UnitStatus> Status() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Unit {
    v1::UnitAssignment assignment;
    const Feed* feed = nullptr;
    common::Channel channel = common::Channel::kTrades;
    std::string stream;  // the exchange's stream name
    std::unique_ptr<common::BookSync> book;
    bool fetching = false;
    absl::Time fetch_after = absl::InfinitePast();
    int snapshot_refusals = 0;  // in a row, of a kind that asking again at once will not mend
    int64_t last_trade_id = 0;
    // records read whole (book_ticker, ticker, kline): the last one's
    // sequence and key
    int64_t last_sequence = 0;
    std::string last_record_key;
    // a kline that is final when superseded: its last update so far (none
    // after a lost connection: what came last then need not be final)
    std::optional<v1::MarketEvent> unconfirmed;
    int64_t messages = 0;
    int64_t gaps = 0;
    absl::Time last_record = absl::InfinitePast();
  };
  using ConnKey = std::pair<std::string, int>;  // (exchange, index)
  struct Conn {
    enum class State { kClosed, kConnecting, kOpen } state = State::kClosed;
    std::shared_ptr<common::WsConnection> ws;
    uint64_t generation = 0;  // of its socket, unique in the collector
    absl::Time opened_at = absl::InfiniteFuture();
    std::set<std::string> wanted;      // streams its units need
    std::set<std::string> subscribed;  // streams it has (asked for)
    int failures = 0;
    absl::Time retry_at = absl::InfinitePast();
    absl::Time last_message;
    absl::Time last_sent = absl::InfinitePast();
    absl::Time last_heartbeat;
    int64_t next_id = 1;
    std::deque<std::string> held;  // texts waiting for the IP's budget, in order
    absl::Time held_until = absl::InfinitePast();
    // Rotation: a successor opened before this connection's cut, carrying
    // the same streams. A unit moves to it once the two sequences meet
    // (the successor brings a message this one already brought, or the
    // very next); the successor takes over once all have, or by
    // `promote_by` (those not met then resume as after a reconnect).
    std::unique_ptr<Conn> next;
    std::set<std::string> met;  // (a successor's) units that moved to it
    absl::Time promote_by = absl::InfiniteFuture();
    absl::Time rotate_at = absl::InfiniteFuture();  // (a primary's) when to open a successor
    std::string last_error;  // the last refusal to connect, said once
  };
  // Callbacks hold this, not the collector: Stop() clears `self` under `mu`.
  struct Guard {
    absl::Mutex mu;
    Collector* self ABSL_GUARDED_BY(mu) = nullptr;
  };

  void Tick() ABSL_LOCKS_EXCLUDED(mu_);
  void Open(const ConnKey& key, Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The connection of `key` whose socket is `generation`: the primary or its
  // successor (`*successor` says which); nullptr for a socket gone.
  Conn* Find(const ConnKey& key, uint64_t generation, bool* successor) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Rotation: opens `c`'s successor when due, promotes it when ready, drops
  // it when it does not open in time or goes silent.
  void Rotate(const ConnKey& key, Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PromoteLocked(const ConnKey& key, Conn& c, const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropSuccessorLocked(const ConnKey& key, Conn& c, const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // When a primary opened at `opened` opens its successor (jittered);
  // InfiniteFuture for an exchange without an age cut.
  absl::Time RotateAtLocked(const std::string& exchange, absl::Time opened) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Duration RotationLead(absl::Duration lifetime) const;
  // Whether the successor's `e` meets what `u` has from the primary.
  static bool Meets(const Unit& u, const FeedEvent& e);
  void Closed(const ConnKey& key, uint64_t generation, int code, const std::string& reason) ABSL_LOCKS_EXCLUDED(mu_);
  void Opened(const ConnKey& key, uint64_t generation) ABSL_LOCKS_EXCLUDED(mu_);
  void OnText(const ConnKey& key, uint64_t generation, const std::string& text) ABSL_LOCKS_EXCLUDED(mu_);
  void OnSnapshot(const std::string& exchange, const std::string& unit, absl::StatusOr<std::string> body)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The connection is gone: its books resync, its trades watch for a hole.
  void LostLocked(const ConnKey& key, Conn& c, const std::string& reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SyncSubscriptions(const ConnKey& key, Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends `text` on `c` once the IP's budget has room for what the exchange
  // charges for it (at once when it charges nothing), after any held before.
  void SendLocked(const ConnKey& key, Conn& c, std::string text) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendHeld(const ConnKey& key, Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Asks for the snapshot of every book that wants one (each tick), or of
  // one, within snapshots_in_flight; the units after the last one asked
  // for go first, so every book gets its turn.
  void FetchSnapshots() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FetchSnapshotLocked(const std::string& key, Unit& u, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A record of `u` received at `now` (one reading of the clock per message).
  v1::MarketEvent Event(const Unit& u, int64_t exchange_time_us, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnEvent(Unit& u, FeedEvent& e, absl::Time now, std::vector<v1::MarketEvent>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EmitBook(Unit& u, std::vector<common::BookRecord> records, int64_t exchange_time_us,
                absl::Time now, std::vector<v1::MarketEvent>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const CollectorOptions options_;
  common::Clock& clock_;
  common::WsClient& ws_;
  const WsBaseFn ws_base_;
  const SnapshotFetcher fetch_;
  const RecordSink sink_;
  const SpendFn spend_;
  std::shared_ptr<Guard> guard_;
  absl::Mutex mu_;
  std::map<std::string, Unit> units_ ABSL_GUARDED_BY(mu_);                      // by unit key
  std::map<ConnKey, Conn> conns_ ABSL_GUARDED_BY(mu_);
  // (exchange, stream) -> unit; looked up by views, without copying the names.
  struct StreamLess {
    using is_transparent = void;
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return std::pair<absl::string_view, absl::string_view>(a.first, a.second) <
             std::pair<absl::string_view, absl::string_view>(b.first, b.second);
    }
  };
  std::map<std::pair<std::string, std::string>, std::string, StreamLess> by_stream_
      ABSL_GUARDED_BY(mu_);
  std::vector<FeedEvent> events_ ABSL_GUARDED_BY(mu_);  // OnText's, kept for their capacity
  uint64_t generations_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, int> snapshots_asked_ ABSL_GUARDED_BY(mu_);  // in flight, by exchange
  std::string last_asked_ ABSL_GUARDED_BY(mu_);  // the unit whose snapshot was asked for last
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  common::Timer timer_;
};

}  // namespace marketprism::node
