// File: common/rules/rules.h
//
// Exchange rate-limit rules as data. A rules file (JSON, shipped as
// common/rules/exchange_rules.json) describes, per exchange, its limit pools
// (scope, window kind, length, capacity), the cost of every public endpoint in
// each pool (including parameter-dependent costs such as depth `limit` bands
// or symbol counts), the usage headers it sends and the replies that mean
// "rate limited" or "banned".
//
// `RulesBook::LoadFile` parses and validates the file; every error names the
// file, the JSON path of the offending key and the problem. The resulting
// `ExchangeRules` answer "what does this request cost, in which pools"
// (`Price`). A RulesBook is immutable after loading except through the
// explicit override calls, which are meant for start-up (config, `--limit`)
// and for limits published by the exchange; callers that share one across
// threads after start-up must synchronise those calls themselves.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace marketprism::common {

// Whose budget a pool meters.
enum class Scope { kIp, kAccount, kConnection };

// How a pool's window moves.
//  kFixed:   windows aligned to the exchange's clock (Unix epoch multiples of
//            the length); the count resets to zero at each edge.
//  kRolling: a sliding window; a unit spent at t counts until t + length.
//  kBucket:  a token bucket of `capacity` refilling at `refill_per_second`.
enum class WindowKind { kFixed, kRolling, kBucket };

enum class Family { kBinance, kOkx, kDeribit };

absl::string_view ScopeName(Scope scope);
absl::string_view WindowKindName(WindowKind kind);
absl::string_view FamilyName(Family family);

// How Binance names a limiter in exchangeInfo.rateLimits.
struct PublishedAs {
  std::string rate_limit_type;  // "REQUEST_WEIGHT", "RAW_REQUESTS", "ORDERS"
  std::string interval;         // "SECOND", "MINUTE", "HOUR", "DAY"
  int interval_num = 0;
};

struct PoolRule {
  std::string name;
  Scope scope = Scope::kIp;
  WindowKind window = WindowKind::kFixed;
  absl::Duration length;           // fixed and rolling windows
  int64_t capacity = 0;            // units per window, or bucket size
  int64_t refill_per_second = 0;   // buckets only
  std::string usage_header;        // e.g. "X-MBX-USED-WEIGHT-1M"; empty if none
  std::optional<PublishedAs> published_as;
  std::vector<std::string> sources;
};

// One parameter-dependent cost. Exactly one of the forms is set.
struct CostRule {
  enum class Form { kConstant, kParamBands, kParamValues, kSymbols };
  struct Band {
    int64_t max = 0;      // inclusive upper bound; unbounded when has_max is false
    bool has_max = true;
    int64_t cost = 0;
  };
  struct ValueSet {
    std::vector<int64_t> values;
    int64_t cost = 0;
  };

  Form form = Form::kConstant;
  int64_t constant = 0;

  // kParamBands / kParamValues: the value of query parameter `param`
  // (or `default_value` when absent) selects the cost.
  std::string param;
  int64_t default_value = 0;
  int64_t min_value = 1;
  bool clamp_above_max = false;    // else a value above the last band is rejected
  std::vector<Band> bands;         // ascending by max
  std::vector<ValueSet> value_sets;

  // kSymbols: cost depends on whether `single_param` is given, or how many
  // symbols the JSON array in `list_param` holds, or neither.
  std::string single_param;
  std::string list_param;
  std::optional<int64_t> single_cost;
  std::optional<int64_t> none_cost;      // unset: a symbol is required
  std::vector<Band> list_bands;          // by symbol count
  int64_t list_per_item = 0;             // alternative to list_bands
  int64_t list_cap = 0;                  // 0 = no cap
  int64_t list_max = 0;                  // 0 = no maximum count
};

struct EndpointRule {
  std::string method;  // "GET", "POST", ... or "ANY"
  std::string path;
  std::vector<std::pair<int, CostRule>> costs;  // pool index -> rule
  std::vector<std::string> sources;
};

// kAccountLimited: an account pool (orders) is full; the IP is not limited.
enum class RejectionKind { kRateLimited, kBanned, kWaf, kBusy, kAccountLimited };
absl::string_view RejectionKindName(RejectionKind kind);

// A reply shape that means the exchange refused for load reasons.
struct RejectionRule {
  RejectionKind kind = RejectionKind::kRateLimited;
  int http_status = 0;          // 0: any status
  std::string body_code;        // "" : not checked; Binance/OKX "code", Deribit "error.code"
  std::string retry_after_header;
};

struct WebSocketRules {
  std::vector<std::string> paths;
  int max_streams_per_connection = 0;
  int max_connections_per_ip = 0;
  int connection_pool = -1;     // pool index metering connection attempts
  int message_pool = -1;        // pool index metering client messages per connection
  int subscribe_pool = -1;      // pool index metering subscribe requests per connection
  int server_ping_seconds = 0;
  int pong_timeout_seconds = 0;
  int idle_close_seconds = 0;
  int min_heartbeat_seconds = 0;
  int max_channels_per_subscribe = 0;
  int max_subscribe_bytes = 0;
  int max_lifetime_seconds = 0;
};

struct ServerTimeRule {
  std::string method;
  std::string path;
  std::string field;  // dotted path into the JSON reply, e.g. "data.0.ts"
};

// One request's price: units per pool index.
struct Cost {
  struct Charge {
    int pool = 0;
    int64_t units = 0;
  };
  std::vector<Charge> charges;

