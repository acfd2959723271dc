// Deribit v2 public methods, JSON-RPC 2.0 over HTTP (GET /api/v2/public/x?...
// or POST with a JSON-RPC body) and, through ws_session.cc, over WebSocket.

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "exchange_sim/api_json.h"
#include "exchange_sim/api_util.h"
#include "exchange_sim/simulator.h"
#include <nlohmann/json.hpp>

namespace marketprism::sim::deribit {

using Json = nlohmann::ordered_json;

namespace {

constexpr int kParseError = -32700;
constexpr int kInvalidRequest = -32600;
constexpr int kMethodNotFound = -32601;
constexpr int kInvalidParams = -32602;

Json Envelope(const RpcCall& call) {
  Json j = {{"jsonrpc", "2.0"}};
  if (!call.id_json.empty()) j["id"] = Json::parse(call.id_json);
  return j;
}

// Deribit's timing fields: when the request came in and the reply went out.
void Stamp(Json& j, absl::Time received, absl::Time replied) {
  int64_t us_in = absl::ToUnixMicros(received);
  int64_t us_out = absl::ToUnixMicros(replied);
  j["usIn"] = us_in;
  j["usOut"] = std::max(us_in, us_out);
  j["usDiff"] = std::max<int64_t>(0, us_out - us_in);
  j["testnet"] = false;
}

std::string KindName(InstrumentKind k) {
  switch (k) {
    case InstrumentKind::kSpot:
      return "spot";
    case InstrumentKind::kSwap:
    case InstrumentKind::kFuture:
      return "future";
    case InstrumentKind::kOption:
      return "option";
  }
  return "future";
}

Json Stats(const Market& m, const Instrument& inst, int64_t now_ms) {
  Candle c = m.CandleAt(inst, now_ms - 86'400'000, 86'400'000, now_ms);
  double open = m.PriceOf(inst, c.open);
  // Amounts are in USD (inverse contracts): volume is in the base currency.
  double amount = m.QtyOf(inst, c.volume);
  return Json{{"volume", amount / m.PriceOf(inst, c.close)},
              {"volume_usd", amount},
              {"price_change", std::round((m.PriceOf(inst, c.close) - open) / open * 1e6) / 1e4},
              {"low", m.PriceOf(inst, c.low)},
              {"high", m.PriceOf(inst, c.high)}};
}

}  // namespace

Json TickerJson(const Market& m, const Instrument& inst, int64_t now_ms) {
  int64_t tick = now_ms / Market::kTickMs;
  Book top = m.BookAt(inst, tick, 1);
  double mark = std::round(m.Price(inst, tick * Market::kTickMs) * 100) / 100;
  Trade last = m.TradeById(inst, m.LastTradeId(inst, now_ms));
  return Json{{"timestamp", tick * Market::kTickMs},
              {"stats", Stats(m, inst, now_ms)},
              {"state", "open"},
              {"settlement_price", m.PriceOf(inst, m.PriceGrid(inst, now_ms - 3'600'000))},
              {"open_interest", 1.0e6},
              {"min_price", m.PriceOf(inst, top.bids.at(0).grid) * 0.97},
              {"max_price", m.PriceOf(inst, top.asks.at(0).grid) * 1.03},
              {"mark_price", mark},
              {"last_price", m.PriceOf(inst, last.price_grid)},
              {"instrument_name", inst.symbol},
              {"index_price", mark},
              {"estimated_delivery_price", mark},
              {"funding_8h", 0.00003},
              {"current_funding", 0.0},
              {"best_bid_price", m.PriceOf(inst, top.bids.at(0).grid)},
              {"best_bid_amount", m.QtyOf(inst, top.bids.at(0).qty)},
              {"best_ask_price", m.PriceOf(inst, top.asks.at(0).grid)},
              {"best_ask_amount", m.QtyOf(inst, top.asks.at(0).qty)}};
}

std::optional<int64_t> ResolutionMinutes(absl::string_view resolution) {
  if (resolution == "1D") return 1440;
  int64_t minutes = 0;
  if (!absl::SimpleAtoi(resolution, &minutes)) return std::nullopt;
  for (int64_t allowed : {1, 3, 5, 10, 15, 30, 60, 120, 180, 360, 720}) {
    if (minutes == allowed) return minutes;
  }
  return std::nullopt;
}

Json ChartItem(const Market& m, const Instrument& inst, int64_t open_ms, int64_t step_ms, int64_t now_ms) {
  Candle c = m.CandleAt(inst, open_ms, step_ms, now_ms);
  // An inverse contract's amount is in USD: volume in the base currency is
  // the amount over the price, cost the amount.
  double amount = m.QtyOf(inst, c.volume);
  return Json{{"tick", open_ms},
              {"open", m.PriceOf(inst, c.open)},
              {"high", m.PriceOf(inst, c.high)},
              {"low", m.PriceOf(inst, c.low)},
              {"close", m.PriceOf(inst, c.close)},
              {"volume", amount / m.PriceOf(inst, c.close)},
              {"cost", amount}};
}

std::string ResultBody(const RpcCall& call, Json result, absl::Time received, absl::Time replied) {
  Json j = Envelope(call);
  j["result"] = std::move(result);
  Stamp(j, received, replied);
  return j.dump(-1, ' ', false, kDumpReplacingBadUtf8);
}

namespace {

class Methods {
 public:
  Methods(ApiContext& ctx, const RpcCall& call, const Json& params)
      : ctx_(ctx), m_(ctx.market), call_(call), params_(params) {}

