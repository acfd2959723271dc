// File: node/feeds/binance_feed.h
//
// Binance spot's and USD-M futures' market streams as the collector reads
// them: the stream names a unit subscribes to, the combined-stream messages
// it receives ({"stream": ..., "data": ...}: trade or (USD-M) aggTrade,
// depthUpdate (USD-M's with "pu"), bookTicker, 24hrTicker and kline events,
// and the replies to SUBSCRIBE), and the REST depth snapshot a book joins.
// Pure; every malformed message is an error that names what is wrong.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/collect/book_sync.h"
#include "common/collect/job.h"
#include "node/feeds/feed.h"

namespace marketprism::node {

// "btcusdt@trade" (USD-M: "btcusdt@aggTrade", it has no raw trades),
// "btcusdt@depth@100ms", "btcusdt@bookTicker", "btcusdt@ticker",
// "btcusdt@kline_1m"; kInvalidArgument for a poll.
absl::StatusOr<std::string> BinanceStreamName(common::Channel channel, absl::string_view symbol,
                                              absl::string_view interval, bool usdm = false);

struct BinanceMessage {
  enum class Kind { kTrade, kDepth, kRecord, kReply };
  Kind kind = Kind::kTrade;
  std::string stream;   // the combined stream's name
  std::string symbol;   // "BTCUSDT"
  int64_t event_ms = 0;
  // kTrade
  int64_t trade_id = 0;
  std::string price, quantity;
  bool buyer_is_maker = false;
  int64_t trade_ms = 0;
  // kDepth
  common::BookDiff diff;
  // kRecord: a bookTicker, 24hrTicker or kline event's body, what tells it
  // from the stream's other records, and what orders them
  v1::MarketEvent record;
  std::string record_key;
  int64_t sequence = 0;
  // kReply: the id of the request it answers, and an error if it failed
  int64_t reply_id = 0;
  std::string error;
};

absl::StatusOr<BinanceMessage> ParseBinanceMessage(absl::string_view text);

// The hot streams (trade, aggTrade and depthUpdate events) through simdjson: appends
// the event and returns true when `text` is one, read completely; false,
// with `out` as it was, for anything else, which BinanceFeed reads with
// ParseBinanceMessage (node/feeds/simd_fields.h).
bool ParseBinanceHot(absl::string_view text, std::vector<FeedEvent>& out);

// GET /api/v3/depth's (and /fapi/v1/depth's) body.
absl::StatusOr<common::BookSnapshot> ParseBinanceDepthSnapshot(absl::string_view body);

// Binance spot (or USD-M) behind the Feed interface: streams in the
// combined-stream URL (/stream?streams=a/b), SUBSCRIBE / UNSUBSCRIBE for
// later changes; the server pings and lws answers.
class BinanceFeed final : public Feed {
 public:
  explicit BinanceFeed(JsonParser parser = JsonParser::kSimdjson, bool usdm = false)
      : parser_(parser), usdm_(usdm) {}
  common::BookProtocol protocol() const override {
    return usdm_ ? common::BookProtocol::kBinanceUsdm : common::BookProtocol::kBinanceSpot;
  }
  absl::StatusOr<std::string> StreamName(common::Channel channel, absl::string_view symbol,
                                         absl::string_view interval) const override {
    return BinanceStreamName(channel, symbol, interval, usdm_);
  }
  std::string Url(const std::string& base, const std::vector<std::string>& streams) const override;
  bool StreamsInUrl() const override { return true; }
  std::string SubscribeMessage(const std::vector<std::string>& streams, bool subscribe, int64_t id) const override;
  absl::Status Parse(absl::string_view text, std::vector<FeedEvent>& out) const override;
  std::string SnapshotPath() const override { return usdm_ ? "/fapi/v1/depth" : "/api/v3/depth"; }
  common::QueryParams SnapshotQuery(absl::string_view symbol, int depth) const override;
  absl::StatusOr<common::BookSnapshot> ParseSnapshot(absl::string_view body) const override {
    return ParseBinanceDepthSnapshot(body);
  }

 private:
  JsonParser parser_;
  bool usdm_;
};

}  // namespace marketprism::node
