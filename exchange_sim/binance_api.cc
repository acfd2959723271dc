// Binance spot (/api/v3) and USD-M futures (/fapi/v1) public market data.
// Shapes follow the documented samples (shared/exchange-limits/samples).

#include <algorithm>
#include <cmath>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "exchange_sim/api_json.h"
#include "exchange_sim/api_util.h"
#include "exchange_sim/simulator.h"
#include <nlohmann/json.hpp>

namespace marketprism::sim::binance {

using Json = nlohmann::ordered_json;

namespace {

constexpr int kPad = 8;  // Binance prints prices and quantities with 8 decimals
constexpr int64_t kUpdateIdsPerTick = 10;

HttpResponse Reply(const Json& body) {
  HttpResponse r;
  r.body = body.dump(-1, ' ', false, kDumpReplacingBadUtf8);
  return r;
}

class Handler {
 public:
  explicit Handler(ApiContext& ctx)
      : ctx_(ctx), m_(ctx.market), futures_(ctx.rules.name() == "binance_usdm") {}

  HttpResponse Serve() {
    absl::string_view path = ctx_.req.path;
    absl::string_view op = path.substr(futures_ ? strlen("/fapi/v1/") : strlen("/api/v3/"));
    if (op == "ping") return Reply(Json::object());
    if (op == "time") return Reply(Json{{"serverTime", ctx_.now_ms}});
    if (op == "exchangeInfo") return ExchangeInfo();
    if (op == "depth") return Depth();
    if (op == "trades" || op == "historicalTrades") return Trades(op == "historicalTrades");
    if (op == "aggTrades") return AggTrades();
    if (op == "klines" || op == "uiKlines") return Klines();
    if (op == "avgPrice") return AvgPrice();
    if (op == "ticker/24hr") return Tickers(&Handler::Ticker24h);
    if (op == "ticker/price") return Tickers(&Handler::TickerPrice);
    if (op == "ticker/bookTicker") return Tickers(&Handler::BookTicker);
    if (op == "ticker" || op == "ticker/tradingDay") return Tickers(&Handler::RollingTicker);
    if (op == "rateLimit/order") return Error(401, -2014, "API-key format invalid.");
    return Error(404, -1000, "Unknown endpoint.");
  }

 private:
  // The single `symbol` parameter, required.
  const Instrument* RequireSymbol(HttpResponse* error) {
    const std::string* s = Param(ctx_.req, "symbol");
    if (s == nullptr || s->empty()) {
      *error = Error(400, -1102,
                     "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.");
      return nullptr;
    }
    const Instrument* inst = m_.Find(ctx_.rules.name(), *s);
    if (inst == nullptr) *error = Error(400, -1121, "Invalid symbol.");
    return inst;
  }

  // `symbol`, `symbols` or neither (all); nullopt with *error on bad input.
  std::optional<std::vector<const Instrument*>> SymbolSet(bool* single, HttpResponse* error) {
    const std::string* one = Param(ctx_.req, "symbol");
    const std::string* many = Param(ctx_.req, "symbols");
    *single = one != nullptr;
    std::vector<const Instrument*> out;
    if (one != nullptr) {
      const Instrument* inst = m_.Find(ctx_.rules.name(), *one);
      if (inst == nullptr) {
        *error = Error(400, -1121, "Invalid symbol.");
        return std::nullopt;
      }
      out.push_back(inst);
    } else if (many != nullptr) {
      auto list = common::ParseSymbolList(*many);
      if (!list.ok()) {
        *error = Error(400, -1100, absl::StrCat("Illegal characters found in parameter 'symbols'; ",
                                                list.status().message()));
        return std::nullopt;
      }
      for (const std::string& s : *list) {
        const Instrument* inst = m_.Find(ctx_.rules.name(), s);
        if (inst == nullptr) {
          *error = Error(400, -1121, "Invalid symbol.");
          return std::nullopt;
        }
        out.push_back(inst);
      }
    } else {
      out = m_.InstrumentsOf(ctx_.rules.name());
    }
    return out;
  }

