#include "exchange_sim/simulator.h"

#include "exchange_sim/api_util.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include <nlohmann/json.hpp>

namespace marketprism::sim {

using Json = nlohmann::ordered_json;
using common::Family;

namespace {
constexpr size_t kHistoryWindows = 240;

HttpResponse AdminReply(int status, const Json& body) {
  HttpResponse r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, kDumpReplacingBadUtf8);
  return r;
}

HttpResponse AdminError(int status, absl::string_view message) {
  return AdminReply(status, Json{{"error", std::string(message)}});
}
}  // namespace

absl::StatusOr<std::unique_ptr<Simulator>> Simulator::Create(SimOptions options,
                                                             common::Clock& clock) {
  std::string path = options.rules_file.empty() ? common::RulesBook::DefaultPath()
                                                : options.rules_file;
  MP_ASSIGN_OR_RETURN(common::RulesBook rules, common::RulesBook::LoadFile(path));
  for (const std::string& spec : options.limit_overrides) {
    MP_RETURN_IF_ERROR(rules.ApplyLimitOverride(spec));
  }
  if (options.ban.strikes_to_ban < 1) {
    return absl::InvalidArgumentError("--ban-strikes must be >= 1");
  }
  if (options.ban.schedule.empty()) {
    return absl::InvalidArgumentError("--ban-schedule needs at least one duration");
  }
  for (absl::Duration d : options.ban.schedule) {
    if (d <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError("--ban-schedule durations must be positive");
    }
  }
  if (options.faults.error_rate < 0 || options.faults.error_rate > 1) {
    return absl::InvalidArgumentError("--error-rate must be within [0, 1]");
  }
  return std::unique_ptr<Simulator>(new Simulator(std::move(options), clock, std::move(rules)));
}

Simulator::Simulator(SimOptions options, common::Clock& clock, common::RulesBook rules)
    : options_(std::move(options)),
      clock_(clock),
      rules_(std::move(rules)),
      market_(options_.seed, options_.market),
      rng_(options_.seed * 7919 + 17) {}

absl::Time Simulator::ServerNow() { return clock_.Now() + options_.faults.clock_offset; }

std::string Simulator::ExchangeForPath(absl::string_view path) {
  if (absl::StartsWith(path, "/api/v3/")) return "binance_spot";
  if (absl::StartsWith(path, "/fapi/")) return "binance_usdm";
  if (absl::StartsWith(path, "/api/v5/")) return "okx";
  if (path == "/api/v2" || absl::StartsWith(path, "/api/v2/")) return "deribit";
  return "";
}

IpAccount& Simulator::Account(const std::string& exchange, const std::string& ip) {
  auto& by_ip = accounts_[exchange];
  auto it = by_ip.find(ip);
  if (it != by_ip.end()) return it->second;
  IpAccount& acct = by_ip[ip];
  const common::ExchangeRules* rules = rules_.Find(exchange);
  size_t n = rules->pools().size();
  acct.pools.resize(n);
  acct.peak.assign(n, 0);
  acct.current_start_ms.assign(n, INT64_MIN);
  acct.current_used.assign(n, 0);
  acct.history.resize(n);
  for (size_t i = 0; i < n; ++i) {
    if (rules->pools()[i].scope == common::Scope::kIp) acct.pools[i].emplace(rules->pools()[i]);
  }
  return acct;
}

void Simulator::RecordUse(IpAccount& acct, int pool, absl::Time now) {
  common::ExchangeWindow& w = *acct.pools[pool];
  int64_t used = w.Used(now);
  acct.peak[pool] = std::max(acct.peak[pool], used);
  if (w.kind() != common::WindowKind::kFixed) return;
  int64_t start = absl::ToUnixMillis(w.WindowStart(now));
  if (start != acct.current_start_ms[pool]) {
    if (acct.current_start_ms[pool] != INT64_MIN) {
      acct.history[pool].push_back({acct.current_start_ms[pool], acct.current_used[pool]});
      if (acct.history[pool].size() > kHistoryWindows) acct.history[pool].pop_front();
    }
    acct.current_start_ms[pool] = start;
  }
  acct.current_used[pool] = used;
}

