// File: exchange_sim/api_json.h
//
// JSON builders shared by the REST handlers and the WebSocket sessions, so a
// ticker or a JSON-RPC envelope looks the same on both.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "exchange_sim/market.h"
#include "exchange_sim/simulator.h"
#include <nlohmann/json.hpp>

namespace marketprism::sim {

namespace binance {
// Kline interval names and their lengths in milliseconds ("1m" -> 60000).
const std::map<std::string, int64_t>& KlineIntervals();
// GET /api/v3/ticker/24hr's object (the `@ticker` stream renames its fields).
nlohmann::ordered_json TickerJson(const Market& m, const Instrument& inst, int64_t now_ms, bool futures);
}  // namespace binance

namespace okx {
// A candle bar ("1m", "1H", "1Dutc"): its length, and the offset from UTC it
// is aligned to (OKX aligns 6H and longer to Hong Kong time unless "utc").
struct Bar {
  int64_t ms;
  int64_t offset;
};
std::optional<Bar> ParseBar(absl::string_view bar);
// The open time of the bar that holds `ms`.
int64_t BarOpen(int64_t ms, const Bar& bar);
// market/candles' row (also the `candle*` channels' data item):
// [ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm].
nlohmann::ordered_json CandleRow(const Market& m, const Instrument& inst, int64_t open_ms, const Bar& bar,
                                 int64_t now_ms);
// The market/ticker object (also the `tickers` channel's data item).
nlohmann::ordered_json TickerJson(const Market& m, const Instrument& inst, int64_t now_ms);
}  // namespace okx

namespace deribit {
// The public/ticker result (also the `ticker.*` channel's data).
nlohmann::ordered_json TickerJson(const Market& m, const Instrument& inst, int64_t now_ms);
// A chart resolution's minutes ("1", ..., "720", "1D"); nullopt for one
// Deribit does not offer.
std::optional<int64_t> ResolutionMinutes(absl::string_view resolution);
// One candle as the `chart.trades.*` channel sends it (also a column entry
// of public/get_tradingview_chart_data): tick, open, high, low, close,
// volume, cost.
nlohmann::ordered_json ChartItem(const Market& m, const Instrument& inst, int64_t open_ms, int64_t step_ms,
                                 int64_t now_ms);
// {"jsonrpc":"2.0","id":...,"result":...,"usIn":...,...}
std::string ResultBody(const RpcCall& call, nlohmann::ordered_json result, absl::Time received,
                       absl::Time replied);
}  // namespace deribit

}  // namespace marketprism::sim