  std::optional<int64_t> Limit(int64_t def, int64_t max, HttpResponse* error) {
    std::optional<int64_t> v = IntParam(ctx_.req, "limit", def);
    if (!v || *v < 1) {
      *error = Error(400, -1100,
                     "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'.");
      return std::nullopt;
    }
    return std::min(*v, max);
  }

  std::string Px(const Instrument& inst, int64_t grid) { return m_.PriceStr(inst, grid, kPad); }
  std::string Qty(const Instrument& inst, int64_t q) { return m_.QtyStr(inst, q, kPad); }

  HttpResponse ExchangeInfo() {
    Json limits = Json::array();
    for (const common::PoolRule& pool : ctx_.rules.pools()) {
      if (!pool.published_as) continue;
      limits.push_back({{"rateLimitType", pool.published_as->rate_limit_type},
                        {"interval", pool.published_as->interval},
                        {"intervalNum", pool.published_as->interval_num},
                        {"limit", pool.capacity}});
    }
    bool single = false;
    HttpResponse error;
    auto instruments = SymbolSet(&single, &error);
    if (!instruments) return error;
    Json symbols = Json::array();
    for (const Instrument* inst : *instruments) {
      std::string tick = Market::FormatFixed(inst->tick_units, inst->price_decimals, kPad);
      std::string step = Market::FormatFixed(1, inst->qty_decimals, kPad);
      symbols.push_back(
          {{"symbol", inst->symbol},
           {"status", "TRADING"},
           {"baseAsset", inst->base},
           {"baseAssetPrecision", 8},
           {"quoteAsset", inst->quote},
           {"quotePrecision", 8},
           {"quoteAssetPrecision", 8},
           {"orderTypes", Json::array({"LIMIT", "LIMIT_MAKER", "MARKET"})},
           {"filters", Json::array({{{"filterType", "PRICE_FILTER"},
                                     {"minPrice", tick},
                                     {"maxPrice", "1000000.00000000"},
                                     {"tickSize", tick}},
                                    {{"filterType", "LOT_SIZE"},
                                     {"minQty", step},
                                     {"maxQty", "9000.00000000"},
                                     {"stepSize", step}}})}});
    }
    Json body = {{"timezone", "UTC"},
                 {"serverTime", ctx_.now_ms},
                 {"rateLimits", std::move(limits)},
                 {"exchangeFilters", Json::array()},
                 {"symbols", std::move(symbols)}};
    return Reply(body);
  }

  HttpResponse Depth() {
    HttpResponse error;
    const Instrument* inst = RequireSymbol(&error);
    if (inst == nullptr) return error;
    auto limit = Limit(futures_ ? 500 : 100, futures_ ? 1000 : 5000, &error);
    if (!limit) return error;
    int64_t tick = ctx_.now_ms / Market::kTickMs;
    Book book = m_.BookAt(*inst, tick, static_cast<int>(*limit));
    Json bids = Json::array(), asks = Json::array();
    for (const Level& l : book.bids) bids.push_back({Px(*inst, l.grid), Qty(*inst, l.qty)});
    for (const Level& l : book.asks) asks.push_back({Px(*inst, l.grid), Qty(*inst, l.qty)});
    Json body = {{"lastUpdateId", tick * kUpdateIdsPerTick}};
    if (futures_) {
      body["E"] = ctx_.now_ms;
      body["T"] = tick * Market::kTickMs;
    }
    body["bids"] = std::move(bids);
    body["asks"] = std::move(asks);
    return Reply(body);
  }

  HttpResponse Trades(bool historical) {
    HttpResponse error;
    const Instrument* inst = RequireSymbol(&error);
    if (inst == nullptr) return error;
    auto limit = Limit(500, 1000, &error);
    if (!limit) return error;
    int64_t last = m_.LastTradeId(*inst, ctx_.now_ms);
    int64_t first = last - *limit + 1;
    if (historical && Param(ctx_.req, "fromId") != nullptr) {
      auto from = IntParam(ctx_.req, "fromId", 0);
      if (!from || *from < 0) return Error(400, -1100, "Illegal characters found in parameter 'fromId'.");
      first = *from;
    }
    Json out = Json::array();
    for (int64_t id = first; id <= std::min(last, first + *limit - 1); ++id) {
      Trade t = m_.TradeById(*inst, id);
      double quote = m_.PriceOf(*inst, t.price_grid) * m_.QtyOf(*inst, t.qty);
      out.push_back({{"id", t.id},
                     {"price", Px(*inst, t.price_grid)},
                     {"qty", Qty(*inst, t.qty)},
                     {"quoteQty", absl::StrFormat("%.8f", quote)},
                     {"time", t.time_ms},
                     {"isBuyerMaker", t.buyer_is_maker},
                     {"isBestMatch", true}});
    }
    return Reply(out);
  }

