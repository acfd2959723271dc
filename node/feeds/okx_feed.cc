#include "node/feeds/okx_feed.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "node/feeds/json_fields.h"

namespace marketprism::node {

namespace {

using Json = nlohmann::json;

absl::Status Bad(absl::string_view what) { return absl::InvalidArgumentError(absl::StrCat("okx message: ", what)); }

// [["price", "size", "0", "orders"], ...]
absl::Status Levels(const Json& j, const char* field, std::vector<common::PriceLevel>* out) {
  if (!j.contains(field) || !j[field].is_array()) return Bad(absl::StrCat("\"", field, "\" must be a list of levels"));
  for (const Json& l : j[field]) {
    if (!l.is_array() || l.size() < 2 || !l[0].is_string() || !l[1].is_string()) {
      return Bad(absl::StrCat("a level in \"", field, "\" must be [\"price\", \"size\", ...]"));
    }
    out->push_back({l[0].get<std::string>(), l[1].get<std::string>()});
  }
  return absl::OkStatus();
}



}  // namespace

absl::StatusOr<std::string> OkxFeed::StreamName(common::Channel channel, absl::string_view symbol,
                                                 absl::string_view /*interval*/) const {
  switch (channel) {
    case common::Channel::kTrades:
      return absl::StrCat("trades:", symbol);
    case common::Channel::kBook:
      return absl::StrCat("books:", symbol);
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("okx: the collector does not stream \"", common::ChannelName(channel), "\" yet"));
  }
}

std::string OkxFeed::Url(const std::string& base, const std::vector<std::string>&) const {
  return absl::StrCat(base, "/ws/v5/public");
}

std::string OkxFeed::SubscribeMessage(const std::vector<std::string>& streams, bool subscribe, int64_t id) const {
  Json args = Json::array();
  for (const std::string& s : streams) {
    std::pair<std::string, std::string> parts = absl::StrSplit(s, absl::MaxSplits(':', 1));
    args.push_back({{"channel", parts.first}, {"instId", parts.second}});
  }
  return Json{{"id", absl::StrCat(id)}, {"op", subscribe ? "subscribe" : "unsubscribe"}, {"args", args}}.dump();
}

absl::Status OkxFeed::Parse(absl::string_view text, std::vector<FeedEvent>& out) const {
  if (text == "pong") return absl::OkStatus();
  Json j = Json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Bad("not a JSON object");
  if (j.contains("event")) {
    FeedEvent e;
    e.kind = FeedEvent::Kind::kReply;
    std::string event;
    TextField(j, "event", &event);
    if (event == "error") {
      std::string code, msg;
      TextField(j, "code", &code);
      TextField(j, "msg", &msg);
      e.error = absl::StrCat(code, " ", msg);
    }
    out.push_back(std::move(e));
    return absl::OkStatus();
  }
  std::string channel, inst;
  if (!j.contains("arg") || !j["arg"].is_object() || !TextField(j["arg"], "channel", &channel) ||
      !TextField(j["arg"], "instId", &inst) || !j.contains("data") || !j["data"].is_array()) {
    return Bad("neither a push with \"arg\" and \"data\" nor an event");
  }
  std::string stream = absl::StrCat(channel, ":", inst);
  if (channel == "trades") {
    for (const Json& d : j["data"]) {
      FeedEvent e;
      e.kind = FeedEvent::Kind::kTrade;
      e.stream = stream;
      e.symbol = inst;
      std::string side;
      if (!d.is_object() || !IntField(d, "tradeId", &e.trade_id) || !TextField(d, "px", &e.price) ||
          !TextField(d, "sz", &e.quantity) || !TextField(d, "side", &side) || !IntField(d, "ts", &e.event_ms)) {
        return Bad(absl::StrCat(stream, ": a trade needs \"tradeId\", \"px\", \"sz\", \"side\" and \"ts\""));
      }
      e.taker_sold = side == "sell";
      out.push_back(std::move(e));
    }
    return absl::OkStatus();
  }
  if (channel == "books") {
    std::string action;
    TextField(j, "action", &action);
    for (const Json& d : j["data"]) {
      FeedEvent e;
      e.stream = stream;
      e.symbol = inst;
      int64_t seq = 0, prev = -1;
      if (!d.is_object() || !IntField(d, "seqId", &seq) || !IntField(d, "ts", &e.event_ms)) {
        return Bad(absl::StrCat(stream, ": a book push needs \"seqId\" and \"ts\""));
      }
      IntField(d, "prevSeqId", &prev);
      std::vector<common::PriceLevel> bids, asks;
      if (absl::Status s = Levels(d, "bids", &bids); !s.ok()) return s;
      if (absl::Status s = Levels(d, "asks", &asks); !s.ok()) return s;
      if (action == "snapshot") {
        e.kind = FeedEvent::Kind::kSnapshot;
        e.snapshot = {seq, std::move(bids), std::move(asks)};
      } else {
        e.kind = FeedEvent::Kind::kDiff;
        e.diff = {prev + 1, seq, prev, std::move(bids), std::move(asks)};
      }
      out.push_back(std::move(e));
    }
    return absl::OkStatus();
  }
  return Bad(absl::StrCat("channel \"", channel, "\" is not one this feed reads"));
}

common::QueryParams OkxFeed::SnapshotQuery(absl::string_view symbol, int depth) const {
  return {{"instId", std::string(symbol)}, {"sz", absl::StrCat(depth > 0 ? std::min(depth, 400) : 400)}};
}

absl::StatusOr<common::BookSnapshot> OkxFeed::ParseSnapshot(absl::string_view body) const {
  Json j = Json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("data") || !j["data"].is_array() || j["data"].empty()) {
    return Bad("books snapshot: no \"data\"");
  }
  const Json& d = j["data"][0];
  common::BookSnapshot s;
  if (!IntField(d, "seqId", &s.update_id)) return Bad("books snapshot: no \"seqId\" to join the stream at");
  if (absl::Status st = Levels(d, "bids", &s.bids); !st.ok()) return st;
  if (absl::Status st = Levels(d, "asks", &s.asks); !st.ok()) return st;
  return s;
}

}  // namespace marketprism::node
