// File: coordinator/scheduler.h
//
// The coordinator's brain: a ledger per (exchange, egress IP) mirroring each
// pool's window from the rules, the nodes that own those IPs, and a priority
// queue of requests waiting for budget. Free of I/O: the caller dispatches
// placements and reports what the node said; tests drive it with a fake
// clock and fake nodes.
//
// A request's life:
//   Submit -> priced -> placed at once on the eligible node with the most
//   headroom, or queued (priority first, then arrival) until some node has
//   the budget; a request whose earliest possible start is past its deadline
//   is answered RESOURCE_EXHAUSTED at once, and one still queued at its
//   deadline is answered then, never sent late.
//   Placement -> the done callback gets it; the caller dispatches it to the
//   node and calls Report with the outcome. Besides the budget, each
//   (exchange, IP) has an exposure bound (common/budget/exposure.h): no
//   more in flight than the budget needs at the measured round trip, one
//   after any surprise and at the start of each fixed window, so a limit
//   lowered without notice or another program on the IP costs one refused
//   request, not every request in flight. A reply is final; a refusal, a
//   park, an undelivered or lost request is put back in the queue (another
//   node, up to max_attempts) and the done callback will fire again.
//
// Thread-safe. Callbacks run outside the internal lock on the thread that
// triggered them (Submit, Report, Poll or a node change).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/budget/budget_book.h"
#include "common/budget/exposure.h"
#include "common/budget/usage_event.h"
#include "common/clock.h"
#include "common/retry_after.h"
#include "common/rules/rules.h"

namespace marketprism::coordinator {

struct SchedulerOptions {
  // Clock uncertainty assumed for a node before estimates arrive, and the
  // margin added to every estimate.
  absl::Duration default_uncertainty = absl::Milliseconds(50);
  absl::Duration margin = absl::Milliseconds(1);
  int max_attempts = 3;
  size_t max_queue = 200'000;
  // A node that refused a request without saying when it expects budget is
  // skipped for this long.
  absl::Duration refused_backoff = absl::Milliseconds(200);
  // Consecutive delivery failures after which a node is skipped for a while.
  int failures_to_park = 3;
  absl::Duration failure_park = absl::Seconds(5);
  // Retry-after given when the earliest start cannot be known (it waits on
  // replies still in flight).
  absl::Duration unknown_retry_after = absl::Seconds(1);
  size_t recent_outcomes = 1000;  // for success rate and response time
  // Hold placements for exchanges that publish their limits (Binance) until
  // ConfirmLimits(), so nothing is priced against defaults the exchange is
  // about to correct. Only a request marked limits_probe passes.
  bool await_published_limits = false;
  common::ExposureOptions exposure;
};

struct ExecuteSpec {
  std::string exchange;
  std::string method = "GET";
  std::string path;
  common::QueryParams query;
  std::string body;
  int priority = 0;
  absl::Time deadline = absl::InfiniteFuture();  // local clock
  bool limits_probe = false;  // the request that reads the published limits
  // Whose account pools it spends (the exchange's account header), or "".
  // Such a request goes only to a node whose lease of the account has room.
  std::string account;
};

// Whether sending the request twice is harmless (a read): such a request
// lost with a node is retried elsewhere; any other is answered UNAVAILABLE.
bool Idempotent(const ExecuteSpec& spec);

// A request placed on a node, with the budget reserved for it.
struct Placement {
  uint64_t id = 0;
  std::string node_id;
  std::string egress_ip;
  std::string exchange;
  common::Cost cost;
  common::BudgetBook::Ticket ticket;
  std::string account;                      // set: also charged to the node's lease
  common::BudgetBook::Ticket account_ticket;
  int attempt = 1;
  uint64_t exposure_epoch = 0;  // the IP's exposure epoch when placed
  absl::Time enqueued;  // local clock
  absl::Time placed;    // local clock
};

// What a node said about a placement.
struct DispatchOutcome {
  enum class Kind { kReplied, kRefused, kParked, kNotSent, kLost };
  Kind kind = Kind::kReplied;
  int http_status = 0;
  // The exchange's usage header: (pool name, used).
  std::optional<std::pair<std::string, int64_t>> observed;
  // The reply stopped the IP on this exchange until `park_until` (local clock).
  std::optional<absl::Time> park_until;
  std::string park_kind;  // "rate_limited", "banned", ...
  absl::Duration retry_after;  // kRefused / kParked: when the node expects budget
  absl::Duration exchange_time;  // the node's exchange round trip
  // Clock samples: the node's clock when the dispatch arrived and when it
  // answered, for the node-coordinator skew.
  std::optional<absl::Time> node_received;
  std::optional<absl::Time> node_replied;
  std::string detail;
  // kRefused by the node's lease of the request's account: the node stays
  // in rotation; only that account waits there for retry_after.
  bool account_refused = false;
  // kRefused because the node had as many in flight as its exposure bound
  // allows: the node stays in rotation at that bound.
  bool exposure_refused = false;
  int exposure = 0;           // the node's exposure bound for the exchange (0: none)
  // kLost because the dispatch's own deadline passed (the client's): not the
  // node's failure, and the request may still be on its way.
  bool deadline_passed = false;
  int64_t foreign_units = 0;  // the usage header showed this much use the node did not send
};

using NodeClock = common::ExchangeClock;  // exchange, offset (exchange minus node), uncertainty

// A node's ban or park on one exchange.
struct LaneStatus {
  std::string exchange;
  absl::Time parked_until = absl::InfinitePast();
  std::string park_kind;
  absl::Duration clock_offset;  // exchange clock minus coordinator clock
  int exposure = 0;             // requests the IP may have in flight now (0: unbounded)
  int in_flight = 0;
  int64_t foreign_units = 0;    // the last use of the IP the node did not send, as a header showed it
  absl::Time foreign_seen = absl::InfinitePast();
};

// A node as the scheduler sees it; names only at the edges (NodeStateName).
enum class NodeState { kActive, kSuspect, kDraining, kDisconnected };
absl::string_view NodeStateName(NodeState s);  // "active", "suspect", "draining", "disconnected"

// What a node last said of one of its sinks (node/sinks/): shown in
// GetStatus and judged by the health check "sinks".
struct SinkView {
  std::string name;
  bool healthy = true;
  std::string last_error;
  int64_t written = 0, queued = 0, spool_records = 0, spool_bytes = 0, dropped = 0;
  absl::Duration spool_age;
};

struct NodeSnapshot {
  std::string node_id;
  std::string egress_ip;
  std::string grpc_address;
  std::string version;
  NodeState state = NodeState::kActive;
  absl::Time registered;
  absl::Time last_seen;
  int64_t in_flight = 0;
  int64_t requests = 0;
  int64_t failures = 0;
  std::vector<LaneStatus> lanes;
  std::vector<std::string> ready;  // exchanges it can take work for (clock known)
  std::vector<std::pair<std::string, std::vector<common::BudgetBook::PoolView>>> pools;
  // Its leases of account pools: capacities are its shares.
  struct Lease {
    std::string exchange, account;
    std::vector<common::BudgetBook::PoolView> pools;
  };
  std::vector<Lease> leases;
  std::vector<SinkView> sinks;
};

struct SchedulerSnapshot {
  std::vector<NodeSnapshot> nodes;
  int64_t queued = 0;
  double success_rate = 1.0;      // recent final outcomes that were exchange replies < 500
  int64_t recent_outcomes = 0;
  absl::Duration p95_exchange_time;
};

class Scheduler {
 public:
  using Done = std::function<void(absl::StatusOr<Placement>)>;
  enum class ReportResult { kFinal, kRequeued };