namespace {

// Charges `cost` to those of `pools` that are set (the others belong to
// another scope), all or nothing: on refusal the refusing pool's index and
// *retry_after. `spent(pool)` runs for each pool charged.
std::optional<int> ChargeWindows(std::vector<std::optional<common::ExchangeWindow>>& pools,
                                 const common::Cost& cost, absl::Time now, absl::Duration* retry_after,
                                 const std::function<void(int)>& spent) {
  for (const common::Cost::Charge& c : cost.charges) {
    if (!pools[c.pool]) continue;
    absl::Duration wait = pools[c.pool]->RetryAfter(now, c.units);
    if (wait > absl::ZeroDuration()) {
      *retry_after = wait;
      return c.pool;
    }
  }
  for (const common::Cost::Charge& c : cost.charges) {
    if (!pools[c.pool]) continue;
    bool ok = pools[c.pool]->TrySpend(now, c.units);
    MP_CHECK(ok);
    spent(c.pool);
  }
  return std::nullopt;
}

}  // namespace

std::optional<int> Simulator::Charge(const std::string& exchange, const std::string& ip,
                                     const common::Cost& cost, absl::Time now,
                                     absl::Duration* retry_after) {
  IpAccount& acct = Account(exchange, ip);
  return ChargeWindows(acct.pools, cost, now, retry_after, [&](int pool) { RecordUse(acct, pool, now); });
}

UserAccount& Simulator::User(const std::string& exchange, const std::string& api_key) {
  UserAccount& u = users_[exchange][api_key];
  if (u.pools.empty()) {
    const common::ExchangeRules& rules = *rules_.Find(exchange);
    u.pools.resize(rules.pools().size());
    u.peak.assign(rules.pools().size(), 0);
    for (size_t i = 0; i < rules.pools().size(); ++i) {
      if (rules.pools()[i].scope == common::Scope::kAccount) u.pools[i].emplace(rules.pools()[i]);
    }
  }
  return u;
}

std::optional<int> Simulator::ChargeUser(const std::string& exchange, const std::string& api_key,
                                         const common::Cost& cost, absl::Time now,
                                         absl::Duration* retry_after) {
  UserAccount& u = User(exchange, api_key);
  return ChargeWindows(u.pools, cost, now, retry_after, [&](int pool) {
    u.peak[pool] = std::max(u.peak[pool], u.pools[pool]->Used(now));
  });
}

absl::Status Simulator::SetLimit(absl::string_view spec) {
  MP_RETURN_IF_ERROR(rules_.ApplyLimitOverride(spec));
  for (auto& [exchange, by_ip] : accounts_) {
    const common::ExchangeRules* rules = rules_.Find(exchange);
    for (auto& [ip, acct] : by_ip) {
      for (size_t i = 0; i < acct.pools.size(); ++i) {
        if (acct.pools[i]) acct.pools[i]->set_capacity(rules->pools()[i].capacity);
      }
    }
  }
  for (auto& [exchange, users] : users_) {
    const common::ExchangeRules* rules = rules_.Find(exchange);
    for (auto& [key, u] : users) {
      for (size_t i = 0; i < u.pools.size(); ++i) {
        if (u.pools[i]) u.pools[i]->set_capacity(rules->pools()[i].capacity);
      }
    }
  }
  return absl::OkStatus();
}

bool Simulator::AdmitWebSocket(const std::string& exchange, const std::string& ip,
                               absl::Time now) {
  IpAccount& acct = Account(exchange, ip);
  const common::ExchangeRules& rules = *rules_.Find(exchange);
  const common::WebSocketRules& ws = rules.websocket();
  bool ok = clock_.Now() >= options_.faults.maintenance_until;
  if (ok && ws.max_connections_per_ip > 0 && acct.ws_open >= ws.max_connections_per_ip) ok = false;
  if (ok && ws.connection_pool >= 0) {
    common::Cost cost;
    cost.charges.push_back({ws.connection_pool, 1});
    absl::Duration unused;
    ok = !Charge(exchange, ip, cost, now, &unused).has_value();
  }
  if (!ok) {
    ++acct.ws_refused;
    return false;
  }
  ++acct.ws_open;
  ++acct.ws_accepted;
  return true;
}

