#include "common/rules/rules.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include <nlohmann/json.hpp>

#ifndef MP_RULES_FILE
#define MP_RULES_FILE "common/rules/exchange_rules.json"
#endif

namespace marketprism::common {

using Json = nlohmann::json;

absl::string_view ScopeName(Scope scope) {
  switch (scope) {
    case Scope::kIp:
      return "ip";
    case Scope::kAccount:
      return "account";
    case Scope::kConnection:
      return "connection";
  }
  return "?";
}

absl::string_view WindowKindName(WindowKind kind) {
  switch (kind) {
    case WindowKind::kFixed:
      return "fixed";
    case WindowKind::kRolling:
      return "rolling";
    case WindowKind::kBucket:
      return "bucket";
  }
  return "?";
}

absl::string_view FamilyName(Family family) {
  switch (family) {
    case Family::kBinance:
      return "binance";
    case Family::kOkx:
      return "okx";
    case Family::kDeribit:
      return "deribit";
  }
  return "?";
}

absl::string_view RejectionKindName(RejectionKind kind) {
  switch (kind) {
    case RejectionKind::kRateLimited:
      return "rate_limited";
    case RejectionKind::kBanned:
      return "banned";
    case RejectionKind::kWaf:
      return "waf";
    case RejectionKind::kBusy:
      return "busy";
    case RejectionKind::kAccountLimited:
      return "account_limited";
  }
  return "?";
}

int64_t Cost::UnitsIn(int pool) const {
  int64_t units = 0;
  for (const Charge& c : charges) {
    if (c.pool == pool) units += c.units;
  }
  return units;
}

// ---------------------------------------------------------------------------
// Parsing

// Walks the JSON tree keeping the path, so every error names its key.
class RulesParser {
 public:
  explicit RulesParser(absl::string_view source) : source_(source) {}

  absl::StatusOr<RulesBook> ParseBook(const Json& root);

 private:
  struct At {
    const Json& j;
    std::string path;
    At Key(absl::string_view key) const { return At{j.at(std::string(key)), Join(path, key)}; }
    At Index(size_t i) const { return At{j.at(i), absl::StrCat(path, "[", i, "]")}; }
    bool Has(absl::string_view key) const { return j.is_object() && j.contains(std::string(key)); }
    static std::string Join(const std::string& path, absl::string_view key) {
      return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
    }
  };

  absl::Status Error(const std::string& path, absl::string_view problem) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", path, ": ", problem));
  }

  absl::StatusOr<At> Need(const At& parent, absl::string_view key) const {
    if (!parent.Has(key)) return Error(At::Join(parent.path, key), "required key is missing");
    return parent.Key(key);
  }

