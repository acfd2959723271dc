#include "node/feeds/deribit_feed.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/collect/exact_json.h"
#include "node/feeds/json_fields.h"

namespace marketprism::node {

namespace {

using Json = nlohmann::json;

absl::Status Bad(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("deribit message: ", what));
}



bool Number(const Json& j, const char* field, std::string* out) {
  if (!j.contains(field)) return false;
  std::optional<std::string> t = common::NumberText(j[field]);
  if (!t) return false;
  *out = *std::move(t);
  return true;
}

// A change's levels: [action, price, amount], action "new", "change" or
// "delete" (then the level goes: quantity "0").
absl::Status ChangeLevels(const Json& d, const char* field, const std::string& stream,
                          std::vector<common::PriceLevel>* out) {
  if (!d.contains(field) || !d[field].is_array()) {
    return Bad(absl::StrCat(stream, ": \"", field, "\" must be a list of levels"));
  }
  for (const Json& l : d[field]) {
    std::optional<std::string> price, amount;
    if (l.is_array() && l.size() == 3 && l[0].is_string()) {
      price = common::NumberText(l[1]);
      amount = common::NumberText(l[2]);
    }
    const std::string action = l.is_array() && !l.empty() && l[0].is_string() ? l[0].get<std::string>() : "";
    if (!price || !amount || (action != "new" && action != "change" && action != "delete")) {
      return Bad(absl::StrCat(stream, ": a level in \"", field, "\" must be [\"new\"|\"change\"|\"delete\", price, amount]"));
    }
    out->push_back({*std::move(price), action == "delete" ? "0" : *std::move(amount)});
  }
  return absl::OkStatus();
}

// A REST book's levels: [price, amount].
absl::Status PlainLevels(const Json& d, const char* field, std::vector<common::PriceLevel>* out) {
  if (!d.contains(field) || !d[field].is_array()) return Bad(absl::StrCat("order book: no \"", field, "\" list"));
  for (const Json& l : d[field]) {
    std::optional<std::string> price, amount;
    if (l.is_array() && l.size() == 2) {
      price = common::NumberText(l[0]);
      amount = common::NumberText(l[1]);
    }
    if (!price || !amount) return Bad(absl::StrCat("order book: a level in \"", field, "\" must be [price, amount]"));
    out->push_back({*std::move(price), *std::move(amount)});
  }
  return absl::OkStatus();
}

std::string Call(int64_t id, const char* method, Json params) {
  return Json{{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", std::move(params)}}.dump();
}

}  // namespace

absl::StatusOr<std::string> DeribitFeed::StreamName(common::Channel channel, absl::string_view symbol,
                                                 absl::string_view /*interval*/) const {
  switch (channel) {
    case common::Channel::kTrades:
      return absl::StrCat("trades.", symbol, ".100ms");
    case common::Channel::kBook:
      return absl::StrCat("book.", symbol, ".100ms");
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("deribit: the collector does not stream \"", common::ChannelName(channel), "\" yet"));
  }
}

std::string DeribitFeed::Url(const std::string& base, const std::vector<std::string>&) const {
  return absl::StrCat(base, "/ws/api/v2");
}

std::string DeribitFeed::SubscribeMessage(const std::vector<std::string>& streams, bool subscribe, int64_t id) const {
  return Call(id, subscribe ? "public/subscribe" : "public/unsubscribe", Json{{"channels", streams}});
}

std::vector<std::string> DeribitFeed::OpenMessages(int64_t id) const {
  return {Call(id, "public/set_heartbeat", Json{{"interval", kHeartbeatSeconds}})};
}

std::optional<std::string> DeribitFeed::ChargedPath(absl::string_view text) const {
  Json j = Json::parse(text.begin(), text.end(), nullptr, false);
  if (!j.is_object() || !j.contains("method") || !j["method"].is_string()) return std::nullopt;
  return absl::StrCat("/api/v2/", j["method"].get<std::string>());
}

std::optional<std::string> DeribitFeed::Heartbeat() const {
  return Call(0, "public/test", Json::object());
}

absl::Status DeribitFeed::Parse(absl::string_view text, std::vector<FeedEvent>& out) const {
  std::string error;
  std::optional<Json> parsed = common::ParseExactJson(text, &error);
  if (!parsed) return Bad(error);
  const Json& j = *parsed;
  if (!j.is_object()) return Bad("not a JSON object");
  if (j.contains("result") || j.contains("error")) {
    FeedEvent e;
    e.kind = FeedEvent::Kind::kReply;
    if (j.contains("error")) {
      const Json& err = j["error"];
      std::string code = err.is_object() && err.contains("code") ? err["code"].dump() : "?";
      std::string msg;
      if (err.is_object()) TextField(err, "message", &msg);
      e.error = absl::StrCat(code, " ", msg);
    }
    out.push_back(std::move(e));
    return absl::OkStatus();
  }
  std::string method;
  if (!TextField(j, "method", &method) || !j.contains("params") || !j["params"].is_object()) {
    return Bad("neither a reply (\"result\"/\"error\") nor a notification (\"method\", \"params\")");
  }
  const Json& params = j["params"];
  if (method == "heartbeat") {
    std::string type;
    TextField(params, "type", &type);
    if (type == "test_request") {
      FeedEvent e;
      e.kind = FeedEvent::Kind::kAnswer;
      e.answer = Call(0, "public/test", Json::object());
      out.push_back(std::move(e));
    }
    return absl::OkStatus();
  }
  if (method != "subscription") return Bad(absl::StrCat("notification \"", method, "\" is not one this feed reads"));
  std::string channel;
  if (!TextField(params, "channel", &channel) || !params.contains("data")) {
    return Bad("a subscription notification needs \"channel\" and \"data\"");
  }
  const Json& data = params["data"];
  if (channel.rfind("trades.", 0) == 0) {
    if (!data.is_array()) return Bad(absl::StrCat(channel, ": \"data\" must be a list of trades"));
    for (const Json& d : data) {
      FeedEvent e;
      e.kind = FeedEvent::Kind::kTrade;
      e.stream = channel;
      std::string direction;
      if (!d.is_object() || !IntField(d, "trade_seq", &e.trade_id) || !TextField(d, "trade_id", &e.trade_id_text) ||
          !Number(d, "price", &e.price) || !Number(d, "amount", &e.quantity) || !TextField(d, "direction", &direction) ||
          !IntField(d, "timestamp", &e.event_ms) || !TextField(d, "instrument_name", &e.symbol)) {
        return Bad(absl::StrCat(channel, ": a trade needs \"trade_seq\", \"trade_id\", \"price\", \"amount\", "
                                         "\"direction\", \"timestamp\" and \"instrument_name\""));
      }
      e.taker_sold = direction == "sell";
      out.push_back(std::move(e));
    }
    return absl::OkStatus();
  }
  if (channel.rfind("book.", 0) == 0) {
    FeedEvent e;
    e.stream = channel;
    std::string type;
    int64_t change = 0;
    if (!data.is_object() || !TextField(data, "type", &type) || !IntField(data, "change_id", &change) ||
        !IntField(data, "timestamp", &e.event_ms) || !TextField(data, "instrument_name", &e.symbol)) {
      return Bad(absl::StrCat(channel, ": a book message needs \"type\", \"change_id\", \"timestamp\" and "
                                       "\"instrument_name\""));
    }
    std::vector<common::PriceLevel> bids, asks;
    if (absl::Status s = ChangeLevels(data, "bids", channel, &bids); !s.ok()) return s;
    if (absl::Status s = ChangeLevels(data, "asks", channel, &asks); !s.ok()) return s;
    if (type == "snapshot") {
      e.kind = FeedEvent::Kind::kSnapshot;
      e.snapshot = {change, std::move(bids), std::move(asks)};
    } else if (type == "change") {
      int64_t prev = 0;
      if (!IntField(data, "prev_change_id", &prev)) return Bad(absl::StrCat(channel, ": a change needs \"prev_change_id\""));
      e.kind = FeedEvent::Kind::kDiff;
      e.diff = {prev + 1, change, prev, std::move(bids), std::move(asks)};
    } else {
      return Bad(absl::StrCat(channel, ": book message type \"", type, "\" is neither snapshot nor change"));
    }
    out.push_back(std::move(e));
    return absl::OkStatus();
  }
  return Bad(absl::StrCat("channel \"", channel, "\" is not one this feed reads"));
}

common::QueryParams DeribitFeed::SnapshotQuery(absl::string_view symbol, int depth) const {
  int d = 10000;
  for (int allowed : {1, 5, 10, 20, 50, 100, 1000, 10000}) {
    if (depth > 0 && allowed >= depth) {
      d = allowed;
      break;
    }
  }
  return {{"instrument_name", std::string(symbol)}, {"depth", absl::StrCat(d)}};
}

absl::StatusOr<common::BookSnapshot> DeribitFeed::ParseSnapshot(absl::string_view body) const {
  std::string error;
  std::optional<Json> j = common::ParseExactJson(body, &error);
  if (!j) return Bad(absl::StrCat("order book: ", error));
  if (!j->is_object() || !j->contains("result") || !(*j)["result"].is_object()) return Bad("order book: no \"result\"");
  const Json& r = (*j)["result"];
  common::BookSnapshot s;
  if (!IntField(r, "change_id", &s.update_id)) return Bad("order book: no \"change_id\" to join the stream at");
  if (absl::Status st = PlainLevels(r, "bids", &s.bids); !st.ok()) return st;
  if (absl::Status st = PlainLevels(r, "asks", &s.asks); !st.ok()) return st;
  return s;
}

}  // namespace marketprism::node