  HttpResponse Run() {
    const std::string& method = call_.method;
    if (method == "public/get_time") return Result(ctx_.now_ms);
    if (method == "public/test") return Result(Json{{"version", "1.2.26"}});
    if (method == "public/get_instruments") return Instruments();
    if (method == "public/get_order_book") return OrderBook();
    if (method == "public/ticker") return TickerMethod();
    if (method == "public/get_tradingview_chart_data") return Chart();
    if (method == "public/get_index_price") return IndexPrice();
    if (method == "public/subscribe" || method == "public/unsubscribe" ||
        method == "public/set_heartbeat" || method == "public/disable_heartbeat") {
      return Err(11050, "bad_request",
                 R"j({"reason":"only available over WebSocket (/ws/api/v2)"})j");
    }
    if (absl::StartsWith(method, "private/")) return Err(13009, "unauthorized");
    return Err(kMethodNotFound, "Method not found");
  }

 private:
  HttpResponse Result(Json result) {
    HttpResponse r;
    r.body = ResultBody(call_, std::move(result), ctx_.received, ctx_.sim.clock().Now());
    return r;
  }

  HttpResponse Err(int code, absl::string_view message, absl::string_view data = "") {
    HttpResponse r;
    r.status = 400;
    r.body = ErrorBody(call_, code, message, ctx_.received, ctx_.sim.clock().Now(), data);
    return r;
  }

  HttpResponse BadParam(absl::string_view param, absl::string_view reason) {
    Json data = {{"reason", std::string(reason)}, {"param", std::string(param)}};
    return Err(kInvalidParams, "Invalid params", data.dump(-1, ' ', false, kDumpReplacingBadUtf8));
  }

  std::optional<std::string> Str(absl::string_view key) {
    auto it = params_.find(std::string(key));
    if (it == params_.end() || !it->is_string()) return std::nullopt;
    return it->get<std::string>();
  }

  // A number given as a JSON number or (over GET) a numeric string.
  std::optional<int64_t> Int(absl::string_view key, bool* bad) {
    auto it = params_.find(std::string(key));
    if (it == params_.end()) return std::nullopt;
    if (it->is_number_integer()) return it->get<int64_t>();
    int64_t v = 0;
    if (it->is_string() && absl::SimpleAtoi(it->get<std::string>(), &v)) return v;
    *bad = true;
    return std::nullopt;
  }

  const Instrument* RequireInstrument(HttpResponse* error) {
    auto name = Str("instrument_name");
    if (!name) {
      *error = BadParam("instrument_name", "must be present");
      return nullptr;
    }
    const Instrument* inst = m_.Find("deribit", *name);
    if (inst == nullptr) *error = BadParam("instrument_name", "wrong format");
    return inst;
  }

  double Px(const Instrument& i, int64_t grid) { return m_.PriceOf(i, grid); }
  double Amt(const Instrument& i, int64_t q) { return m_.QtyOf(i, q); }