  absl::Status Expect(const At& at, Json::value_t type, absl::string_view what) const {
    bool ok = at.j.type() == type ||
              (type == Json::value_t::number_integer && at.j.is_number_unsigned());
    if (!ok) return Error(at.path, absl::StrCat("expected ", what, ", got ", at.j.type_name()));
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> String(const At& parent, absl::string_view key,
                                     bool required = true) const {
    if (!parent.Has(key)) {
      if (!required) return std::string();
      return Error(At::Join(parent.path, key), "required key is missing");
    }
    At at = parent.Key(key);
    MP_RETURN_IF_ERROR(Expect(at, Json::value_t::string, "a string"));
    return at.j.get<std::string>();
  }

  absl::StatusOr<int64_t> Int(const At& at, int64_t min) const {
    if (!at.j.is_number_integer()) {
      return Error(at.path, absl::StrCat("expected an integer, got ", at.j.type_name()));
    }
    int64_t v = at.j.get<int64_t>();
    if (v < min) return Error(at.path, absl::StrCat("must be >= ", min, ", got ", v));
    return v;
  }

  absl::StatusOr<int64_t> IntKey(const At& parent, absl::string_view key, int64_t min,
                                 std::optional<int64_t> fallback = std::nullopt) const {
    if (!parent.Has(key)) {
      if (fallback) return *fallback;
      return Error(At::Join(parent.path, key), "required key is missing");
    }
    return Int(parent.Key(key), min);
  }

  absl::Status Sources(const At& parent, std::vector<std::string>* out) const {
    if (!parent.Has("src")) return Error(At::Join(parent.path, "src"), "every figure needs sources");
    At at = parent.Key("src");
    MP_RETURN_IF_ERROR(Expect(at, Json::value_t::array, "an array of source ids"));
    if (at.j.empty()) return Error(at.path, "every figure needs at least one source");
    for (size_t i = 0; i < at.j.size(); ++i) {
      At item = at.Index(i);
      MP_RETURN_IF_ERROR(Expect(item, Json::value_t::string, "a source id"));
      std::string id = item.j.get<std::string>();
      if (!book_->sources_.contains(id)) {
        return Error(item.path, absl::StrCat("unknown source id '", id, "' (not in 'sources')"));
      }
      out->push_back(std::move(id));
    }
    return absl::OkStatus();
  }

  absl::Status Bands(const At& at, std::vector<CostRule::Band>* out) const;
  absl::StatusOr<CostRule> ParseCost(const At& at) const;
  absl::Status ParseCostMap(const At& at, const ExchangeRules& ex,
                            std::vector<std::pair<int, CostRule>>* out) const;
  absl::StatusOr<PoolRule> ParsePool(const At& at) const;
  absl::StatusOr<std::unique_ptr<ExchangeRules>> ParseExchange(const At& at,
                                                               const std::string& name) const;
  absl::StatusOr<std::optional<ServerTimeRule>> ParseEndpointRef(const At& parent,
                                                                 absl::string_view key) const;

  std::string source_;
  RulesBook* book_ = nullptr;
};

absl::Status RulesParser::Bands(const At& at, std::vector<CostRule::Band>* out) const {
  MP_RETURN_IF_ERROR(Expect(at, Json::value_t::array, "an array of bands"));
  if (at.j.empty()) return Error(at.path, "needs at least one band");
  for (size_t i = 0; i < at.j.size(); ++i) {
    At b = at.Index(i);
    MP_RETURN_IF_ERROR(Expect(b, Json::value_t::object, "a band object {max, cost}"));
    CostRule::Band band;
    MP_ASSIGN_OR_RETURN(band.cost, IntKey(b, "cost", 0));
    if (b.Has("max")) {
      MP_ASSIGN_OR_RETURN(band.max, Int(b.Key("max"), 1));
    } else {
      band.has_max = false;
      if (i + 1 != at.j.size()) return Error(b.path, "only the last band may omit 'max'");
    }
    if (!out->empty() && band.has_max && band.max <= out->back().max) {
      return Error(b.Key("max").path,
                   absl::StrCat("bands must ascend: ", band.max, " <= previous max ",
                                out->back().max));
    }
    out->push_back(band);
  }
  return absl::OkStatus();
}

absl::StatusOr<CostRule> RulesParser::ParseCost(const At& at) const {
  CostRule rule;
  if (at.j.is_number_integer()) {
    rule.form = CostRule::Form::kConstant;
    MP_ASSIGN_OR_RETURN(rule.constant, Int(at, 0));
    return rule;
  }
  MP_RETURN_IF_ERROR(Expect(at, Json::value_t::object, "an integer or a cost rule object"));
  if (at.Has("symbols")) {
    At s = at.Key("symbols");
    MP_RETURN_IF_ERROR(Expect(s, Json::value_t::object, "a symbols rule object"));
    rule.form = CostRule::Form::kSymbols;
    MP_ASSIGN_OR_RETURN(rule.single_param, String(s, "single_param"));
    MP_ASSIGN_OR_RETURN(rule.list_param, String(s, "list_param", /*required=*/false));
    if (s.Has("single")) {
      MP_ASSIGN_OR_RETURN(rule.single_cost, Int(s.Key("single"), 0));
    }
    if (s.Has("none")) {
      MP_ASSIGN_OR_RETURN(rule.none_cost, Int(s.Key("none"), 0));
    }
    if (s.Has("list_bands")) {
      MP_RETURN_IF_ERROR(Bands(s.Key("list_bands"), &rule.list_bands));
    }
    MP_ASSIGN_OR_RETURN(rule.list_per_item, IntKey(s, "list_per_item", 0, 0));
    MP_ASSIGN_OR_RETURN(rule.list_cap, IntKey(s, "list_cap", 0, 0));
    MP_ASSIGN_OR_RETURN(rule.list_max, IntKey(s, "list_max", 0, 0));
    if (!rule.list_param.empty() && rule.list_bands.empty() && rule.list_per_item == 0) {
      return Error(s.path, "'list_param' needs 'list_bands' or 'list_per_item'");
    }
    if (rule.list_param.empty() && (!rule.list_bands.empty() || rule.list_per_item != 0)) {
      return Error(s.path, "list costs given without 'list_param'");
    }
    if (!rule.single_cost) return Error(At::Join(s.path, "single"), "required key is missing");
    return rule;
  }
  MP_ASSIGN_OR_RETURN(rule.param, String(at, "param"));
  MP_ASSIGN_OR_RETURN(rule.default_value, IntKey(at, "default", 1));
  MP_ASSIGN_OR_RETURN(rule.min_value, IntKey(at, "min", 1, 1));
  if (at.Has("bands") == at.Has("values")) {
    return Error(at.path, "a parameter rule needs exactly one of 'bands' or 'values'");
  }
  if (at.Has("bands")) {
    rule.form = CostRule::Form::kParamBands;
    MP_RETURN_IF_ERROR(Bands(at.Key("bands"), &rule.bands));
    MP_ASSIGN_OR_RETURN(std::string above, String(at, "above_max", /*required=*/false));
    if (above == "clamp") {
      rule.clamp_above_max = true;
    } else if (!above.empty() && above != "reject") {
      return Error(At::Join(at.path, "above_max"),
                   absl::StrCat("must be \"clamp\" or \"reject\", got \"", above, "\""));
    }
    if (rule.bands.front().has_max && rule.bands.front().max < rule.min_value) {
      return Error(at.path, "first band ends below 'min'");
    }
  } else {
    rule.form = CostRule::Form::kParamValues;
    At vals = at.Key("values");
    MP_RETURN_IF_ERROR(Expect(vals, Json::value_t::array, "an array of {in, cost}"));
    std::set<int64_t> seen;
    for (size_t i = 0; i < vals.j.size(); ++i) {
      At v = vals.Index(i);
      CostRule::ValueSet set;
      MP_ASSIGN_OR_RETURN(set.cost, IntKey(v, "cost", 0));
      MP_ASSIGN_OR_RETURN(At in, Need(v, "in"));
      MP_RETURN_IF_ERROR(Expect(in, Json::value_t::array, "an array of values"));
      for (size_t k = 0; k < in.j.size(); ++k) {
        MP_ASSIGN_OR_RETURN(int64_t x, Int(in.Index(k), 1));
        if (!seen.insert(x).second) {
          return Error(in.Index(k).path, absl::StrCat("value ", x, " listed twice"));
        }
        set.values.push_back(x);
      }
      rule.value_sets.push_back(std::move(set));
    }
    if (!seen.contains(rule.default_value)) {
      return Error(At::Join(at.path, "default"), "the default is not one of the listed values");
    }
  }
  return rule;
}

absl::Status RulesParser::ParseCostMap(const At& at, const ExchangeRules& ex,
                                       std::vector<std::pair<int, CostRule>>* out) const {
  MP_RETURN_IF_ERROR(Expect(at, Json::value_t::object, "an object {pool: cost}"));
  if (at.j.empty()) return Error(at.path, "a cost names at least one pool");
  for (auto it = at.j.begin(); it != at.j.end(); ++it) {
    int pool = ex.PoolIndex(it.key());
    At item = at.Key(it.key());
    if (pool < 0) return Error(item.path, absl::StrCat("unknown pool '", it.key(), "'"));
    MP_ASSIGN_OR_RETURN(CostRule rule, ParseCost(item));
    out->emplace_back(pool, std::move(rule));
  }
  return absl::OkStatus();
}

absl::StatusOr<PoolRule> RulesParser::ParsePool(const At& at) const {
  MP_RETURN_IF_ERROR(Expect(at, Json::value_t::object, "a pool object"));
  PoolRule pool;
  MP_ASSIGN_OR_RETURN(pool.name, String(at, "name"));
  if (pool.name.empty() || absl::StrContains(pool.name, "=") || absl::StrContains(pool.name, ".")) {
    return Error(At::Join(at.path, "name"), "must be non-empty without '=' or '.'");
  }
  MP_ASSIGN_OR_RETURN(std::string scope, String(at, "scope"));
  if (scope == "ip") {
    pool.scope = Scope::kIp;
  } else if (scope == "account") {
    pool.scope = Scope::kAccount;
  } else if (scope == "connection") {
    pool.scope = Scope::kConnection;
  } else {
    return Error(At::Join(at.path, "scope"),
                 absl::StrCat("must be ip, account or connection, got \"", scope, "\""));
  }
  MP_ASSIGN_OR_RETURN(std::string window, String(at, "window"));
  MP_ASSIGN_OR_RETURN(pool.capacity, IntKey(at, "capacity", 1));
  if (window == "fixed" || window == "rolling") {
    pool.window = window == "fixed" ? WindowKind::kFixed : WindowKind::kRolling;
    MP_ASSIGN_OR_RETURN(int64_t seconds, IntKey(at, "seconds", 1));
    pool.length = absl::Seconds(seconds);
    if (at.Has("refill_per_second")) {
      return Error(At::Join(at.path, "refill_per_second"), "only bucket pools refill");
    }
  } else if (window == "bucket") {
    pool.window = WindowKind::kBucket;
    MP_ASSIGN_OR_RETURN(pool.refill_per_second, IntKey(at, "refill_per_second", 1));
    if (at.Has("seconds")) return Error(At::Join(at.path, "seconds"), "a bucket has no window length");
  } else {
    return Error(At::Join(at.path, "window"),
                 absl::StrCat("must be fixed, rolling or bucket, got \"", window, "\""));
  }
  MP_ASSIGN_OR_RETURN(pool.usage_header, String(at, "usage_header", /*required=*/false));
  if (at.Has("published_as")) {
    At p = at.Key("published_as");
    PublishedAs pub;
    MP_ASSIGN_OR_RETURN(pub.rate_limit_type, String(p, "rateLimitType"));
    MP_ASSIGN_OR_RETURN(pub.interval, String(p, "interval"));
    MP_ASSIGN_OR_RETURN(int64_t num, IntKey(p, "intervalNum", 1));
    pub.interval_num = static_cast<int>(num);
    static const std::map<std::string, int64_t> kUnits = {
        {"SECOND", 1}, {"MINUTE", 60}, {"HOUR", 3600}, {"DAY", 86400}};
    auto unit = kUnits.find(pub.interval);
    if (unit == kUnits.end()) {
      return Error(At::Join(p.path, "interval"), "must be SECOND, MINUTE, HOUR or DAY");
    }
    if (pool.window == WindowKind::kFixed && absl::Seconds(unit->second * num) != pool.length) {
      return Error(p.path, "published interval does not match the pool's window length");
    }
    pool.published_as = std::move(pub);
  }
  MP_RETURN_IF_ERROR(Sources(at, &pool.sources));
  return pool;
}

absl::StatusOr<std::optional<ServerTimeRule>> RulesParser::ParseEndpointRef(
    const At& parent, absl::string_view key) const {
  if (!parent.Has(key)) return std::optional<ServerTimeRule>();
  At at = parent.Key(key);
  ServerTimeRule rule;
  MP_ASSIGN_OR_RETURN(rule.method, String(at, "method"));
  MP_ASSIGN_OR_RETURN(rule.path, String(at, "path"));
  MP_ASSIGN_OR_RETURN(rule.field, String(at, "field", /*required=*/false));
  return std::optional<ServerTimeRule>(std::move(rule));
}

absl::StatusOr<std::unique_ptr<ExchangeRules>> RulesParser::ParseExchange(
    const At& at, const std::string& name) const {
  MP_RETURN_IF_ERROR(Expect(at, Json::value_t::object, "an exchange object"));
  auto ex = std::make_unique<ExchangeRules>();
  ex->name_ = name;
  MP_ASSIGN_OR_RETURN(std::string family, String(at, "family"));
  if (family == "binance") {
    ex->family_ = Family::kBinance;
  } else if (family == "okx") {
    ex->family_ = Family::kOkx;
  } else if (family == "deribit") {
    ex->family_ = Family::kDeribit;
  } else {
    return Error(At::Join(at.path, "family"),
                 absl::StrCat("must be binance, okx or deribit, got \"", family, "\""));
  }
  MP_ASSIGN_OR_RETURN(ex->rest_base_, String(at, "rest_base"));
  MP_ASSIGN_OR_RETURN(ex->ws_base_, String(at, "ws_base", /*required=*/false));
  MP_ASSIGN_OR_RETURN(ex->account_header_, String(at, "account_header", /*required=*/false));
  MP_ASSIGN_OR_RETURN(ex->server_time_, ParseEndpointRef(at, "server_time"));
  MP_ASSIGN_OR_RETURN(ex->published_limits_, ParseEndpointRef(at, "published_limits"));

  MP_ASSIGN_OR_RETURN(At pools, Need(at, "pools"));
  MP_RETURN_IF_ERROR(Expect(pools, Json::value_t::array, "an array of pools"));
  if (pools.j.empty()) return Error(pools.path, "an exchange needs at least one pool");
  for (size_t i = 0; i < pools.j.size(); ++i) {
    MP_ASSIGN_OR_RETURN(PoolRule pool, ParsePool(pools.Index(i)));
    if (ex->PoolIndex(pool.name) >= 0) {
      return Error(pools.Index(i).Key("name").path,
                   absl::StrCat("duplicate pool name '", pool.name, "'"));
    }
    ex->pools_.push_back(std::move(pool));
  }

  if (at.Has("per_request_cost")) {
    std::vector<std::pair<int, CostRule>> costs;
    MP_RETURN_IF_ERROR(ParseCostMap(at.Key("per_request_cost"), *ex, &costs));
    for (auto& [pool, rule] : costs) {
      if (rule.form != CostRule::Form::kConstant) {
        return Error(At::Join(at.path, "per_request_cost"), "per-request costs must be constants");
      }
      ex->per_request_.charges.push_back({pool, rule.constant});
    }
  }
  if (at.Has("default_cost")) {
    EndpointRule def;
    def.method = "ANY";
    MP_RETURN_IF_ERROR(ParseCostMap(at.Key("default_cost"), *ex, &def.costs));
    if (!at.Has("default_cost_src")) {
      return Error(At::Join(at.path, "default_cost_src"), "a default cost needs sources");
    }
    ex->default_endpoint_ = std::move(def);
  }

  MP_ASSIGN_OR_RETURN(At eps, Need(at, "endpoints"));
  MP_RETURN_IF_ERROR(Expect(eps, Json::value_t::array, "an array of endpoints"));
  for (size_t i = 0; i < eps.j.size(); ++i) {
    At e = eps.Index(i);
    MP_RETURN_IF_ERROR(Expect(e, Json::value_t::object, "an endpoint object"));
    EndpointRule ep;
    MP_ASSIGN_OR_RETURN(ep.method, String(e, "method"));
    static const std::set<std::string> kMethods = {"GET", "POST", "PUT", "DELETE", "ANY"};
    if (!kMethods.contains(ep.method)) {
      return Error(At::Join(e.path, "method"),
                   absl::StrCat("must be GET, POST, PUT, DELETE or ANY, got \"", ep.method, "\""));
    }
    MP_ASSIGN_OR_RETURN(ep.path, String(e, "path"));
    if (!absl::StartsWith(ep.path, "/")) {
      return Error(At::Join(e.path, "path"), "must start with '/'");
    }
    MP_ASSIGN_OR_RETURN(At cost, Need(e, "cost"));
    MP_RETURN_IF_ERROR(ParseCostMap(cost, *ex, &ep.costs));
    MP_RETURN_IF_ERROR(Sources(e, &ep.sources));
    for (const auto& [pool, rule] : ep.costs) {
      if (ex->pools_[pool].scope == Scope::kAccount && ex->account_header_.empty()) {
        return Error(At::Join(e.path, "cost"),
                     absl::StrCat("charges account pool '", ex->pools_[pool].name,
                                  "' but the exchange names no account_header to tell accounts apart"));
      }
    }
    std::string key = absl::StrCat(ep.method, " ", ep.path);
    if (!ex->endpoint_index_.emplace(key, static_cast<int>(ex->endpoints_.size())).second) {
      return Error(e.path, absl::StrCat("duplicate endpoint ", key));
    }
    ex->endpoints_.push_back(std::move(ep));
  }

  if (at.Has("rejections")) {
    At rs = at.Key("rejections");
    MP_RETURN_IF_ERROR(Expect(rs, Json::value_t::array, "an array of rejection rules"));
    for (size_t i = 0; i < rs.j.size(); ++i) {
      At r = rs.Index(i);
      RejectionRule rule;
      MP_ASSIGN_OR_RETURN(std::string kind, String(r, "kind"));
      if (kind == "rate_limited") {
        rule.kind = RejectionKind::kRateLimited;
      } else if (kind == "banned") {
        rule.kind = RejectionKind::kBanned;
      } else if (kind == "waf") {
        rule.kind = RejectionKind::kWaf;
      } else if (kind == "busy") {
        rule.kind = RejectionKind::kBusy;
      } else if (kind == "account_limited") {
        rule.kind = RejectionKind::kAccountLimited;
      } else {
        return Error(At::Join(r.path, "kind"),
                     absl::StrCat("must be rate_limited, banned, waf, busy or account_limited, got \"", kind, "\""));
      }
      MP_ASSIGN_OR_RETURN(int64_t status, IntKey(r, "http_status", 100, 0));
      rule.http_status = static_cast<int>(status);
      MP_ASSIGN_OR_RETURN(rule.body_code, String(r, "body_code", /*required=*/false));
      MP_ASSIGN_OR_RETURN(rule.retry_after_header, String(r, "retry_after_header", false));
      if (rule.http_status == 0 && rule.body_code.empty()) {
        return Error(r.path, "a rejection rule needs 'http_status' or 'body_code'");
      }
      std::vector<std::string> unused;
      MP_RETURN_IF_ERROR(Sources(r, &unused));
      ex->rejections_.push_back(std::move(rule));
    }
  }
  if (at.Has("ban")) {
    At b = at.Key("ban");
    MP_ASSIGN_OR_RETURN(int64_t lo, IntKey(b, "min_seconds", 1));
    MP_ASSIGN_OR_RETURN(int64_t hi, IntKey(b, "max_seconds", lo));
    ex->ban_min_seconds_ = static_cast<int>(lo);
    ex->ban_max_seconds_ = static_cast<int>(hi);
    std::vector<std::string> unused;
    MP_RETURN_IF_ERROR(Sources(b, &unused));
  }
  MP_ASSIGN_OR_RETURN(int64_t backoff, IntKey(at, "rejection_backoff_seconds", 0, 0));
  ex->rejection_backoff_ = absl::Seconds(backoff);

  if (at.Has("websocket")) {
    At w = at.Key("websocket");
    WebSocketRules& ws = ex->websocket_;
    MP_ASSIGN_OR_RETURN(At paths, Need(w, "paths"));
    MP_RETURN_IF_ERROR(Expect(paths, Json::value_t::array, "an array of paths"));
    for (size_t i = 0; i < paths.j.size(); ++i) {
      MP_RETURN_IF_ERROR(Expect(paths.Index(i), Json::value_t::string, "a path"));
      ws.paths.push_back(paths.j[i].get<std::string>());
    }
    auto pool_ref = [&](absl::string_view key, int* out) -> absl::Status {
      MP_ASSIGN_OR_RETURN(std::string name, String(w, key, /*required=*/false));
      if (name.empty()) return absl::OkStatus();
      *out = ex->PoolIndex(name);
      if (*out < 0) return Error(At::Join(w.path, key), absl::StrCat("unknown pool '", name, "'"));
      return absl::OkStatus();
    };
    MP_RETURN_IF_ERROR(pool_ref("connection_pool", &ws.connection_pool));
    MP_RETURN_IF_ERROR(pool_ref("message_pool", &ws.message_pool));
    MP_RETURN_IF_ERROR(pool_ref("subscribe_pool", &ws.subscribe_pool));
    auto int_field = [&](absl::string_view key, int* out) -> absl::Status {
      MP_ASSIGN_OR_RETURN(int64_t v, IntKey(w, key, 0, 0));
      *out = static_cast<int>(v);
      return absl::OkStatus();
    };
    MP_RETURN_IF_ERROR(int_field("max_streams_per_connection", &ws.max_streams_per_connection));
    MP_RETURN_IF_ERROR(int_field("max_connections_per_ip", &ws.max_connections_per_ip));
    MP_RETURN_IF_ERROR(int_field("server_ping_seconds", &ws.server_ping_seconds));
    MP_RETURN_IF_ERROR(int_field("pong_timeout_seconds", &ws.pong_timeout_seconds));
    MP_RETURN_IF_ERROR(int_field("idle_close_seconds", &ws.idle_close_seconds));
    MP_RETURN_IF_ERROR(int_field("min_heartbeat_seconds", &ws.min_heartbeat_seconds));
    MP_RETURN_IF_ERROR(int_field("max_channels_per_subscribe", &ws.max_channels_per_subscribe));
    MP_RETURN_IF_ERROR(int_field("max_subscribe_bytes", &ws.max_subscribe_bytes));
    MP_RETURN_IF_ERROR(int_field("max_lifetime_seconds", &ws.max_lifetime_seconds));
    std::vector<std::string> unused;
    MP_RETURN_IF_ERROR(Sources(w, &unused));
  }
  return ex;
}

absl::StatusOr<RulesBook> RulesParser::ParseBook(const Json& root) {
  RulesBook book;
  book_ = &book;
  At top{root, ""};
  MP_RETURN_IF_ERROR(Expect(top, Json::value_t::object, "a JSON object at the top level"));
  MP_ASSIGN_OR_RETURN(int64_t version, IntKey(top, "schema_version", 1));
  if (version != 1) return Error("schema_version", absl::StrCat("unsupported version ", version));
  MP_ASSIGN_OR_RETURN(At sources, Need(top, "sources"));
  MP_RETURN_IF_ERROR(Expect(sources, Json::value_t::object, "an object {id: location}"));
  for (auto it = sources.j.begin(); it != sources.j.end(); ++it) {
    MP_RETURN_IF_ERROR(Expect(sources.Key(it.key()), Json::value_t::string, "a location string"));
    book.sources_[it.key()] = it.value().get<std::string>();
  }
  MP_ASSIGN_OR_RETURN(At exchanges, Need(top, "exchanges"));
  MP_RETURN_IF_ERROR(Expect(exchanges, Json::value_t::object, "an object {name: exchange}"));
  for (auto it = exchanges.j.begin(); it != exchanges.j.end(); ++it) {
    MP_ASSIGN_OR_RETURN(auto ex, ParseExchange(exchanges.Key(it.key()), it.key()));
    book.exchanges_.push_back(std::move(ex));
  }
  return book;
}

absl::StatusOr<RulesBook> RulesBook::Parse(absl::string_view text, absl::string_view source_name) {
  Json root = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    // Re-parse with exceptions only to learn the position of the error.
    try {
      (void)Json::parse(text.begin(), text.end());
    } catch (const Json::parse_error& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(source_name, ": not valid JSON at byte ", e.byte, ": ", e.what()));
    }
    return absl::InvalidArgumentError(absl::StrCat(source_name, ": not valid JSON"));
  }
  RulesParser parser(source_name);
  try {
    return parser.ParseBook(root);
  } catch (const Json::exception& e) {
    // Json::at() on a missing key: the only throwing path left.
    return absl::InvalidArgumentError(absl::StrCat(source_name, ": ", e.what()));
  }
}

