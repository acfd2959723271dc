// File: node/feeds/deribit_feed.h
//
// Deribit's JSON-RPC WebSocket (/ws/api/v2): trades and books as the
// collector reads them. Streams are channel names ("trades.BTC-PERPETUAL.100ms",
// "book.BTC-PERPETUAL.100ms"; raw channels need an authorised session);
// subscribe with public/subscribe. A connection asks for heartbeats
// (public/set_heartbeat, 10 s: Deribit's minimum) and answers each
// test_request with public/test, else Deribit closes it. Books: the
// subscription's first message is the snapshot (change_id), then each
// change's prev_change_id is the change before it; a resync subscribes
// again. Deribit writes prices and amounts as JSON numbers: they are read
// as their text (common/collect/exact_json.h), never through a double.
#pragma once

#include "node/feeds/feed.h"

namespace marketprism::node {

// The hot streams (trades.* and book.* notifications) through simdjson: appends their
// events and returns true when `text` is one, read completely; false, with
// `out` as it was, for anything else, which the feed's nlohmann path reads
// (node/feeds/simd_fields.h).
bool ParseDeribitHot(absl::string_view text, std::vector<FeedEvent>& out);

class DeribitFeed final : public Feed {
 public:
  static constexpr int kHeartbeatSeconds = 10;

  explicit DeribitFeed(JsonParser parser = JsonParser::kSimdjson) : parser_(parser) {}

  common::BookProtocol protocol() const override { return common::BookProtocol::kDeribit; }
  absl::StatusOr<std::string> StreamName(common::Channel channel, absl::string_view symbol,
                                         absl::string_view interval) const override;
  std::string Url(const std::string& base, const std::vector<std::string>& streams) const override;
  bool StreamsInUrl() const override { return false; }
  std::string SubscribeMessage(const std::vector<std::string>& streams, bool subscribe, int64_t id) const override;
  absl::Status Parse(absl::string_view text, std::vector<FeedEvent>& out) const override;
  std::vector<std::string> OpenMessages(int64_t id) const override;
  bool SnapshotOnSubscribe() const override { return true; }
  // Every JSON-RPC call is charged like the same call over REST.
  std::optional<std::string> ChargedPath(absl::string_view text) const override;
  // A quiet connection still gets the heartbeats it asked for; this is the
  // client's own probe for one that gets nothing at all.
  std::optional<std::string> Heartbeat() const override;
  absl::Duration heartbeat_every() const override { return absl::Seconds(kHeartbeatSeconds / 2); }
  // Deribit's REST book (public/get_order_book) for a unit that asks; books
  // resync by resubscribing (SnapshotOnSubscribe), so the collector does not.
  std::string SnapshotPath() const override { return "/api/v2/public/get_order_book"; }
  common::QueryParams SnapshotQuery(absl::string_view symbol, int depth) const override;
  absl::StatusOr<common::BookSnapshot> ParseSnapshot(absl::string_view body) const override;

 private:
  JsonParser parser_;
};

}  // namespace marketprism::node