  int64_t UnitsIn(int pool) const;
};

using QueryParams = std::vector<std::pair<std::string, std::string>>;

class ExchangeRules {
 public:
  const std::string& name() const { return name_; }
  Family family() const { return family_; }
  const std::string& rest_base() const { return rest_base_; }
  const std::string& ws_base() const { return ws_base_; }
  // The request header that names the account an account-scoped request
  // spends (Binance: "X-MBX-APIKEY"); empty when no endpoint has one.
  const std::string& account_header() const { return account_header_; }
  // Whether `cost` charges any account-scoped pool.
  bool ChargesAccount(const Cost& cost) const;
  const std::vector<PoolRule>& pools() const { return pools_; }
  const std::vector<EndpointRule>& endpoints() const { return endpoints_; }
  const std::vector<RejectionRule>& rejections() const { return rejections_; }
  const WebSocketRules& websocket() const { return websocket_; }
  const std::optional<ServerTimeRule>& server_time() const { return server_time_; }
  const std::optional<ServerTimeRule>& published_limits() const { return published_limits_; }
  int ban_min_seconds() const { return ban_min_seconds_; }
  int ban_max_seconds() const { return ban_max_seconds_; }
  absl::Duration rejection_backoff() const { return rejection_backoff_; }

  // Index of the pool named `name`, or -1.
  int PoolIndex(absl::string_view name) const;

  // The endpoint rule for (method, path), or nullptr when the exchange has no
  // rule for it (and no default cost).
  const EndpointRule* FindEndpoint(absl::string_view method, absl::string_view path) const;

  // What a request costs. Fails with kInvalidArgument naming the parameter
  // when a cost-bearing parameter is malformed or out of range, and with
  // kNotFound when the endpoint is unknown and the exchange has no default.
  absl::StatusOr<Cost> Price(absl::string_view method, absl::string_view path,
                             const QueryParams& query) const;

  // The path that names a request's endpoint: `path`, except for Deribit
  // JSON-RPC posted to /api/v2, where the body's "method" names it. Fails
  // with kInvalidArgument when such a body has no method.
  absl::StatusOr<std::string> EndpointPath(absl::string_view path, absl::string_view body) const;

  // The rejection rule matching a reply, if any. `body_code` is the code the
  // caller extracted from the body (or empty).
  const RejectionRule* MatchRejection(int http_status, absl::string_view body_code) const;

  // Replaces a pool's capacity (config override, `--limit`, or a limit the
  // exchange published). kNotFound for an unknown pool, kInvalidArgument for
  // a capacity < 1.
  absl::Status SetCapacity(absl::string_view pool, int64_t capacity);

 private:
  friend class RulesParser;

  std::string name_;
  Family family_ = Family::kBinance;
  std::string rest_base_;
  std::string ws_base_;
  std::string account_header_;
  std::vector<PoolRule> pools_;
  std::vector<EndpointRule> endpoints_;
  absl::flat_hash_map<std::string, int> endpoint_index_;  // "METHOD path"
  std::optional<EndpointRule> default_endpoint_;
  Cost per_request_;
  std::vector<RejectionRule> rejections_;
  WebSocketRules websocket_;
  std::optional<ServerTimeRule> server_time_;
  std::optional<ServerTimeRule> published_limits_;
  int ban_min_seconds_ = 0;
  int ban_max_seconds_ = 0;
  absl::Duration rejection_backoff_ = absl::ZeroDuration();
};

class RulesBook {
 public:
  // Parses and validates a rules file. Errors are kInvalidArgument (or
  // kNotFound for a missing file) and read "<file>: <json.path>: <problem>".
  static absl::StatusOr<RulesBook> LoadFile(const std::string& path);
  static absl::StatusOr<RulesBook> Parse(absl::string_view text, absl::string_view source_name);

  // The rules shipped with this build (MP_RULES_FILE baked in at compile
  // time).
  static absl::StatusOr<RulesBook> LoadDefault();
  static std::string DefaultPath();
  // The rules file a binary loads: `flag` (its --rules) when given, else
  // $MP_RULES_FILE from `getenv` (null: no environment), else DefaultPath().
  static std::string PathFor(const std::string& flag, const std::function<const char*(const char*)>& getenv);

  const ExchangeRules* Find(absl::string_view exchange) const;
  ExchangeRules* FindMutable(absl::string_view exchange);
  std::vector<std::string> ExchangeNames() const;
  const std::map<std::string, std::string>& sources() const { return sources_; }

  // Applies "EXCHANGE.POOL=CAPACITY" (the simulator's and the binaries'
  // `--limit` syntax).
  absl::Status ApplyLimitOverride(absl::string_view spec);

 private:
  friend class RulesParser;
  std::map<std::string, std::string> sources_;
  std::vector<std::unique_ptr<ExchangeRules>> exchanges_;
};

// The account a request with these headers spends: the value of the
// exchange's account header (names compared case-insensitively), or "".
std::string AccountOf(const ExchangeRules& rules,
                      const std::vector<std::pair<std::string, std::string>>& headers);

// An account key as logs, errors and status show it: its first 8
// characters, enough to tell keys apart.
std::string ShortAccount(absl::string_view account);

// Parses a JSON array of symbols as Binance takes it in `symbols=[...]`.
absl::StatusOr<std::vector<std::string>> ParseSymbolList(absl::string_view value);

}  // namespace marketprism::common