  // `rules` and `clock` must outlive the scheduler. The scheduler keeps its
  // own copy of each exchange's capacities (ApplyLimit changes them).
  Scheduler(common::RulesBook rules, common::Clock& clock, SchedulerOptions options = {});
  ~Scheduler();

  // ---- nodes ----
  // Registers (or reconnects) a node. Its ledgers are per IP, so a node that
  // comes back with the same IP finds its IP's usage where it was.
  void UpsertNode(const std::string& node_id, const std::string& egress_ip,
                  const std::string& grpc_address, const std::string& version,
                  const std::vector<std::string>& exchanges);
  void DisconnectNode(const std::string& node_id);
  // Gossip suspects the node: it keeps its ledger and in-flight work but
  // gets no new placements until cleared.
  void SetSuspect(const std::string& node_id, bool suspect);
  // A coordinator taking over the lead forgets the ledgers it kept the last
  // time it led (the nodes' reports seed fresh ones as they register) and
  // its nodes (they register again). IPs with placements still in flight
  // keep theirs.
  void ForgetLedgers();
  // kNotFound for an unknown node.
  absl::Status SetDraining(const std::string& node_id, bool draining);
  void SetNodeClocks(const std::string& node_id, const std::vector<NodeClock>& clocks);
  void SetNodeSinks(const std::string& node_id, std::vector<SinkView> sinks);
  void Park(const std::string& node_id, const std::string& exchange, absl::Time until,
            const std::string& kind);
  // A request the node made on its own (clock probes): charged and settled
  // at the node's exchange-clock times.
  void ApplyUsage(const std::string& node_id, const std::string& exchange,
                  const common::Cost& cost, absl::Time ex_sent, absl::Time ex_replied,
                  std::optional<std::pair<std::string, int64_t>> observed);
  // Seeds the ledger of a node's IP with the use its own ledger reports (a
  // coordinator that starts after its nodes does not start from zero). Only
  // an IP this coordinator has no ledger for yet is seeded.
  // `recent`, if given (rolling_exact), holds every request of the IP still
  // inside a rolling window, at its exchange-clock times: rolling pools are
  // seeded from it exactly, the others from the totals.
  using RecentSend = common::UsageEvent;  // its cost, sent_ex and replied_ex
  void SeedUsage(const std::string& node_id, const std::string& exchange,
                 const std::vector<std::pair<std::string, int64_t>>& pools_used,
                 const std::vector<RecentSend>& recent = {}, bool rolling_exact = false);

