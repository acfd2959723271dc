// File: node/feeds/okx_feed.h
//
// OKX's public WebSocket (/ws/v5/public): trades and books as the collector
// reads them. Streams are "channel:instId"; subscribe with
// {"op":"subscribe","args":[{"channel":..,"instId":..}]}; the text "ping"
// after 5 s without a message keeps a quiet connection open (OKX closes it
// after 30 s without pushes; the collector's own watchdog reopens one silent
// for 10 s, and the "pong" counts as a message). Books: since OKX's changelog of 2026-02-12 the channel need not
// send a snapshot, so the book joins REST /api/v5/market/books (its seqId);
// a "snapshot" push, where one still comes, is taken as one too.
#pragma once

#include "node/feeds/feed.h"

namespace marketprism::node {

// The hot streams (trades and books pushes) through simdjson: appends their
// events and returns true when `text` is one, read completely; false, with
// `out` as it was, for anything else, which the feed's nlohmann path reads
// (node/feeds/simd_fields.h).
bool ParseOkxHot(absl::string_view text, std::vector<FeedEvent>& out);

class OkxFeed final : public Feed {
 public:
  explicit OkxFeed(JsonParser parser = JsonParser::kSimdjson) : parser_(parser) {}
  common::BookProtocol protocol() const override { return common::BookProtocol::kOkx; }
  absl::StatusOr<std::string> StreamName(common::Channel channel, absl::string_view symbol,
                                         absl::string_view interval) const override;
  std::string Url(const std::string& base, const std::vector<std::string>& streams) const override;
  bool StreamsInUrl() const override { return false; }
  std::string SubscribeMessage(const std::vector<std::string>& streams, bool subscribe, int64_t id) const override;
  absl::Status Parse(absl::string_view text, std::vector<FeedEvent>& out) const override;
  std::optional<std::string> Heartbeat() const override { return "ping"; }
  absl::Duration heartbeat_every() const override { return absl::Seconds(5); }
  std::string SnapshotPath() const override { return "/api/v5/market/books"; }
  common::QueryParams SnapshotQuery(absl::string_view symbol, int depth) const override;
  absl::StatusOr<common::BookSnapshot> ParseSnapshot(absl::string_view body) const override;

 private:
  JsonParser parser_;
};

}  // namespace marketprism::node
