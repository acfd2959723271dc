// File: node/exchange_lane.h
//
// One exchange as seen from one node (one egress IP): the node's exact ledger
// of that IP's pools, the exchange's clock offset, and whether the exchange
// has the IP on hold. Execute() runs one request end to end:
//
//   price (rules) -> admit against the ledger and the exposure bound,
//   whatever the coordinator said -> send from the egress IP -> settle the
//   ledger with the exchange's usage header (a header above what the ledger
//   explains is someone else's use of the IP: adopted, logged, reported) ->
//   recognise 429/418/50011/10028 and park the exchange for this IP until
//   Retry-After (or until the pool refills).
//
// The exposure bound (common/budget/exposure.h) is the node's own: requests
// the coordinator dispatched beyond it are refused (exposure_refusal) so a
// surprise costs at most that many refused requests. It grows with every
// confirming reply, so it stays at or above the coordinator's bound, which
// grows only as the budget needs; the coordinator reads it on every reply.
// The node's own clock probes are not counted against it (one at a time).
//
// Thread-safe: requests run concurrently; the ledger is guarded, the HTTP
// round trip happens outside the lock.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/budget/budget_book.h"
#include "common/budget/exposure.h"
#include "common/budget/usage_event.h"
#include "common/clock.h"
#include "common/net/http_client.h"
#include "common/rules/rules.h"

namespace marketprism::node {

struct LaneOptions {
  absl::Duration request_timeout = absl::Seconds(10);
  // Clock uncertainty until a probe succeeds, and the margin on top of it.
  absl::Duration default_uncertainty = absl::Milliseconds(50);
  absl::Duration margin = absl::Milliseconds(1);
  // How long to stop after a WAF (403) or "busy" reply, which carry no Retry-After.
  absl::Duration waf_park = absl::Seconds(30);
  absl::Duration busy_park = absl::Seconds(1);
  // Logs every admission and every refusal with the pools' use (diagnostics;
  // mp-node's --trace-ledger, MP_TRACE_LEDGER=1).
  bool trace_ledger = false;
  common::ExposureOptions exposure;
  std::string egress_ip;  // for log lines
};

struct LaneRequest {
  std::string method = "GET";
  std::string path;
  common::QueryParams query;
  std::string body;
  common::HttpHeaders headers;  // sent as given; the account header names the account
};

// This node's share of one account pool, as the leader leased it.
struct LeasedPool {
  std::string account;
  std::string pool;
  int64_t units = 0;
};

// The exchange stopped this IP.
struct Park {
  std::string kind;  // "rate_limited", "banned", "waf", "busy"
  absl::Time until;  // local clock
  int http_status = 0;

  // The same hold as the coordinator sees it: a ban of `exchange`.
  common::ExchangeBan ToBan(std::string exchange) const {
    return {std::move(exchange), kind, until, http_status};
  }
};

struct LaneResult {
  enum class Outcome { kReplied, kRefused, kParked, kNotSent, kLost, kInvalid };
  Outcome outcome = Outcome::kReplied;
  common::HttpReply reply;
  common::Cost cost;
  absl::Time sent_ex, replied_ex;  // exchange-clock estimates
  absl::Duration exchange_time;
  std::optional<std::pair<std::string, int64_t>> observed;  // usage header (pool, used)
  std::optional<Park> park;                                 // the reply parked the IP
  absl::Duration retry_after;                               // kRefused / kParked
  std::string detail;
  std::vector<common::BudgetBook::PoolView> usage;          // kRefused
  bool account_refusal = false;  // kRefused by the account's lease, not the IP's budget
  bool exposure_refusal = false;  // kRefused: as many in flight as the exposure bound allows
  int exposure = 0;               // the lane's exposure bound after this request (0: unbounded)
  int64_t foreign_units = 0;      // the usage header exceeded what the ledger explains by this
};

// Someone else's use of this IP, as the last usage header above the ledger
// showed it.
struct ForeignUse {
  std::string pool;
  int64_t units = 0;  // the excess
  absl::Time seen = absl::InfinitePast();
};

struct ClockView {
  absl::Duration offset;       // exchange clock minus ours
  absl::Duration uncertainty;
  bool measured = false;
};

class ExchangeLane {
 public:
  // `rules` and `clock` must outlive the lane. Until SetEndpoint, requests
  // are answered kNotSent.
  ExchangeLane(const common::ExchangeRules& rules, LaneOptions options, common::Clock& clock);

  // Where to send: the REST base URL and the client bound to the egress IP.
  void SetEndpoint(std::string rest_url, std::shared_ptr<common::HttpClient> http);
  bool has_endpoint();
  std::string rest_url();

  // Refused (kRefused) until the exchange's clock has been measured, since
  // charges recorded in a time base that then jumps would be misplaced.
  LaneResult Execute(const LaneRequest& request);

  // Reads the exchange's server time (budgeted like any request) and refines
  // the clock estimate. kFailedPrecondition if the rules name no server-time
  // endpoint; the request's error otherwise.
  absl::Status ProbeClock();
  // Whether requests are taken: the clock is measured (or cannot be).
  bool ready();