  // ---- account leases ----
  // Each node's share of each account pool: (exchange, account, node) ->
  // pool index -> units. Replaces the previous shares (one not given is 0).
  using LeaseShares = std::map<std::tuple<std::string, std::string, std::string>, std::map<int, int64_t>>;
  void SetLeaseShares(const LeaseShares& shares);

  // ---- limits ----
  // kNotFound for an unknown exchange or pool; kInvalidArgument for < 1.
  absl::Status ApplyLimit(const std::string& exchange, const std::string& pool, int64_t capacity);
  // Every pool capacity, for pushing to nodes.
  std::vector<std::tuple<std::string, std::string, int64_t>> Limits() const;
  // The exchange's published limits are applied (or given up on): its
  // requests may be placed.
  void ConfirmLimits(const std::string& exchange);
  bool LimitsConfirmed(const std::string& exchange) const;
  // Holds the exchange's placements again (only a limits probe passes) until
  // ConfirmLimits: after a refusal its published limits are being re-read,
  // and a window that opens before they are known must not be spent at the
  // capacity the exchange just refused.
  void AwaitLimits(const std::string& exchange);

  // ---- requests ----
  // Errors for bad input come back synchronously (kInvalidArgument naming the
  // field, kUnavailable when no node serves the exchange); otherwise `done`
  // is called with a placement or a final error (kResourceExhausted with
  // *retry_after... see RetryAfter()).
  absl::Status Submit(ExecuteSpec spec, Done done);
  // Many at once: one lock and one placement pass for the lot. Statuses are
  // per request, as Submit would return them.
  std::vector<absl::Status> SubmitBatch(std::vector<std::pair<ExecuteSpec, Done>> batch);
  ReportResult Report(const Placement& placement, const DispatchOutcome& outcome);
  // The caller gave up on a placement before dispatching it (its client went
  // away): the reservation is refunded and the request dropped.
  void Abandon(const Placement& placement);

  // Places what now fits and fails what has expired. Returns when it next
  // needs to run (InfiniteFuture: only an event can change anything).
  absl::Time Poll();
  absl::Time NextWakeup();
  // Called (outside the lock) whenever the next wake-up moves earlier, so a
  // timer sleeping towards a later one can wake up. Set before use.
  void SetWakeupHook(std::function<void(absl::Time)> hook);

  SchedulerSnapshot Snapshot();
  const common::RulesBook& rules() const { return rules_; }

 private:
  struct Pending {
    uint64_t id = 0;
    uint64_t seq = 0;
    std::string exchange;
    int priority = 0;
    absl::Time deadline;
    absl::Time enqueued;
    common::Cost cost;
    Done done;
    int attempts = 0;
    std::set<std::string> excluded;
    bool limits_probe = false;
    // GET/HEAD/OPTIONS: safe to send again after a node was lost mid-way.
    bool idempotent = true;
    std::string method;
    std::string account;
  };
  struct Lane {
    absl::Time parked_until = absl::InfinitePast();
    std::string park_kind;
    std::optional<NodeClock> clock;
  };
  // One (exchange, IP)'s exposure: its bound, the round trip of its
  // placements, the window it restarted in, and foreign use seen on it.
  struct Exposure {
    explicit Exposure(common::ExposureOptions options) : bound(options) {}
    common::ExposureBound bound;
    common::RttEstimate rtt;
    int window_pool = -1;  // the fixed pool whose windows restart the bound (-1: none)
    // The node refused for its own bound (it still has requests out that we
    // no longer count): nothing more goes there until this passes.
    absl::Time held_until = absl::InfinitePast();
    // The mean units (in window_pool) of the requests placed on the IP: the
    // budget's rate in requests is what is left over this, not over the
    // cost of whichever request asks.
    double mean_units = 0;
    absl::Time window = absl::InfinitePast();
    int64_t foreign_units = 0;
    absl::Time foreign_seen = absl::InfinitePast();
  };
  struct Node {
    std::string id, ip, address, version;
    bool connected = true;
    bool draining = false;
    bool suspect = false;
    std::set<std::string> exchanges;
    std::map<std::string, Lane> lanes;
    common::OffsetEstimator skew{32};  // node clock minus coordinator clock
    int consecutive_failures = 0;
    int64_t in_flight = 0, requests = 0, failures = 0;
    absl::Time registered, last_seen;
    std::vector<SinkView> sinks;
  };
  using Key = std::pair<int, uint64_t>;  // (-priority, seq)
  // Work to run once the lock is released: callbacks and hooks.
  using Ready = std::vector<std::function<void()>>;
  static void Deliver(Ready& ready, Done done, absl::StatusOr<Placement> result);

