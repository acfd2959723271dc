// File: exchange_sim/simulator.h
//
// The exchange simulator's core, free of sockets: it takes an HTTP request
// (with the TCP peer address) and returns the reply Binance spot / USD-M, OKX
// v5 or Deribit v2 would give, charging the request to that exchange's
// per-IP limit pools exactly as the rules file says, and keeping the
// statistics that tests and benchmarks read from GET /sim/stats.
// WebSocket sessions (ws_session.h) share its market data and accounting.
// sim_server.h puts it on a libwebsockets listener.
//
// Not thread-safe: the server calls it from the lws service thread only.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/budget/exchange_window.h"
#include "common/clock.h"
#include "common/rules/rules.h"
#include "exchange_sim/market.h"

namespace marketprism::sim {

// How a Binance IP earns HTTP 418 bans. The documentation says only that
// repeat offenders get bans "from 2 minutes to 3 days"; the steps are ours.
struct BanPolicy {
  // A refused (429) request arriving while an earlier 429's Retry-After is
  // still running is a strike; this many strikes earn a ban.
  int strikes_to_ban = 2;
  // Ban lengths for the 1st, 2nd, ... ban; the last repeats.
  std::vector<absl::Duration> schedule = {absl::Minutes(2), absl::Minutes(5),  absl::Minutes(15),
                                          absl::Hours(1),   absl::Hours(6),    absl::Hours(24),
                                          absl::Hours(72)};
  // An IP with no ban for this long starts again at the first step.
  absl::Duration forgive_after = absl::Hours(24);
};

// Faults, settable at start and at runtime (POST /sim/faults).
struct Faults {
  absl::Duration latency;            // added to every REST reply
  double error_rate = 0;             // share of REST requests answered 5xx, uncharged
  absl::Duration clock_offset;       // server time = real time + offset
  absl::Time maintenance_until = absl::InfinitePast();  // real time; 503 on REST, WS refused
  double ws_drop_per_second = 0;     // chance a WS connection is dropped each second
};

struct SimOptions {
  uint64_t seed = 1;
  MarketOptions market;  // many-instrument mode and the message rate
  std::string rules_file;                    // empty: the shipped rules
  std::vector<std::string> limit_overrides;  // "EXCHANGE.POOL=CAPACITY"
  BanPolicy ban;
  Faults faults;
  // WebSocket timings (defaults from the rules file; shrink them in tests).
  std::optional<absl::Duration> binance_ping_interval;
  std::optional<absl::Duration> binance_pong_timeout;
  std::optional<absl::Duration> okx_idle_timeout;
  // OKX's books channel as before its changelog of 2026-02-12: a 400-level
  // snapshot push first and a CRC32 checksum. Off (the default) is OKX now:
  // updates only, checksum 0, the snapshot from REST (its seqId joins).
  bool okx_ws_book_snapshot = false;
  std::optional<absl::Duration> deribit_min_heartbeat;
  std::optional<absl::Duration> deribit_inactivity;
};

struct HttpRequest {
  std::string method = "GET";
  std::string path;
  common::QueryParams query;
  std::string body;
  std::string peer_ip;
  std::string api_key;  // Binance's X-MBX-APIKEY header ("" when absent)
};

struct HttpResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string content_type = "application/json";
  absl::Duration delay;  // hold the reply this long (latency fault)
};

// A fixed window's final count, for utilisation figures.
struct WindowRecord {
  int64_t start_ms = 0;
  int64_t used = 0;
};

// One exchange's accounting for one source IP.
struct IpAccount {
  std::vector<std::optional<common::ExchangeWindow>> pools;  // ip-scoped pools only
  std::vector<int64_t> peak;                                 // highest use seen per pool
  std::vector<int64_t> current_start_ms;                     // fixed pools: window being filled
  std::vector<int64_t> current_used;
  std::vector<std::deque<WindowRecord>> history;             // fixed pools: closed windows

  int64_t requests = 0;
  int64_t accepted = 0;
  std::map<std::string, int64_t> rejections;  // "429", "418", "50011", "10028"
  int64_t errors = 0;                          // 4xx for bad input, injected 5xx
  int64_t bans = 0;

  // Binance ban state.
  absl::Time backoff_until = absl::InfinitePast();
  int strikes = 0;
  int offences = 0;
  absl::Time banned_until = absl::InfinitePast();
  absl::Time last_ban_end = absl::InfinitePast();

  // WebSocket connections.
  int ws_open = 0;
  int64_t ws_accepted = 0;
  int64_t ws_refused = 0;
  // A WebSocket limit broken inside a session, by the limit:
  // "messages_per_second", "streams_per_connection", "subscribe_ops_per_hour",
  // "channels_per_subscribe" (what a well-behaved client never sees).
  std::map<std::string, int64_t> ws_violations;
};

// One exchange's accounting for one account (API key): its account-scoped
// pools (Binance's ORDERS), shared by every IP the key is used from.
struct UserAccount {
  std::vector<std::optional<common::ExchangeWindow>> pools;  // account-scoped pools only
  std::vector<int64_t> peak;
  int64_t orders = 0;
  int64_t rejections = 0;  // -1015 TOO_MANY_ORDERS
};

class Simulator;