  HttpResponse Instruments() {
    auto currency = Str("currency");
    if (!currency) return BadParam("currency", "must be present");
    if (*currency != "BTC" && *currency != "ETH" && *currency != "USDC" && *currency != "USDT" &&
        *currency != "any") {
      return BadParam("currency", "wrong format");
    }
    auto kind = Str("kind");
    Json out = Json::array();
    int64_t id = 100;
    for (const Instrument* inst : m_.InstrumentsOf("deribit")) {
      ++id;
      if (*currency != "any" && inst->base != *currency) continue;
      if (kind && KindName(inst->kind) != *kind) continue;
      bool perpetual = inst->kind == InstrumentKind::kSwap;
      Json j = {{"tick_size", Px(*inst, 1)},
                {"taker_commission", 0.0005},
                {"settlement_period", perpetual ? "perpetual" : "month"},
                {"settlement_currency", inst->base},
                {"quote_currency", inst->quote},
                {"price_index", absl::AsciiStrToLower(inst->base) + "_usd"},
                {"min_trade_amount", inst->kind == InstrumentKind::kOption ? 0.1 : 10},
                {"max_leverage", 50},
                {"maker_commission", 0},
                {"kind", KindName(inst->kind)},
                {"is_active", true},
                {"instrument_name", inst->symbol},
                {"instrument_id", id},
                {"expiration_timestamp", perpetual ? 32503708800000LL : 1798185600000LL},
                {"creation_timestamp", 1534242287000LL},
                {"counter_currency", inst->quote},
                {"contract_size", inst->kind == InstrumentKind::kOption ? 1 : 10},
                {"base_currency", inst->base}};
      if (inst->kind == InstrumentKind::kOption) {
        j["option_type"] = absl::EndsWith(inst->symbol, "-C") ? "call" : "put";
        j["strike"] = absl::StrContains(inst->symbol, "70000") ? 70000 : 50000;
      }
      out.push_back(std::move(j));
    }
    return Result(std::move(out));
  }

  HttpResponse OrderBook() {
    HttpResponse error;
    const Instrument* inst = RequireInstrument(&error);
    if (inst == nullptr) return error;
    bool bad = false;
    int64_t depth = Int("depth", &bad).value_or(20);
    static const int64_t kDepths[] = {1, 5, 10, 20, 50, 100, 1000, 10000};
    if (bad || std::find(std::begin(kDepths), std::end(kDepths), depth) == std::end(kDepths)) {
      return BadParam("depth", "must be one of 1, 5, 10, 20, 50, 100, 1000, 10000");
    }
    int64_t tick = ctx_.now_ms / Market::kTickMs;
    Book book = m_.BookAt(*inst, tick, static_cast<int>(depth));
    Json j = TickerJson(m_, *inst, ctx_.now_ms);
    j.erase("estimated_delivery_price");
    j["change_id"] = tick;
    Json bids = Json::array(), asks = Json::array();
    for (const Level& l : book.bids) bids.push_back({Px(*inst, l.grid), Amt(*inst, l.qty)});
    for (const Level& l : book.asks) asks.push_back({Px(*inst, l.grid), Amt(*inst, l.qty)});
    j["bids"] = std::move(bids);
    j["asks"] = std::move(asks);
    return Result(std::move(j));
  }

  HttpResponse TickerMethod() {
    HttpResponse error;
    const Instrument* inst = RequireInstrument(&error);
    if (inst == nullptr) return error;
    return Result(TickerJson(m_, *inst, ctx_.now_ms));
  }

  HttpResponse Chart() {
    HttpResponse error;
    const Instrument* inst = RequireInstrument(&error);
    if (inst == nullptr) return error;
    bool bad = false;
    auto start = Int("start_timestamp", &bad);
    auto end = Int("end_timestamp", &bad);
    if (bad || !start) return BadParam("start_timestamp", "must be present");
    if (!end) return BadParam("end_timestamp", "must be present");
    if (*end < *start) return BadParam("end_timestamp", "must be after start_timestamp");
    // A string ("1D", "60") or, over JSON-RPC, a number.
    auto res = params_.find("resolution");
    std::optional<int64_t> minutes;
    if (res != params_.end() && res->is_string()) minutes = ResolutionMinutes(res->get<std::string>());
    if (res != params_.end() && res->is_number_integer()) minutes = ResolutionMinutes(absl::StrCat(res->get<int64_t>()));
    if (!minutes) return BadParam("resolution", "must be 1, 3, 5, 10, 15, 30, 60, 120, 180, 360, 720 or 1D");
    int64_t step = *minutes * 60'000;
    int64_t first = FloorTo(*start, step);
    if (first < *start) first += step;
    int64_t last = std::min(FloorTo(*end, step), FloorTo(ctx_.now_ms, step));
    if ((last - first) / step > 10'000) {
      return BadParam("start_timestamp", "at most 10000 candles per request");
    }
    Json ticks = Json::array(), open = Json::array(), high = Json::array(), low = Json::array(),
         close = Json::array(), volume = Json::array(), cost = Json::array();
    for (int64_t t = first; t <= last; t += step) {
      Json c = ChartItem(m_, *inst, t, step, ctx_.now_ms);
      ticks.push_back(t);
      open.push_back(c["open"]);
      high.push_back(c["high"]);
      low.push_back(c["low"]);
      close.push_back(c["close"]);
      volume.push_back(c["volume"]);
      cost.push_back(c["cost"]);
    }
    bool empty = ticks.empty();
    return Result(Json{{"volume", std::move(volume)},
                       {"ticks", std::move(ticks)},
                       {"status", empty ? "no_data" : "ok"},
                       {"open", std::move(open)},
                       {"low", std::move(low)},
                       {"high", std::move(high)},
                       {"cost", std::move(cost)},
                       {"close", std::move(close)}});
  }