  HttpResponse AggTrades() {
    HttpResponse error;
    const Instrument* inst = RequireSymbol(&error);
    if (inst == nullptr) return error;
    auto limit = Limit(500, 1000, &error);
    if (!limit) return error;
    int64_t last = m_.LastTradeId(*inst, ctx_.now_ms);
    int64_t first = last - *limit + 1;
    auto from = IntParam(ctx_.req, "fromId", -1);
    auto start = IntParam(ctx_.req, "startTime", -1);
    auto end = IntParam(ctx_.req, "endTime", -1);
    if (!from || !start || !end) return Error(400, -1100, "Illegal characters found in a parameter.");
    if (*start >= 0 && *end >= 0 && *end - *start > 3'600'000) {
      return Error(400, -1127, "More than 1 hours between startTime and endTime.");
    }
    int64_t stop = last;
    if (*from >= 0) {
      first = *from;
    } else if (*start >= 0) {
      first = m_.FirstTradeIdAtOrAfter(*inst, *start);
    } else if (*end >= 0) {
      stop = std::min(last, m_.LastTradeId(*inst, *end));
      first = stop - *limit + 1;
    }
    if (*end >= 0) stop = std::min(stop, m_.LastTradeId(*inst, *end));
    Json out = Json::array();
    for (int64_t id = first; id <= std::min(stop, first + *limit - 1); ++id) {
      Trade t = m_.TradeById(*inst, id);
      out.push_back({{"a", t.id},
                     {"p", Px(*inst, t.price_grid)},
                     {"q", Qty(*inst, t.qty)},
                     {"f", t.id},
                     {"l", t.id},
                     {"T", t.time_ms},
                     {"m", t.buyer_is_maker},
                     {"M", true}});
    }
    return Reply(out);
  }

  HttpResponse Klines() {
    HttpResponse error;
    const Instrument* inst = RequireSymbol(&error);
    if (inst == nullptr) return error;
    const std::string* interval = Param(ctx_.req, "interval");
    if (interval == nullptr) {
      return Error(400, -1102,
                   "Mandatory parameter 'interval' was not sent, was empty/null, or malformed.");
    }
    auto it = KlineIntervals().find(*interval);
    if (it == KlineIntervals().end()) return Error(400, -1120, "Invalid interval.");
    int64_t step = it->second;
    auto limit = Limit(500, futures_ ? 1500 : 1000, &error);
    if (!limit) return error;
    auto start = IntParam(ctx_.req, "startTime", -1);
    auto end = IntParam(ctx_.req, "endTime", -1);
    if (!start || !end) return Error(400, -1100, "Illegal characters found in a parameter.");
    if (*start >= 0 && *end >= 0 && *start > *end) {
      return Error(400, -1023, "Start time is greater than end time.");
    }
    int64_t last_open = FloorTo(ctx_.now_ms, step);
    if (*end >= 0) last_open = std::min(last_open, FloorTo(*end, step));
    int64_t first_open = last_open - (*limit - 1) * step;
    if (*start >= 0) {
      first_open = FloorTo(*start, step);
      if (first_open < *start) first_open += step;
      last_open = std::min(last_open, first_open + (*limit - 1) * step);
    }
    Json out = Json::array();
    for (int64_t open = first_open; open <= last_open; open += step) {
      Candle c = m_.CandleAt(*inst, open, step, ctx_.now_ms);
      double vol = m_.QtyOf(*inst, c.volume);
      double quote_vol = vol * m_.PriceOf(*inst, c.close);
      out.push_back({c.open_ms, Px(*inst, c.open), Px(*inst, c.high), Px(*inst, c.low),
                     Px(*inst, c.close), Qty(*inst, c.volume), c.close_ms,
                     absl::StrFormat("%.8f", quote_vol), c.trades,
                     Qty(*inst, c.volume / 2), absl::StrFormat("%.8f", quote_vol / 2), "0"});
    }
    return Reply(out);
  }

