// File: node/feeds/feed.h
//
// One exchange's market streams as the collector speaks them: how a unit's
// stream is named, the URL a connection opens, the subscribe messages, how a
// message reads (into FeedEvents), the heartbeat the exchange wants, and
// the REST snapshot a book joins. Implementations are pure and stateless;
// every malformed message is an error that names what is wrong.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/collect/book_sync.h"
#include "common/collect/job.h"
#include "common/rules/rules.h"
#include "marketprism/v1/collector.pb.h"

namespace marketprism::node {

struct FeedEvent {
  enum class Kind { kTrade, kDiff, kSnapshot, kRecord, kReply, kAnswer };
  Kind kind = Kind::kTrade;
  std::string stream;  // the stream it belongs to, as StreamName names it
  std::string symbol;
  int64_t event_ms = 0;
  // kTrade: trade_id is the exchange's per-symbol sequence that continuity
  // is checked by (Binance/OKX trade id, Deribit trade_seq); trade_id_text
  // the exchange's own id when it differs from that ("": the same).
  int64_t trade_id = 0;
  std::string trade_id_text;
  std::string price, quantity;
  bool taker_sold = false;
  // kDiff, kSnapshot
  common::BookDiff diff;
  common::BookSnapshot snapshot;
  // kRecord: a record the feed reads whole (book_ticker, ticker, kline):
  // its body in `record`; `record_key` tells it from the unit's other
  // records (the exchange's update id, or a kline's open and event times)
  // and `sequence` orders them: one at or below the last is a repeat.
  v1::MarketEvent record;
  std::string record_key;
  int64_t sequence = 0;
  // A kline from an exchange that never marks one final (Deribit's chart):
  // the last update before a later open time is the candle's final value,
  // and the collector sends it again as closed.
  bool final_when_superseded = false;
  // kReply: a refusal names what was refused ("" when it was accepted)
  std::string error;
  // kAnswer: a text the exchange asked for (Deribit's heartbeat test_request)
  std::string answer;
};

class Feed {
 public:
  virtual ~Feed() = default;
  virtual common::BookProtocol protocol() const = 0;
  // kInvalidArgument for a channel this feed does not stream. `interval`
  // is a kline's ("1m"), "" for the other channels.
  virtual absl::StatusOr<std::string> StreamName(common::Channel channel, absl::string_view symbol,
                                                 absl::string_view interval) const = 0;
  // The URL a connection opens; with streams in it when the exchange takes
  // them there (then they need no subscribe message).
  virtual std::string Url(const std::string& base, const std::vector<std::string>& streams) const = 0;
  virtual bool StreamsInUrl() const = 0;
  virtual std::string SubscribeMessage(const std::vector<std::string>& streams, bool subscribe, int64_t id) const = 0;
  // Appends what `text` holds; messages of no interest (pongs) add nothing.
  // A message of many items (OKX's and Deribit's lists) with a bad one
  // still appends every good one, and the error names the first bad one.
  virtual absl::Status Parse(absl::string_view text, std::vector<FeedEvent>& out) const = 0;
  // Texts to send once a connection opens, before any subscription.
  virtual std::vector<std::string> OpenMessages(int64_t /*id*/) const { return {}; }
  // The path the rules price `text` by when the exchange charges a message
  // sent on a connection to the IP's request pools (Deribit: "/api/v2/" and
  // the JSON-RPC method); nullopt when messages are not charged that way.
  virtual std::optional<std::string> ChargedPath(absl::string_view /*text*/) const { return std::nullopt; }
  // A book resynchronises by subscribing again (the subscription's first
  // message is the snapshot: Deribit) rather than by a REST snapshot.
  virtual bool SnapshotOnSubscribe() const { return false; }
  // A text to send after `heartbeat_every()` without a message, or nullopt.
  virtual std::optional<std::string> Heartbeat() const { return std::nullopt; }
  virtual absl::Duration heartbeat_every() const { return absl::Seconds(20); }
  // The REST snapshot of a book at `depth`.
  virtual std::string SnapshotPath() const = 0;
  virtual common::QueryParams SnapshotQuery(absl::string_view symbol, int depth) const = 0;
  virtual absl::StatusOr<common::BookSnapshot> ParseSnapshot(absl::string_view body) const = 0;
};

// The JSON library a feed reads its hot streams with (trades and book
// diffs: simdjson's On-Demand API, ~3x nlohmann's rate; docs/benchmarks.md).
// Every other message, and every message the fast path does not read
// completely, goes through nlohmann, so both give the same events and errors.
enum class JsonParser { kSimdjson, kNlohmann };

// The feed of `exchange`, or nullptr when the collector cannot stream it yet.
const Feed* FeedFor(absl::string_view exchange, JsonParser parser = JsonParser::kSimdjson);

}  // namespace marketprism::node