  HttpResponse IndexPrice() {
    auto name = Str("index_name");
    if (!name) return BadParam("index_name", "must be present");
    const Instrument* inst = nullptr;
    if (*name == "btc_usd") inst = m_.Find("deribit", "BTC-PERPETUAL");
    if (*name == "eth_usd") inst = m_.Find("deribit", "ETH-PERPETUAL");
    if (inst == nullptr) return BadParam("index_name", "wrong format");
    double p = std::round(m_.Price(*inst, ctx_.now_ms) * 100) / 100;
    return Result(Json{{"index_price", p}, {"estimated_delivery_price", p}});
  }

  ApiContext& ctx_;
  const Market& m_;
  const RpcCall& call_;
  const Json& params_;
};

}  // namespace

std::string ErrorBody(const RpcCall& call, int code, absl::string_view message,
                      absl::Time received, absl::Time replied, absl::string_view data_json) {
  Json j = Envelope(call);
  Json err = {{"code", code}, {"message", std::string(message)}};
  if (!data_json.empty()) err["data"] = Json::parse(data_json);
  j["error"] = std::move(err);
  Stamp(j, received, replied);
  return j.dump(-1, ' ', false, kDumpReplacingBadUtf8);
}

std::optional<RpcCall> ParseHttp(const HttpRequest& req, HttpResponse* error,
                                 absl::Time received) {
  RpcCall call;
  auto fail = [&](int code, absl::string_view message) {
    error->status = 400;
    error->body = ErrorBody(call, code, message, received, received);
    return std::nullopt;
  };
  absl::string_view path = req.path;
  std::string path_method;
  if (absl::StartsWith(path, "/api/v2/")) path_method = std::string(path.substr(strlen("/api/v2/")));
  if (req.method == "POST" && !req.body.empty()) {
    Json body = Json::parse(req.body, nullptr, false);
    if (body.is_discarded()) return fail(kParseError, "Parse error");
    if (!body.is_object()) return fail(kInvalidRequest, "Invalid Request");
    if (body.contains("id")) {
      if (!body["id"].is_number_integer() && !body["id"].is_string()) {
        return fail(kInvalidRequest, "Invalid Request");
      }
      call.id_json = body["id"].dump(-1, ' ', false, kDumpReplacingBadUtf8);
    }
    if (body.contains("method")) {
      if (!body["method"].is_string()) return fail(kInvalidRequest, "Invalid Request");
      call.method = body["method"].get<std::string>();
    } else {
      call.method = path_method;
    }
    if (body.contains("params")) {
      if (!body["params"].is_object()) return fail(kInvalidParams, "Invalid params");
      call.params_json = body["params"].dump(-1, ' ', false, kDumpReplacingBadUtf8);
    }
  } else {
    call.method = path_method;
    Json params = Json::object();
    for (const auto& [k, v] : req.query) params[k] = v;
    call.params_json = params.dump(-1, ' ', false, kDumpReplacingBadUtf8);
  }
  if (call.method.empty()) return fail(kInvalidRequest, "Invalid Request");
  if (!path_method.empty() && call.method != path_method) {
    return fail(kInvalidRequest, "Invalid Request");
  }
  return call;
}

HttpResponse Serve(ApiContext& ctx, const RpcCall& call) {
  Json params = Json::parse(call.params_json, nullptr, false);
  if (params.is_discarded()) params = Json::object();
  return Methods(ctx, call, params).Run();
}

HttpResponse RateLimited(ApiContext& ctx, const RpcCall& call) {
  HttpResponse r;
  r.status = 429;
  r.body = ErrorBody(call, 10028, "too_many_requests", ctx.received, ctx.sim.clock().Now());
  return r;
}

HttpResponse Maintenance(ApiContext& ctx, const RpcCall& call) {
  HttpResponse r;
  r.status = 503;
  r.body = ErrorBody(call, 13028, "temporarily_unavailable", ctx.received, ctx.sim.clock().Now());
  return r;
}

HttpResponse InjectedError(ApiContext& ctx, const RpcCall& call) {
  HttpResponse r;
  r.status = 500;
  r.body = ErrorBody(call, 11094, "internal_server_error", ctx.received, ctx.sim.clock().Now());
  return r;
}

}  // namespace marketprism::sim::deribit