  const common::ExchangeRules& rules() const { return rules_; }
  ClockView clock();
  std::vector<common::BudgetBook::PoolView> Usage();
  std::optional<Park> ActivePark();
  // The exposure bound now and what is in flight against it.
  int exposure_limit();
  int exposure_in_flight();
  // The last foreign use seen (units 0: none yet).
  ForeignUse foreign_use();
  // Charges what a message the node sends on its own costs this IP — a
  // WebSocket call that the exchange prices like a request (Deribit's
  // public/test and public/set_heartbeat draw on the same credits as REST) —
  // and reports it with TakeEvents. Zero when charged; else how long until
  // it would fit (or the IP's hold ends): the caller sends it then.
  // kInvalidArgument when the rules cannot price it.
  absl::StatusOr<absl::Duration> SpendOwn(const std::string& method, const std::string& path);
  // Requests this lane made on its own (clock probes, SpendOwn) since the last call,
  // for the coordinator's ledger.
  std::vector<common::UsageEvent> TakeEvents();
  // Every request sent (own or dispatched) still inside one of the rules'
  // rolling windows, with its charges in those pools only: what a new
  // coordinator needs to rebuild its rolling ledgers exactly.
  std::vector<common::UsageEvent> RecentRolling();
  // A capacity the coordinator (or the exchange) says every ledger must use.
  absl::Status SetCapacity(absl::string_view pool, int64_t capacity);

  // The account leases this node holds on this exchange from now on, each
  // until `expires` (local clock); an account not listed has none. A request
  // charged to an account pool is refused beyond the lease, or without one.
  void SetLeases(const std::vector<LeasedPool>& leases, absl::Time expires);
  // The account's ledger against its lease (empty without one).
  std::vector<common::BudgetBook::PoolView> AccountUsage(const std::string& account);

  // Which pool's usage header a reply carries, and its value.
  static std::optional<std::pair<std::string, int64_t>> ObservedUsage(
      const common::ExchangeRules& rules, const common::HttpReply& reply);
  // The code an exchange put in an error body: Binance/OKX "code", Deribit
  // "error.code"; "" when there is none.
  static std::string BodyCode(common::Family family, int status, absl::string_view body);

 private:
  // A request admitted against the ledger, on its way.
  struct Admission {
    common::BudgetBook::Ticket ticket;
    std::string account;                    // charged to its lease too, when set
    common::BudgetBook::Ticket account_ticket;
    std::shared_ptr<common::HttpClient> http;
    std::string base;
    absl::Duration offset_at_send;
    absl::Time sent_local;
    bool exposed = false;  // counted against the exposure bound
    uint64_t exposure_epoch = 0;
  };

  absl::Time ExchangeNow() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateUncertainty() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool ClockReady() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Prices and admits; nullopt with *r filled when it may not go. `own`:
  // the lane's own request (a clock probe), sent before the clock is known
  // and not counted against the exposure bound.
  std::optional<Admission> Admit(const LaneRequest& request, bool own, LaneResult* r);
  absl::StatusOr<common::HttpReply> Send(const Admission& a, const LaneRequest& request,
                                         LaneResult* r);
  // Settles the ledger with the reply (moving the ticket into the current
  // time base first), recognises rejections and ends the request's exposure.
  void Settle(Admission& a, absl::StatusOr<common::HttpReply> reply, bool own, LaneResult* r);
  // Settle's work under the lock: what the reply says about the ledger.
  common::ExposureVerdict SettleLocked(Admission& a, absl::StatusOr<common::HttpReply> reply, bool own,
                                       LaneResult* r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether the reply's usage header shows more than this IP's ledger
  // explains; records, logs and returns the excess (0: none). Before the
  // ticket is completed, so what is in flight counts as explained.
  int64_t ForeignUnits(const Admission& a, const LaneResult& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A refusal (429 and the like) at `now` of a request sent at `sent`: the
  // rest of the window is spent. Another in the same window is logged: a
  // warning for a request already in flight at the first (the cost of the
  // exposure bound), an error for one sent after it (a bug: the first
  // should have held everything).
  void NoteRefusal(const LaneResult& r, absl::Time sent, absl::Time now, absl::Time until)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const common::ExchangeRules& rules_;
  const LaneOptions options_;
  common::Clock& clock_;

  absl::Mutex mu_;
  std::string rest_url_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<common::HttpClient> http_ ABSL_GUARDED_BY(mu_);
  common::BudgetBook book_ ABSL_GUARDED_BY(mu_);
  common::OffsetEstimator offset_ ABSL_GUARDED_BY(mu_){8};
  std::optional<Park> park_ ABSL_GUARDED_BY(mu_);
  common::ExposureBound exposure_ ABSL_GUARDED_BY(mu_);
  ForeignUse foreign_ ABSL_GUARDED_BY(mu_);
  // The end of the window of the last refusal (local clock): another before
  // it is a second refusal in one window.
  absl::Time refusal_window_end_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time first_refusal_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();  // local clock
  std::vector<common::UsageEvent> events_ ABSL_GUARDED_BY(mu_);
  // What a SpendOwn that found no room needs: dispatched requests leave it
  // room until it is spent (or not asked for again within a second).
  std::optional<common::Cost> own_claim_ ABSL_GUARDED_BY(mu_);
  absl::Time own_claim_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::deque<common::UsageEvent> recent_rolling_ ABSL_GUARDED_BY(mu_);
  absl::Duration longest_rolling_ = absl::ZeroDuration();
  struct Lease {
    std::unique_ptr<common::BudgetBook> book;  // capacities: the leased units
    absl::Time expires = absl::InfinitePast();
    absl::Time blocked_until = absl::InfinitePast();  // the exchange said the account is full
  };
  std::map<std::string, Lease> leases_ ABSL_GUARDED_BY(mu_);  // by account
};

// Every lane of a node, by exchange; fixed once the node is built (the lanes
// themselves are thread-safe).
using Lanes = std::map<std::string, std::unique_ptr<ExchangeLane>, std::less<>>;
// The lane serving `exchange`, or nullptr.
ExchangeLane* FindLane(const Lanes& lanes, absl::string_view exchange);

// Reads a dotted path ("data.0.ts") from a JSON body as an integer; numbers
// written as strings are accepted.
absl::StatusOr<int64_t> JsonPathInt(absl::string_view body, absl::string_view path);

}  // namespace marketprism::node