// What a REST handler needs, bundled.
struct ApiContext {
  Simulator& sim;
  const Market& market;
  const common::ExchangeRules& rules;
  const HttpRequest& req;
  absl::Time now;  // server time (with the clock-offset fault)
  int64_t now_ms;
  absl::Time received;  // for Deribit's usIn
};

class Simulator {
 public:
  // Fails with kInvalidArgument on a bad rules file or override.
  static absl::StatusOr<std::unique_ptr<Simulator>> Create(SimOptions options,
                                                          common::Clock& clock);

  // Serves one REST request (also the /sim/ admin endpoints).
  HttpResponse Handle(const HttpRequest& req);

  // The exchange's clock: real time plus the clock-offset fault.
  absl::Time ServerNow();

  // Charges `cost` to `ip` on `exchange` at `now`. On refusal returns the
  // index of the refusing pool and sets *retry_after.
  std::optional<int> Charge(const std::string& exchange, const std::string& ip,
                            const common::Cost& cost, absl::Time now, absl::Duration* retry_after);
  IpAccount& Account(const std::string& exchange, const std::string& ip);
  UserAccount& User(const std::string& exchange, const std::string& api_key);
  // Charges the account-scoped part of `cost`; on refusal as Charge().
  std::optional<int> ChargeUser(const std::string& exchange, const std::string& api_key,
                                const common::Cost& cost, absl::Time now, absl::Duration* retry_after);

  // Admission of a WebSocket connection attempt from `ip` to `exchange`.
  // Returns false (and counts a refusal) when a connection limit says no.
  bool AdmitWebSocket(const std::string& exchange, const std::string& ip, absl::Time now);
  void WebSocketClosed(const std::string& exchange, const std::string& ip);

  std::string StatsJson();
  void ResetStats();

  Market& market() { return market_; }
  const common::RulesBook& rules() const { return rules_; }
  const SimOptions& options() const { return options_; }
  Faults& faults() { return options_.faults; }
  common::Clock& clock() { return clock_; }
  std::mt19937_64& rng() { return rng_; }
  // Set by the server: asks it to drop every open WebSocket connection.
  void RequestWsDrop() { ++ws_drop_generation_; }
  int ws_drop_generation() const { return ws_drop_generation_; }

  // Which exchange a REST path belongs to, or "" (shared with WS routing).
  static std::string ExchangeForPath(absl::string_view path);

  // Applies "EXCHANGE.POOL=CAPACITY" to the rules and to every live window.
  absl::Status SetLimit(absl::string_view spec);

 private:
  Simulator(SimOptions options, common::Clock& clock, common::RulesBook rules);

  HttpResponse HandleAdmin(const HttpRequest& req);
  HttpResponse HandleExchange(const std::string& exchange, const HttpRequest& req);
  void RecordUse(IpAccount& acct, int pool, absl::Time now);

  SimOptions options_;
  common::Clock& clock_;
  common::RulesBook rules_;
  Market market_;
  std::mt19937_64 rng_;
  // exchange -> ip -> account
  std::map<std::string, absl::flat_hash_map<std::string, IpAccount>> accounts_;
  // exchange -> API key -> account
  std::map<std::string, std::map<std::string, UserAccount>> users_;
  int64_t next_order_id_ = 1;
  int ws_drop_generation_ = 0;
};

// Family handlers (binance_api.cc, okx_api.cc, deribit_api.cc). Each serves
// an already-charged request, or builds that exchange's error replies.
namespace binance {
HttpResponse Serve(ApiContext& ctx);
HttpResponse RateLimited(ApiContext& ctx, const common::PoolRule& pool, absl::Duration retry);
// TOO_MANY_ORDERS (-1015): an account's ORDERS pool is full.
HttpResponse TooManyOrders(const common::PoolRule& pool, absl::Duration retry);
HttpResponse Banned(ApiContext& ctx, absl::Time until);
HttpResponse Error(int status, int code, absl::string_view msg);
HttpResponse Maintenance();
HttpResponse InjectedError();
}  // namespace binance
namespace okx {
HttpResponse Serve(ApiContext& ctx);
HttpResponse RateLimited();
HttpResponse Error(int status, absl::string_view code, absl::string_view msg);
HttpResponse Maintenance();
HttpResponse InjectedError();
}  // namespace okx
namespace deribit {
// Deribit's method name and params for a JSON-RPC request over HTTP (GET
// /api/v2/public/x?..., POST with a JSON-RPC body to /api/v2/public/x or
// /api/v2). On malformed input fills *error_response.
struct RpcCall {
  std::string method;
  std::string params_json = "{}";
  std::string id_json;  // "" when the request had no id
};
std::optional<RpcCall> ParseHttp(const HttpRequest& req, HttpResponse* error_response,
                                 absl::Time received);
// Runs one public method; returns the JSON-RPC reply body and HTTP status.
HttpResponse Serve(ApiContext& ctx, const RpcCall& call);
std::string ErrorBody(const RpcCall& call, int code, absl::string_view message,
                      absl::Time received, absl::Time replied, absl::string_view data_json = "");
HttpResponse RateLimited(ApiContext& ctx, const RpcCall& call);
HttpResponse Maintenance(ApiContext& ctx, const RpcCall& call);
HttpResponse InjectedError(ApiContext& ctx, const RpcCall& call);
}  // namespace deribit

}  // namespace marketprism::sim