void Simulator::WebSocketClosed(const std::string& exchange, const std::string& ip) {
  IpAccount& acct = Account(exchange, ip);
  if (acct.ws_open > 0) --acct.ws_open;
}

HttpResponse Simulator::Handle(const HttpRequest& req) {
  if (absl::StartsWith(req.path, "/sim/")) return HandleAdmin(req);
  std::string exchange = ExchangeForPath(req.path);
  if (exchange.empty()) {
    HttpResponse r;
    r.status = 404;
    r.body = R"({"error":"no such path"})";
    return r;
  }
  HttpResponse r = HandleExchange(exchange, req);
  r.delay = options_.faults.latency;
  return r;
}

HttpResponse Simulator::HandleExchange(const std::string& exchange, const HttpRequest& req) {
  absl::Time received = clock_.Now();
  absl::Time now = received + options_.faults.clock_offset;
  const common::ExchangeRules& rules = *rules_.Find(exchange);
  IpAccount& acct = Account(exchange, req.peer_ip);
  ++acct.requests;
  ApiContext ctx{*this, market_, rules, req, now, absl::ToUnixMillis(now), received};
  Family family = rules.family();

  auto with_usage = [&](HttpResponse r) {
    if (family == Family::kBinance) {
      for (size_t i = 0; i < rules.pools().size(); ++i) {
        const common::PoolRule& pool = rules.pools()[i];
        if (!pool.usage_header.empty() && acct.pools[i]) {
          r.headers.emplace_back(pool.usage_header, absl::StrCat(acct.pools[i]->Used(now)));
        }
      }
    }
    return r;
  };

  // Deribit names the method in the path or the JSON-RPC body.
  std::optional<deribit::RpcCall> call;
  std::string price_path = req.path;
  std::string price_method = req.method;
  if (family == Family::kDeribit) {
    HttpResponse error;
    call = deribit::ParseHttp(req, &error, received);
    if (!call) {
      ++acct.errors;
      return error;
    }
    price_path = absl::StrCat("/api/v2/", call->method);
  }

  if (received < options_.faults.maintenance_until) {
    ++acct.errors;
    switch (family) {
      case Family::kBinance:
        return with_usage(binance::Maintenance());
      case Family::kOkx:
        return okx::Maintenance();
      case Family::kDeribit:
        return deribit::Maintenance(ctx, *call);
    }
  }

  if (family == Family::kBinance && now < acct.banned_until) {
    ++acct.rejections["418"];
    return with_usage(binance::Banned(ctx, acct.banned_until));
  }

  absl::StatusOr<common::Cost> cost = rules.Price(price_method, price_path, req.query);
  std::optional<absl::Status> bad_input;
  if (!cost.ok()) {
    if (cost.status().code() == absl::StatusCode::kNotFound) {
      ++acct.errors;
      switch (family) {
        case Family::kBinance:
          return with_usage(binance::Error(404, -1000, "Unknown endpoint."));
        case Family::kOkx:
          return okx::Error(404, "50030", "Illegal API endpoint");
        case Family::kDeribit:
          break;  // unreachable: Deribit has a default cost
      }
    }
    // Malformed cost-bearing parameters: the request is still charged, at the
    // endpoint's default price, and answered with the exchange's error.
    bad_input = cost.status();
    cost = rules.Price(price_method, price_path, {});
    if (!cost.ok()) {
      const common::EndpointRule* ep = rules.FindEndpoint(price_method, price_path);
      common::Cost fallback;
      fallback.charges.push_back({ep->costs.front().first, 1});
      cost = fallback;
    }
  }

  if (options_.faults.error_rate > 0 &&
      std::uniform_real_distribution<double>(0, 1)(rng_) < options_.faults.error_rate) {
    ++acct.errors;
    switch (family) {
      case Family::kBinance:
        return with_usage(binance::InjectedError());
      case Family::kOkx:
        return okx::InjectedError();
      case Family::kDeribit:
        return deribit::InjectedError(ctx, *call);
    }
  }

  absl::Duration retry_after;
  std::optional<int> refused = Charge(exchange, req.peer_ip, *cost, now, &retry_after);
  if (refused) {
    switch (family) {
      case Family::kBinance: {
        const BanPolicy& ban = options_.ban;
        acct.strikes = now < acct.backoff_until ? acct.strikes + 1 : 0;
        acct.backoff_until = std::max(acct.backoff_until, now + retry_after);
        if (acct.strikes >= ban.strikes_to_ban) {
          if (now - acct.last_ban_end > ban.forgive_after) acct.offences = 0;
          absl::Duration length =
              ban.schedule[std::min<size_t>(acct.offences, ban.schedule.size() - 1)];
          ++acct.offences;
          ++acct.bans;
          acct.banned_until = now + length;
          acct.last_ban_end = acct.banned_until;
          acct.strikes = 0;
          acct.backoff_until = absl::InfinitePast();
          ++acct.rejections["418"];
          return with_usage(binance::Banned(ctx, acct.banned_until));
        }
        ++acct.rejections["429"];
        return with_usage(binance::RateLimited(ctx, rules.pools()[*refused], retry_after));
      }
      case Family::kOkx:
        ++acct.rejections["50011"];
        return okx::RateLimited();
      case Family::kDeribit:
        ++acct.rejections["10028"];
        return deribit::RateLimited(ctx, *call);
    }
  }
  // Account pools (orders): counted per API key, whichever IP sends.
  if (rules.ChargesAccount(*cost) && !bad_input) {
    if (req.api_key.empty()) {
      ++acct.errors;
      return with_usage(binance::Error(401, -2014, "API-key format invalid."));
    }
    if (Param(req, "signature") == nullptr) {
      ++acct.errors;
      return with_usage(binance::Error(
          400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed."));
    }
    std::optional<int> full = ChargeUser(exchange, req.api_key, *cost, now, &retry_after);
    UserAccount& user = User(exchange, req.api_key);
    if (full) {
      ++user.rejections;
      ++acct.rejections["-1015"];
      return with_usage(binance::TooManyOrders(rules.pools()[*full], retry_after));
    }
    ++user.orders;
    ++acct.accepted;
    HttpResponse r = with_usage(HttpResponse{});
    const std::string* symbol = Param(req, "symbol");
    r.body = Json{{"symbol", symbol != nullptr ? *symbol : ""},
                  {"orderId", next_order_id_++},
                  {"orderListId", -1},
                  {"transactTime", ctx.now_ms},
                  {"status", "NEW"}}
                 .dump();
    for (size_t i = 0; i < rules.pools().size(); ++i) {
      const common::PoolRule& pool = rules.pools()[i];
      if (!user.pools[i] || !pool.published_as) continue;
      std::string letter = pool.published_as->interval.substr(0, 1);
      r.headers.emplace_back(absl::StrCat("X-MBX-ORDER-COUNT-", pool.published_as->interval_num, letter),
                             absl::StrCat(user.pools[i]->Used(now)));
    }
    return r;
  }
  ++acct.accepted;

  if (bad_input) {
    ++acct.errors;
    switch (family) {
      case Family::kBinance:
        return with_usage(binance::Error(400, -1100, bad_input->message()));
      case Family::kOkx:
        return okx::Error(400, "51000", absl::StrCat("Parameter error: ", bad_input->message()));
      case Family::kDeribit:
        break;
    }
  }
  HttpResponse r;
  switch (family) {
    case Family::kBinance:
      r = with_usage(binance::Serve(ctx));
      break;
    case Family::kOkx:
      r = okx::Serve(ctx);
      break;
    case Family::kDeribit:
      r = deribit::Serve(ctx, *call);
      break;
  }
  if (r.status >= 400) ++acct.errors;
  return r;
}

// ---- admin -----------------------------------------------------------------

HttpResponse Simulator::HandleAdmin(const HttpRequest& req) {
  if (req.path == "/sim/health") return AdminReply(200, Json{{"status", "ok"}});
  if (req.path == "/sim/stats" && req.method == "GET") {
    HttpResponse r;
    r.body = StatsJson();
    return r;
  }
  auto faults_json = [this]() {
    const Faults& f = options_.faults;
    absl::Time now = clock_.Now();
    return Json{
        {"latency_ms", absl::ToDoubleMilliseconds(f.latency)},
        {"error_rate", f.error_rate},
        {"clock_offset_ms", absl::ToInt64Milliseconds(f.clock_offset)},
        {"maintenance_seconds_left",
         std::max(0.0, absl::ToDoubleSeconds(f.maintenance_until - now))},
        {"ws_drop_per_second", f.ws_drop_per_second}};
  };
  if (req.path == "/sim/faults" && req.method == "GET") return AdminReply(200, faults_json());
  if (req.method != "POST") return AdminError(405, "admin changes use POST");
  if (req.path == "/sim/faults") {
    Json body = Json::parse(req.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) {
      return AdminError(400, "body must be a JSON object such as {\"latency_ms\": 50}");
    }
    Faults f = options_.faults;
    for (auto it = body.begin(); it != body.end(); ++it) {
      const std::string& key = it.key();
      if (!it.value().is_number()) {
        return AdminError(400, absl::StrCat("\"", key, "\" must be a number"));
      }
      double v = it.value().get<double>();
      if (key == "latency_ms") {
        if (v < 0) return AdminError(400, "latency_ms must be >= 0");
        f.latency = absl::Microseconds(std::llround(v * 1000));
      } else if (key == "error_rate") {
        if (v < 0 || v > 1) return AdminError(400, "error_rate must be within [0, 1]");
        f.error_rate = v;
      } else if (key == "clock_offset_ms") {
        f.clock_offset = absl::Milliseconds(std::llround(v));
      } else if (key == "maintenance_seconds") {
        if (v < 0) return AdminError(400, "maintenance_seconds must be >= 0");
        f.maintenance_until = clock_.Now() + absl::Milliseconds(std::llround(v * 1000));
      } else if (key == "ws_drop_per_second") {
        if (v < 0 || v > 1) return AdminError(400, "ws_drop_per_second must be within [0, 1]");
        f.ws_drop_per_second = v;
      } else {
        return AdminError(400, absl::StrCat("unknown fault \"", key,
                                            "\" (latency_ms, error_rate, clock_offset_ms, "
                                            "maintenance_seconds, ws_drop_per_second)"));
      }
    }
    options_.faults = f;
    return AdminReply(200, faults_json());
  }
  if (req.path == "/sim/ws/drop") {
    RequestWsDrop();
    return AdminReply(200, Json{{"dropping", true}});
  }
  if (req.path == "/sim/limits") {
    Json body = Json::parse(req.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) {
      return AdminError(400, "body must be a JSON object such as {\"binance_spot.REQUEST_WEIGHT\": 600}");
    }
    for (auto it = body.begin(); it != body.end(); ++it) {
      if (!it.value().is_number_integer()) {
        return AdminError(400, absl::StrCat("\"", it.key(), "\" must be an integer"));
      }
      absl::Status st = SetLimit(absl::StrCat(it.key(), "=", it.value().get<int64_t>()));
      if (!st.ok()) return AdminError(400, st.message());
    }
    return AdminReply(200, Json{{"ok", true}});
  }
  if (req.path == "/sim/reset") {
    ResetStats();
    return AdminReply(200, Json{{"ok", true}});
  }
  return AdminError(404, absl::StrCat("no admin endpoint ", req.path));
}

void Simulator::ResetStats() {
  accounts_.clear();
  users_.clear();
}

std::string Simulator::StatsJson() {
  absl::Time now = ServerNow();
  Json out;
  out["server_time_ms"] = absl::ToUnixMillis(now);
  Json exchanges = Json::object();
  for (auto& [exchange, by_ip] : accounts_) {
    const common::ExchangeRules& rules = *rules_.Find(exchange);
    Json ips = Json::object();
    Json totals = {{"requests", 0}, {"accepted", 0}, {"errors", 0}, {"bans", 0},
                   {"rejections", Json::object()}, {"ws_accepted", 0}, {"ws_refused", 0},
                   {"ws_violations", Json::object()}};
    for (auto& [ip, acct] : by_ip) {
      Json pools = Json::object();
      for (size_t i = 0; i < acct.pools.size(); ++i) {
        if (!acct.pools[i]) continue;
        const common::PoolRule& rule = rules.pools()[i];
        RecordUse(acct, static_cast<int>(i), now);
        Json p = {{"window", std::string(common::WindowKindName(rule.window))},
                  {"used", acct.pools[i]->Used(now)},
                  {"capacity", acct.pools[i]->capacity()},
                  {"peak", acct.peak[i]}};
        if (rule.window == common::WindowKind::kFixed) {
          p["window_start_ms"] = acct.current_start_ms[i];
          Json hist = Json::array();
          for (const WindowRecord& w : acct.history[i]) {
            hist.push_back({{"start_ms", w.start_ms}, {"used", w.used}});
          }
          p["windows"] = std::move(hist);
        }
        pools[rule.name] = std::move(p);
      }
      Json rejections = Json::object();
      for (const auto& [kind, n] : acct.rejections) {
        rejections[kind] = n;
        totals["rejections"][kind] = totals["rejections"].value(kind, 0) + n;
      }
      Json entry = {{"requests", acct.requests},
                    {"accepted", acct.accepted},
                    {"errors", acct.errors},
                    {"rejections", std::move(rejections)},
                    {"bans", acct.bans},
                    {"banned_until_ms", now < acct.banned_until
                                            ? Json(absl::ToUnixMillis(acct.banned_until))
                                            : Json(nullptr)},
                    {"ws_open", acct.ws_open},
                    {"ws_accepted", acct.ws_accepted},
                    {"ws_refused", acct.ws_refused},
                    {"ws_violations", Json(acct.ws_violations)},
                    {"pools", std::move(pools)}};
      for (const auto& [limit, n] : acct.ws_violations) {
        totals["ws_violations"][limit] = totals["ws_violations"].value(limit, 0) + n;
      }
      for (const char* key : {"requests", "accepted", "errors", "bans", "ws_accepted", "ws_refused"}) {
        totals[key] = totals[key].get<int64_t>() + entry[key].get<int64_t>();
      }
      ips[ip] = std::move(entry);
    }
    exchanges[exchange] = {{"totals", std::move(totals)}, {"ips", std::move(ips)}};
  }
  for (auto& [exchange, users] : users_) {
    const common::ExchangeRules& rules = *rules_.Find(exchange);
    Json accounts = Json::object();
    for (auto& [key, u] : users) {
      Json pools = Json::object();
      for (size_t i = 0; i < u.pools.size(); ++i) {
        if (!u.pools[i]) continue;
        pools[rules.pools()[i].name] = {{"used", u.pools[i]->Used(now)},
                                        {"capacity", u.pools[i]->capacity()},
                                        {"peak", u.peak[i]}};
      }
      accounts[key] = {{"orders", u.orders}, {"rejections", u.rejections}, {"pools", std::move(pools)}};
    }
    exchanges[exchange]["accounts"] = std::move(accounts);
  }
  out["exchanges"] = std::move(exchanges);
  return out.dump(-1, ' ', false, kDumpReplacingBadUtf8);
}

}  // namespace marketprism::sim