  HttpResponse AvgPrice() {
    HttpResponse error;
    const Instrument* inst = RequireSymbol(&error);
    if (inst == nullptr) return error;
    double sum = 0;
    for (int i = 0; i < 5; ++i) sum += m_.Price(*inst, ctx_.now_ms - i * 60'000);
    return Reply(Json{{"mins", 5},
                      {"price", absl::StrFormat("%.8f", sum / 5)},
                      {"closeTime", ctx_.now_ms}});
  }

  using TickerFn = Json (Handler::*)(const Instrument&);

  HttpResponse Tickers(TickerFn fn) {
    bool single = false;
    HttpResponse error;
    auto instruments = SymbolSet(&single, &error);
    if (!instruments) return error;
    if (single) return Reply((this->*fn)(*instruments->front()));
    Json out = Json::array();
    for (const Instrument* inst : *instruments) out.push_back((this->*fn)(*inst));
    return Reply(out);
  }

  Json Ticker24h(const Instrument& inst) { return TickerJson(m_, inst, ctx_.now_ms, futures_); }

  Json RollingTicker(const Instrument& inst) {
    Json j = Ticker24h(inst);
    for (const char* k : {"prevClosePrice", "lastQty", "bidPrice", "bidQty", "askPrice", "askQty"}) {
      j.erase(k);
    }
    return j;
  }

  Json TickerPrice(const Instrument& inst) {
    Json j = {{"symbol", inst.symbol}, {"price", Px(inst, m_.PriceGrid(inst, ctx_.now_ms))}};
    if (futures_) j["time"] = ctx_.now_ms;
    return j;
  }

  Json BookTicker(const Instrument& inst) {
    Book top = m_.BookAt(inst, ctx_.now_ms / Market::kTickMs, 1);
    return Json{{"symbol", inst.symbol},
                {"bidPrice", Px(inst, top.bids.at(0).grid)},
                {"bidQty", Qty(inst, top.bids.at(0).qty)},
                {"askPrice", Px(inst, top.asks.at(0).grid)},
                {"askQty", Qty(inst, top.asks.at(0).qty)}};
  }

  ApiContext& ctx_;
  const Market& m_;
  bool futures_;
};

}  // namespace

const std::map<std::string, int64_t>& KlineIntervals() {
  static const auto* m = new std::map<std::string, int64_t>{
      {"1s", 1'000},         {"1m", 60'000},        {"3m", 180'000},       {"5m", 300'000},
      {"15m", 900'000},      {"30m", 1'800'000},    {"1h", 3'600'000},     {"2h", 7'200'000},
      {"4h", 14'400'000},    {"6h", 21'600'000},    {"8h", 28'800'000},    {"12h", 43'200'000},
      {"1d", 86'400'000},    {"3d", 259'200'000},   {"1w", 604'800'000}};
  return *m;
}

Json TickerJson(const Market& m, const Instrument& inst, int64_t now_ms, bool futures) {
  int64_t open_ms = now_ms - 86'400'000;
  Candle c = m.CandleAt(inst, open_ms, 86'400'000, now_ms);
  Book top = m.BookAt(inst, now_ms / Market::kTickMs, 1);
  double open = m.PriceOf(inst, c.open), last = m.PriceOf(inst, c.close);
  int64_t last_id = m.LastTradeId(inst, now_ms);
  Trade last_trade = m.TradeById(inst, last_id);
  double vol = m.QtyOf(inst, c.volume);
  Json j = {{"symbol", inst.symbol},
            {"priceChange", absl::StrFormat("%.8f", last - open)},
            {"priceChangePercent", absl::StrFormat("%.3f", (last - open) / open * 100)},
            {"weightedAvgPrice", absl::StrFormat("%.8f", (open + last) / 2)},
            {"prevClosePrice", m.PriceStr(inst, m.PriceGrid(inst, open_ms - 1), kPad)},
            {"lastPrice", m.PriceStr(inst, c.close, kPad)},
            {"lastQty", m.QtyStr(inst, last_trade.qty, kPad)}};
  if (!futures) {
    j["bidPrice"] = m.PriceStr(inst, top.bids.at(0).grid, kPad);
    j["bidQty"] = m.QtyStr(inst, top.bids.at(0).qty, kPad);
    j["askPrice"] = m.PriceStr(inst, top.asks.at(0).grid, kPad);
    j["askQty"] = m.QtyStr(inst, top.asks.at(0).qty, kPad);
  }
  j["openPrice"] = m.PriceStr(inst, c.open, kPad);
  j["highPrice"] = m.PriceStr(inst, c.high, kPad);
  j["lowPrice"] = m.PriceStr(inst, c.low, kPad);
  j["volume"] = m.QtyStr(inst, c.volume, kPad);
  j["quoteVolume"] = absl::StrFormat("%.8f", vol * (open + last) / 2);
  j["openTime"] = open_ms;
  j["closeTime"] = now_ms;
  j["firstId"] = m.FirstTradeIdAtOrAfter(inst, open_ms);
  j["lastId"] = last_id;
  j["count"] = c.trades;
  return j;
}


HttpResponse Serve(ApiContext& ctx) { return Handler(ctx).Serve(); }

HttpResponse TooManyOrders(const common::PoolRule& pool, absl::Duration retry) {
  std::string per = pool.published_as
                        ? absl::StrCat(pool.published_as->interval_num, " ", pool.published_as->interval)
                        : absl::FormatDuration(pool.length);
  HttpResponse r = Error(429, -1015, absl::StrCat("Too many new orders; current limit is ", pool.capacity,
                                                  " orders per ", per, "."));
  r.headers.emplace_back("Retry-After", absl::StrCat(absl::ToInt64Seconds(absl::Ceil(retry, absl::Seconds(1)))));
  return r;
}

HttpResponse Error(int status, int code, absl::string_view msg) {
  HttpResponse r;
  r.status = status;
  r.body = Json{{"code", code}, {"msg", std::string(msg)}}.dump(-1, ' ', false, kDumpReplacingBadUtf8);
  return r;
}

HttpResponse RateLimited(ApiContext& ctx, const common::PoolRule& pool, absl::Duration retry) {
  std::string per = pool.published_as
                        ? absl::StrCat(pool.published_as->interval_num, " ",
                                       pool.published_as->interval)
                        : absl::StrCat(absl::ToInt64Seconds(pool.length), " SECOND");
  std::string msg =
      pool.name == "REQUEST_WEIGHT"
          ? absl::StrCat("Too much request weight used; current limit is ", pool.capacity,
                         " request weight per ", per,
                         ". Please use WebSocket Streams for live updates to avoid polling the API.")
          : absl::StrCat("Too many requests; current limit of IP(", ctx.req.peer_ip, ") is ",
                         pool.capacity, " requests per ", per, ".");
  HttpResponse r = Error(429, -1003, msg);
  int64_t seconds = std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(retry, absl::Seconds(1))));
  r.headers.emplace_back("Retry-After", absl::StrCat(seconds));
  return r;
}

HttpResponse Banned(ApiContext& ctx, absl::Time until) {
  HttpResponse r = Error(
      418, -1003,
      absl::StrCat("Way too much request weight used; IP banned until ", absl::ToUnixMillis(until),
                   ". Please use WebSocket Streams for live updates to avoid bans."));
  int64_t seconds =
      std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(until - ctx.now, absl::Seconds(1))));
  r.headers.emplace_back("Retry-After", absl::StrCat(seconds));
  return r;
}

HttpResponse Maintenance() {
  return Error(503, -1016, "This service is no longer available.");
}

HttpResponse InjectedError() {
  return Error(503, -1008,
               "Server is currently overloaded with other requests. Please try again in a few "
               "minutes.");
}

}  // namespace marketprism::sim::binance