  common::BudgetBook& Book(const std::string& exchange, const std::string& ip)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Exposure& ExposureOf(const std::string& exchange, const std::string& ip) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether the IP may take one more request like `p` now (exchange time
  // `t`): a new fixed window restarts the bound first.
  bool ExposureAllows(const Pending& p, const Node& n, absl::Time t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The node's lease book for an account, or nullptr when it holds none.
  common::BudgetBook* AccountBook(const std::string& exchange, const std::string& account,
                                  const std::string& node) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Duration ExchangeOffset(const Node& n, const std::string& exchange) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RefreshUncertainty(Node& n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool Serves(const Node& n, const Pending& p) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether the node's clock for `exchange` is known, so its charges land in
  // the right windows. Until then it gets no work for that exchange.
  bool ClockKnown(const Node& n, const std::string& exchange) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::optional<Placement> TryPlace(Pending& p, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // When `p` could start, by the budget. `for_wakeup`: an IP whose budget
  // fits now but whose exposure is full is left out (a Report will poll);
  // otherwise exposure is ignored (it waits a round trip, not a window).
  absl::Time EarliestStart(const Pending& p, absl::Time now, bool for_wakeup = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Prices and validates; kInvalidArgument naming the field.
  absl::StatusOr<common::Cost> Price(const ExecuteSpec& spec) const;
  // Queues a priced request (lock held). kUnavailable / kResourceExhausted
  // when it cannot even wait.
  absl::Status EnqueueLocked(ExecuteSpec& spec, common::Cost cost, Done done, absl::Time now,
                             std::vector<Key>* keys) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FailFastLocked(const std::vector<Key>& keys, absl::Time now, Ready& ready)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ResourceExhausted(const Pending& p, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Requeue(Pending p, absl::Time now, Ready& ready) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PollLocked(absl::Time now, Ready& ready) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecordFinal(bool ok, absl::Duration exchange_time) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // What the outcome says about the IP's exposure: the round trip, the
  // verdict, the node's own bound and any foreign use.
  void EndExposure(const Placement& pl, const DispatchOutcome& outcome, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void Run(Ready& ready);

  common::RulesBook rules_;
  common::Clock& clock_;
  const SchedulerOptions options_;

  mutable absl::Mutex mu_;
  std::map<std::string, Node> nodes_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<std::string, std::string>, std::unique_ptr<common::BudgetBook>> books_
      ABSL_GUARDED_BY(mu_);
  std::map<std::pair<std::string, std::string>, Exposure> exposures_ ABSL_GUARDED_BY(mu_);  // (exchange, ip)
  // (exchange, ip) whose book holds this coordinator's own record: charged
  // by a placement, a reported event or a seed. A book created only to hold
  // a clock uncertainty is not one, so a registration may still seed it.
  std::set<std::pair<std::string, std::string>> recorded_ ABSL_GUARDED_BY(mu_);
  std::map<std::tuple<std::string, std::string, std::string>, std::unique_ptr<common::BudgetBook>>
      account_books_ ABSL_GUARDED_BY(mu_);  // (exchange, account, node) -> its lease
  // (exchange, account, node) -> no placements for the account there until then.
  std::map<std::tuple<std::string, std::string, std::string>, absl::Time> account_held_ ABSL_GUARDED_BY(mu_);
  std::map<Key, Pending> queue_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> awaiting_limits_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Pending> in_flight_ ABSL_GUARDED_BY(mu_);  // placed, awaiting Report
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  size_t rotate_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time next_wakeup_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  std::function<void(absl::Time)> wakeup_hook_;
  // Recent final outcomes: (exchange reply < 500, exchange round trip).
  std::vector<std::pair<bool, absl::Duration>> recent_ ABSL_GUARDED_BY(mu_);
  size_t recent_next_ ABSL_GUARDED_BY(mu_) = 0;
};

// A kResourceExhausted status from the scheduler carries its retry-after.
using common::RetryAfterOf;
using common::WithRetryAfter;

}  // namespace marketprism::coordinator
