// File: common/collect/job.h
//
// Jobs say what to collect; units are what the leader places. A job
// (exchange, channel, symbols or all listed instruments, options,
// redundancy) comes from a jobs file or from Collector.CreateJob, is checked
// here against the exchange rules, and splits into one unit per
// (exchange, channel, symbol) — a poll job into one unit of its own.
//
// The jobs file:
//   {"jobs": [
//     {"name": "btc-books", "exchange": "binance_spot", "channel": "book",
//      "symbols": ["BTCUSDT", "ETHUSDT"], "redundancy": 1},
//     {"name": "tickers", "exchange": "binance_spot", "channel": "poll",
//      "path": "/api/v3/ticker/24hr", "every": "30s"}]}
//
// Pure functions; thread-compatible.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/rules/rules.h"
#include "marketprism/v1/collector.pb.h"

namespace marketprism::common {

enum class Channel { kTrades, kBook, kBookTicker, kTicker, kKline, kPoll };

// "trades" -> kTrades, ...; kInvalidArgument names the channels there are.
absl::StatusOr<Channel> ParseChannel(absl::string_view name);
absl::string_view ChannelName(Channel c);
// Whether the channel is a WebSocket stream (all but poll).
bool IsStream(Channel c);

// Which of the exchange's WebSocket endpoints serves the channel: "" for
// the usual one, "business" for OKX candles (/ws/v5/business). A connection
// carries streams of one endpoint.
absl::string_view StreamEndpoint(absl::string_view exchange, Channel c);

// Checks one job against `rules` and fills its defaults (redundancy 1, the
// book depth the exchange's REST snapshot allows). kInvalidArgument names
// the job and the field: `job "trades": "redundancy" must be 1 or 2`.
absl::Status ValidateJob(const RulesBook& rules, v1::Job& job);

// Parses a jobs file's text (`origin` names it in errors) and validates each
// job; names must be unique. Nothing is accepted when anything is wrong.
absl::StatusOr<std::vector<v1::Job>> ParseJobs(absl::string_view text, absl::string_view origin,
                                               const RulesBook& rules);
// The same for a file on disk (kNotFound when it cannot be read).
absl::StatusOr<std::vector<v1::Job>> LoadJobsFile(const std::string& path, const RulesBook& rules);

// One unit of a job: what a node runs.
struct UnitSpec {
  std::string key;  // "binance_spot/book/BTCUSDT", "binance_spot/kline_1m/BTCUSDT", "binance_spot/poll/tickers"
  std::string job;
  std::string exchange;
  Channel channel = Channel::kTrades;
  std::string symbol;  // "" for a poll
  int redundancy = 1;
  std::string interval;  // kline
  int depth = 0;         // book
  absl::Duration every;  // poll

  friend bool operator==(const UnitSpec&, const UnitSpec&) = default;
};

// Splits a validated job into its units. `listed` is the exchange's listed
// instruments, used only by a job with all_symbols. Symbols are kept in the
// job's order, without repeats.
std::vector<UnitSpec> SplitIntoUnits(const v1::Job& job, const std::vector<std::string>& listed = {});

// The key of the unit a record comes from: "okx/trades/BTC-USDT",
// "binance_spot/kline_1m/BTCUSDT" (a kline's channel names its interval).
std::string UnitKeyOf(const v1::MarketEvent& e);

}  // namespace marketprism::common