absl::StatusOr<RulesBook> RulesBook::LoadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open rules file"));
  std::stringstream buf;
  buf << in.rdbuf();
  return Parse(buf.str(), path);
}

std::string RulesBook::DefaultPath() { return MP_RULES_FILE; }

std::string RulesBook::PathFor(const std::string& flag, const std::function<const char*(const char*)>& getenv) {
  if (!flag.empty()) return flag;
  const char* env = getenv ? getenv("MP_RULES_FILE") : nullptr;
  if (env != nullptr && *env != '\0') return env;
  return DefaultPath();
}

absl::StatusOr<RulesBook> RulesBook::LoadDefault() { return LoadFile(DefaultPath()); }

const ExchangeRules* RulesBook::Find(absl::string_view exchange) const {
  for (const auto& ex : exchanges_) {
    if (ex->name() == exchange) return ex.get();
  }
  return nullptr;
}

ExchangeRules* RulesBook::FindMutable(absl::string_view exchange) {
  for (auto& ex : exchanges_) {
    if (ex->name() == exchange) return ex.get();
  }
  return nullptr;
}

std::vector<std::string> RulesBook::ExchangeNames() const {
  std::vector<std::string> names;
  for (const auto& ex : exchanges_) names.push_back(ex->name());
  return names;
}

