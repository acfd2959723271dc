// File: exchange_sim/api_json.h
//
// JSON builders shared by the REST handlers and the WebSocket sessions, so a
// ticker or a JSON-RPC envelope looks the same on both.
#pragma once

#include <cstdint>
#include <map>
#include <string>

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
// The market/ticker object (also the `tickers` channel's data item).
nlohmann::ordered_json TickerJson(const Market& m, const Instrument& inst, int64_t now_ms);
}  // namespace okx

namespace deribit {
// The public/ticker result (also the `ticker.*` channel's data).
nlohmann::ordered_json TickerJson(const Market& m, const Instrument& inst, int64_t now_ms);
// {"jsonrpc":"2.0","id":...,"result":...,"usIn":...,...}
std::string ResultBody(const RpcCall& call, nlohmann::ordered_json result, absl::Time received,
                       absl::Time replied);
}  // namespace deribit

}  // namespace marketprism::sim
