// OKX v5 public market data (/api/v5/public, /api/v5/market). Replies are
// {"code":"0","msg":"","data":[...]}; errors keep the shape with a non-zero code.

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "exchange_sim/api_json.h"
#include "exchange_sim/api_util.h"
#include "exchange_sim/simulator.h"
#include <nlohmann/json.hpp>

namespace marketprism::sim::okx {

using Json = nlohmann::ordered_json;

namespace {

constexpr int64_t kHourMs = 3'600'000;
constexpr int64_t kDayMs = 24 * kHourMs;
constexpr int64_t kHongKong = 8 * kHourMs;  // OKX aligns 6H and longer bars to UTC+8
constexpr int kLatestCandles = 1440;        // market/candles reaches this many bars back

HttpResponse Ok(Json data) {
  HttpResponse r;
  r.body = Json{{"code", "0"}, {"msg", ""}, {"data", std::move(data)}}.dump(-1, ' ', false, kDumpReplacingBadUtf8);
  return r;
}

std::string InstType(const Instrument& inst) {
  switch (inst.kind) {
    case InstrumentKind::kSpot:
      return "SPOT";
    case InstrumentKind::kSwap:
      return "SWAP";
    case InstrumentKind::kFuture:
      return "FUTURES";
    case InstrumentKind::kOption:
      return "OPTION";
  }
  return "SPOT";
}

}  // namespace

std::optional<Bar> ParseBar(absl::string_view bar) {
  static const auto* bars = new std::map<std::string, Bar, std::less<>>{
      {"1m", {60'000, 0}},        {"3m", {180'000, 0}},       {"5m", {300'000, 0}},
      {"15m", {900'000, 0}},      {"30m", {1'800'000, 0}},    {"1H", {kHourMs, 0}},
      {"2H", {2 * kHourMs, 0}},   {"4H", {4 * kHourMs, 0}},   {"6H", {6 * kHourMs, kHongKong}},
      {"12H", {12 * kHourMs, kHongKong}}, {"1D", {kDayMs, kHongKong}},
      {"2D", {2 * kDayMs, kHongKong}},    {"3D", {3 * kDayMs, kHongKong}},
      {"1W", {7 * kDayMs, kHongKong}},    {"6Hutc", {6 * kHourMs, 0}},
      {"12Hutc", {12 * kHourMs, 0}},      {"1Dutc", {kDayMs, 0}},
      {"2Dutc", {2 * kDayMs, 0}},         {"3Dutc", {3 * kDayMs, 0}},
      {"1Wutc", {7 * kDayMs, 0}}};
  auto it = bars->find(bar);
  if (it == bars->end()) return std::nullopt;
  return it->second;
}

int64_t BarOpen(int64_t ms, const Bar& bar) {
  // Weeks start on Monday; 1970-01-05 was the first Monday after the epoch.
  int64_t anchor = bar.ms == 7 * kDayMs ? 4 * kDayMs : 0;
  return FloorTo(ms + bar.offset - anchor, bar.ms) - bar.offset + anchor;
}

Json CandleRow(const Market& m, const Instrument& inst, int64_t open_ms, const Bar& bar, int64_t now_ms) {
  Candle c = m.CandleAt(inst, open_ms, bar.ms, now_ms);
  double vol = m.QtyOf(inst, c.volume);
  std::string quote = absl::StrFormat("%.4f", vol * m.PriceOf(inst, c.close));
  return Json::array({absl::StrCat(open_ms), m.PriceStr(inst, c.open), m.PriceStr(inst, c.high),
                      m.PriceStr(inst, c.low), m.PriceStr(inst, c.close), m.QtyStr(inst, c.volume), quote, quote,
                      open_ms + bar.ms <= now_ms ? "1" : "0"});
}

Json TickerJson(const Market& m, const Instrument& inst, int64_t now_ms) {
  int64_t day_ago = now_ms - kDayMs;
  Candle c = m.CandleAt(inst, day_ago, kDayMs, now_ms);
  Book top = m.BookAt(inst, now_ms / Market::kTickMs, 1);
  Trade last = m.TradeById(inst, m.LastTradeId(inst, now_ms));
  int64_t sod0 = FloorTo(now_ms, kDayMs);
  int64_t sod8 = FloorTo(now_ms + kHongKong, kDayMs) - kHongKong;
  double vol = m.QtyOf(inst, c.volume);
  return Json{{"instType", InstType(inst)},
              {"instId", inst.symbol},
              {"last", m.PriceStr(inst, last.price_grid)},
              {"lastSz", m.QtyStr(inst, last.qty)},
              {"askPx", m.PriceStr(inst, top.asks.at(0).grid)},
              {"askSz", m.QtyStr(inst, top.asks.at(0).qty)},
              {"bidPx", m.PriceStr(inst, top.bids.at(0).grid)},
              {"bidSz", m.QtyStr(inst, top.bids.at(0).qty)},
              {"open24h", m.PriceStr(inst, c.open)},
              {"high24h", m.PriceStr(inst, c.high)},
              {"low24h", m.PriceStr(inst, c.low)},
              {"volCcy24h", absl::StrFormat("%.4f", vol * m.PriceOf(inst, c.close))},
              {"vol24h", m.QtyStr(inst, c.volume)},
              {"sodUtc0", m.PriceStr(inst, m.PriceGrid(inst, sod0))},
              {"sodUtc8", m.PriceStr(inst, m.PriceGrid(inst, sod8))},
              {"ts", absl::StrCat(now_ms)}};
}

namespace {

class Handler {
 public:
  explicit Handler(ApiContext& ctx) : ctx_(ctx), m_(ctx.market) {}

  HttpResponse Serve() {
    absl::string_view op = absl::string_view(ctx_.req.path).substr(strlen("/api/v5/"));
    if (op == "public/time") return Ok(Json::array({{{"ts", absl::StrCat(ctx_.now_ms)}}}));
    if (op == "public/instruments") return Instruments();
    if (op == "market/ticker") return OneTicker();
    if (op == "market/tickers") return AllTickers();
    if (op == "market/books") return Books(400);
    if (op == "market/books-full") return Books(5000);
    if (op == "market/candles") return Candles(false);
    if (op == "market/history-candles") return Candles(true);
    if (op == "market/trades") return Trades(false);
    if (op == "market/history-trades") return Trades(true);
    return Error(404, "50030", "Illegal API endpoint");
  }

 private:
  const Instrument* RequireInst(HttpResponse* error) {
    const std::string* id = Param(ctx_.req, "instId");
    if (id == nullptr || id->empty()) {
      *error = Error(400, "51000", "Parameter instId error");
      return nullptr;
    }
    const Instrument* inst = m_.Find("okx", *id);
    if (inst == nullptr) *error = Error(400, "51001", "Instrument ID does not exist");
    return inst;
  }

  std::optional<std::string> RequireInstType(HttpResponse* error) {
    const std::string* t = Param(ctx_.req, "instType");
    if (t == nullptr || (*t != "SPOT" && *t != "SWAP" && *t != "FUTURES" && *t != "OPTION" &&
                         *t != "MARGIN")) {
      *error = Error(400, "51000", "Parameter instType error");
      return std::nullopt;
    }
    return *t;
  }

  std::optional<int64_t> Bounded(absl::string_view key, int64_t def, int64_t max,
                                 HttpResponse* error) {
    std::optional<int64_t> v = IntParam(ctx_.req, key, def);
    if (!v || *v < 1) {
      *error = Error(400, "51000", absl::StrCat("Parameter ", key, " error"));
      return std::nullopt;
    }
    return std::min(*v, max);
  }

  std::string Px(const Instrument& i, int64_t g) { return m_.PriceStr(i, g); }
  std::string Sz(const Instrument& i, int64_t q) { return m_.QtyStr(i, q); }

  HttpResponse Instruments() {
    HttpResponse error;
    auto type = RequireInstType(&error);
    if (!type) return error;
    Json data = Json::array();
    for (const Instrument* inst : m_.InstrumentsOf("okx")) {
      if (InstType(*inst) != *type) continue;
      Json j = {{"instType", *type},
                {"instId", inst->symbol},
                {"uly", inst->kind == InstrumentKind::kSpot ? "" : inst->base + "-" + inst->quote},
                {"baseCcy", inst->kind == InstrumentKind::kSpot ? inst->base : ""},
                {"quoteCcy", inst->kind == InstrumentKind::kSpot ? inst->quote : ""},
                {"settleCcy", inst->kind == InstrumentKind::kSpot ? "" : inst->quote},
                {"ctVal", inst->kind == InstrumentKind::kSpot ? "" : "0.01"},
                {"ctValCcy", inst->kind == InstrumentKind::kSpot ? "" : inst->base},
                {"listTime", "1606468572000"},
                {"expTime", ""},
                {"lever", inst->kind == InstrumentKind::kSpot ? "10" : "100"},
                {"tickSz", Market::FormatFixed(inst->tick_units, inst->price_decimals)},
                {"lotSz", Market::FormatFixed(1, inst->qty_decimals)},
                {"minSz", Market::FormatFixed(1, inst->qty_decimals)},
                {"ctType", inst->kind == InstrumentKind::kSwap ? "linear" : ""},
                {"state", "live"}};
      data.push_back(std::move(j));
    }
    return Ok(std::move(data));
  }

  HttpResponse OneTicker() {
    HttpResponse error;
    const Instrument* inst = RequireInst(&error);
    if (inst == nullptr) return error;
    return Ok(Json::array({TickerJson(m_, *inst, ctx_.now_ms)}));
  }

  HttpResponse AllTickers() {
    HttpResponse error;
    auto type = RequireInstType(&error);
    if (!type) return error;
    Json data = Json::array();
    for (const Instrument* inst : m_.InstrumentsOf("okx")) {
      if (InstType(*inst) == *type) data.push_back(TickerJson(m_, *inst, ctx_.now_ms));
    }
    return Ok(std::move(data));
  }

  HttpResponse Books(int64_t max_sz) {
    HttpResponse error;
    const Instrument* inst = RequireInst(&error);
    if (inst == nullptr) return error;
    auto sz = Bounded("sz", 1, max_sz, &error);
    if (!sz) return error;
    int64_t tick = ctx_.now_ms / Market::kTickMs;
    Book book = m_.BookAt(*inst, tick, static_cast<int>(*sz));
    auto side = [&](const std::vector<Level>& levels) {
      Json out = Json::array();
      for (const Level& l : levels) {
        int64_t orders = 1 + static_cast<int64_t>(m_.Hash(inst->key, l.grid, l.qty) % 9);
        out.push_back({Px(*inst, l.grid), Sz(*inst, l.qty), "0", absl::StrCat(orders)});
      }
      return out;
    };
    // seqId: the books channel's sequence at this book (a 100 ms tick), so a
    // WebSocket subscriber joins it (OKX's changelog of 2026-02-12).
    return Ok(Json::array({{{"asks", side(book.asks)},
                            {"bids", side(book.bids)},
                            {"ts", absl::StrCat(tick * Market::kTickMs)},
                            {"seqId", tick}}}));
  }

  HttpResponse Candles(bool history) {
    HttpResponse error;
    const Instrument* inst = RequireInst(&error);
    if (inst == nullptr) return error;
    const std::string* bar_name = Param(ctx_.req, "bar");
    auto bar = ParseBar(bar_name == nullptr ? "1m" : *bar_name);
    if (!bar) return Error(400, "51000", "Parameter bar error");
    auto limit = Bounded("limit", 100, history ? 100 : 300, &error);
    if (!limit) return error;
    auto after = IntParam(ctx_.req, "after", -1);    // older than this ts
    auto before = IntParam(ctx_.req, "before", -1);  // newer than this ts
    if (!after || !before) return Error(400, "51000", "Parameter after/before error");
    int64_t newest = BarOpen(ctx_.now_ms, *bar);
    int64_t oldest = history ? INT64_MIN : newest - (kLatestCandles - 1) * bar->ms;
    int64_t first = newest;  // newest first
    if (*after >= 0) first = std::min(first, BarOpen(*after - 1, *bar));
    Json data = Json::array();
    for (int64_t open = first; open >= oldest && static_cast<int64_t>(data.size()) < *limit;
         open -= bar->ms) {
      if (*before >= 0 && open <= *before) break;
      data.push_back(CandleRow(m_, *inst, open, *bar, ctx_.now_ms));
    }
    return Ok(std::move(data));
  }

  HttpResponse Trades(bool history) {
    HttpResponse error;
    const Instrument* inst = RequireInst(&error);
    if (inst == nullptr) return error;
    auto limit = Bounded("limit", 100, history ? 100 : 500, &error);
    if (!limit) return error;
    int64_t newest = m_.LastTradeId(*inst, ctx_.now_ms);
    if (history) {
      auto after = IntParam(ctx_.req, "after", -1);  // trade ids older than this
      if (!after) return Error(400, "51000", "Parameter after error");
      if (*after >= 0) newest = std::min(newest, *after - 1);
    }
    Json data = Json::array();
    for (int64_t id = newest; id > newest - *limit; --id) {
      Trade t = m_.TradeById(*inst, id);
      data.push_back({{"instId", inst->symbol},
                      {"side", t.buyer_is_maker ? "sell" : "buy"},
                      {"sz", Sz(*inst, t.qty)},
                      {"px", Px(*inst, t.price_grid)},
                      {"source", "0"},
                      {"tradeId", absl::StrCat(t.id)},
                      {"ts", absl::StrCat(t.time_ms)}});
    }
    return Ok(std::move(data));
  }

  ApiContext& ctx_;
  const Market& m_;
};

}  // namespace

HttpResponse Serve(ApiContext& ctx) { return Handler(ctx).Serve(); }

HttpResponse Error(int status, absl::string_view code, absl::string_view msg) {
  HttpResponse r;
  r.status = status;
  r.body = Json{{"code", std::string(code)}, {"msg", std::string(msg)}, {"data", Json::array()}}
               .dump(-1, ' ', false, kDumpReplacingBadUtf8);
  return r;
}

HttpResponse RateLimited() { return Error(429, "50011", "Too Many Requests"); }

HttpResponse Maintenance() {
  return Error(503, "50001", "Service temporarily unavailable. Please try again later.");
}

HttpResponse InjectedError() { return Error(500, "50026", "System error. Try again later."); }

}  // namespace marketprism::sim::okx