absl::Status RulesBook::ApplyLimitOverride(absl::string_view spec) {
  std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(spec, absl::MaxSplits('=', 1));
  size_t dot = kv.first.find('.');
  if (dot == absl::string_view::npos || kv.second.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--limit \"", spec, "\": expected EXCHANGE.POOL=CAPACITY"));
  }
  absl::string_view exchange = kv.first.substr(0, dot);
  absl::string_view pool = kv.first.substr(dot + 1);
  int64_t capacity = 0;
  if (!absl::SimpleAtoi(kv.second, &capacity)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--limit \"", spec, "\": capacity \"", kv.second, "\" is not an integer"));
  }
  ExchangeRules* ex = FindMutable(exchange);
  if (ex == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("--limit \"", spec, "\": unknown exchange \"",
                                                   exchange, "\" (known: ",
                                                   absl::StrJoin(ExchangeNames(), ", "), ")"));
  }
  absl::Status st = ex->SetCapacity(pool, capacity);
  if (!st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--limit \"", spec, "\": ", st.message()));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Pricing

int ExchangeRules::PoolIndex(absl::string_view name) const {
  for (size_t i = 0; i < pools_.size(); ++i) {
    if (pools_[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

std::string AccountOf(const ExchangeRules& rules,
                      const std::vector<std::pair<std::string, std::string>>& headers) {
  if (rules.account_header().empty()) return "";
  for (const auto& [name, value] : headers) {
    if (absl::EqualsIgnoreCase(name, rules.account_header())) return value;
  }
  return "";
}

std::string ShortAccount(absl::string_view account) {
  return account.size() <= 8 ? std::string(account) : absl::StrCat(account.substr(0, 8), "...");
}

bool ExchangeRules::ChargesAccount(const Cost& cost) const {
  for (const Cost::Charge& c : cost.charges) {
    if (c.units > 0 && pools_[c.pool].scope == Scope::kAccount) return true;
  }
  return false;
}

absl::Status ExchangeRules::SetCapacity(absl::string_view pool, int64_t capacity) {
  int index = PoolIndex(pool);
  if (index < 0) {
    return absl::NotFoundError(absl::StrCat("unknown pool \"", pool, "\" on ", name_));
  }
  if (capacity < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("capacity of ", name_, ".", pool, " must be >= 1, got ", capacity));
  }
  pools_[index].capacity = capacity;
  return absl::OkStatus();
}

const EndpointRule* ExchangeRules::FindEndpoint(absl::string_view method,
                                                absl::string_view path) const {
  auto it = endpoint_index_.find(absl::StrCat(method, " ", path));
  if (it != endpoint_index_.end()) return &endpoints_[it->second];
  it = endpoint_index_.find(absl::StrCat("ANY ", path));
  if (it != endpoint_index_.end()) return &endpoints_[it->second];
  if (default_endpoint_) return &*default_endpoint_;
  return nullptr;
}

namespace {

const std::string* FindParam(const QueryParams& query, absl::string_view key) {
  for (const auto& [k, v] : query) {
    if (k == key) return &v;
  }
  return nullptr;
}

absl::StatusOr<int64_t> BandCost(const std::vector<CostRule::Band>& bands, int64_t value,
                                 bool clamp, absl::string_view what) {
  for (const CostRule::Band& band : bands) {
    if (!band.has_max || value <= band.max) return band.cost;
  }
  if (clamp) return bands.back().cost;
  return absl::InvalidArgumentError(
      absl::StrCat(what, "=", value, " is above the maximum ", bands.back().max));
}

absl::StatusOr<int64_t> RuleCost(const CostRule& rule, const QueryParams& query) {
  switch (rule.form) {
    case CostRule::Form::kConstant:
      return rule.constant;
    case CostRule::Form::kParamBands:
    case CostRule::Form::kParamValues: {
      int64_t value = rule.default_value;
      if (const std::string* raw = FindParam(query, rule.param)) {
        if (!absl::SimpleAtoi(*raw, &value)) {
          return absl::InvalidArgumentError(
              absl::StrCat("parameter ", rule.param, "=\"", *raw, "\" is not an integer"));
        }
      }
      if (rule.form == CostRule::Form::kParamBands) {
        if (value < rule.min_value) {
          return absl::InvalidArgumentError(absl::StrCat(
              "parameter ", rule.param, "=", value, " is below the minimum ", rule.min_value));
        }
        return BandCost(rule.bands, value, rule.clamp_above_max,
                        absl::StrCat("parameter ", rule.param));
      }
      std::vector<std::string> allowed;
      for (const CostRule::ValueSet& set : rule.value_sets) {
        for (int64_t v : set.values) {
          if (v == value) return set.cost;
          allowed.push_back(absl::StrCat(v));
        }
      }
      std::sort(allowed.begin(), allowed.end(),
                [](const std::string& a, const std::string& b) { return std::stoll(a) < std::stoll(b); });
      return absl::InvalidArgumentError(absl::StrCat("parameter ", rule.param, "=", value,
                                                     " is not one of ", absl::StrJoin(allowed, ",")));
    }
    case CostRule::Form::kSymbols: {
      const std::string* single = FindParam(query, rule.single_param);
      const std::string* list =
          rule.list_param.empty() ? nullptr : FindParam(query, rule.list_param);
      if (single != nullptr && list != nullptr) {
        return absl::InvalidArgumentError(absl::StrCat("parameters ", rule.single_param, " and ",
                                                       rule.list_param, " cannot both be sent"));
      }
      if (single != nullptr) {
        if (single->empty()) {
          return absl::InvalidArgumentError(absl::StrCat("parameter ", rule.single_param, " is empty"));
        }
        return *rule.single_cost;
      }
      if (list != nullptr) {
        auto symbols = ParseSymbolList(*list);
        if (!symbols.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat("parameter ", rule.list_param, ": ", symbols.status().message()));
        }
        int64_t n = static_cast<int64_t>(symbols->size());
        if (rule.list_max > 0 && n > rule.list_max) {
          return absl::InvalidArgumentError(absl::StrCat("parameter ", rule.list_param, " has ", n,
                                                         " symbols, more than ", rule.list_max));
        }
        if (rule.list_per_item > 0) {
          int64_t cost = n * rule.list_per_item;
          return rule.list_cap > 0 ? std::min(cost, rule.list_cap) : cost;
        }
        return BandCost(rule.list_bands, n, false, absl::StrCat("symbol count in ", rule.list_param));
      }
      if (!rule.none_cost) {
        return absl::InvalidArgumentError(
            rule.list_param.empty()
                ? absl::StrCat("parameter ", rule.single_param, " is required")
                : absl::StrCat("parameter ", rule.single_param, " or ", rule.list_param,
                               " is required"));
      }
      return *rule.none_cost;
    }
  }
  return absl::InternalError("unknown cost rule form");
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseSymbolList(absl::string_view value) {
  Json j = Json::parse(value.begin(), value.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", value, "\" is not a JSON array of symbols like [\"BTCUSDT\",\"BNBBTC\"]"));
  }
  std::vector<std::string> symbols;
  for (const Json& item : j) {
    if (!item.is_string() || item.get<std::string>().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("\"", value, "\" holds a non-string symbol"));
    }
    symbols.push_back(item.get<std::string>());
  }
  if (symbols.empty()) return absl::InvalidArgumentError("the symbol list is empty");
  return symbols;
}

absl::StatusOr<Cost> ExchangeRules::Price(absl::string_view method, absl::string_view path,
                                          const QueryParams& query) const {
  const EndpointRule* ep = FindEndpoint(method, path);
  if (ep == nullptr) {
    return absl::NotFoundError(absl::StrCat(name_, " has no cost rule for ", method, " ", path));
  }
  Cost cost = per_request_;
  for (const auto& [pool, rule] : ep->costs) {
    MP_ASSIGN_OR_RETURN(int64_t units, RuleCost(rule, query));
    bool merged = false;
    for (Cost::Charge& c : cost.charges) {
      if (c.pool == pool) {
        c.units += units;
        merged = true;
      }
    }
    if (!merged) cost.charges.push_back({pool, units});
  }
  return cost;
}

absl::StatusOr<std::string> ExchangeRules::EndpointPath(absl::string_view path,
                                                        absl::string_view body) const {
  if (family_ != Family::kDeribit || (path != "/api/v2" && path != "/api/v2/")) {
    return std::string(path);
  }
  Json j = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("method") || !j["method"].is_string()) {
    return absl::InvalidArgumentError(
        "body: a JSON-RPC request to /api/v2 needs a \"method\" string");
  }
  return absl::StrCat("/api/v2/", j["method"].get<std::string>());
}

const RejectionRule* ExchangeRules::MatchRejection(int http_status,
                                                   absl::string_view body_code) const {
  for (const RejectionRule& rule : rejections_) {
    if (rule.http_status != 0 && rule.http_status != http_status) continue;
    if (!rule.body_code.empty() && rule.body_code != body_code) continue;
    return &rule;
  }
  return nullptr;
}

}  // namespace marketprism::common
