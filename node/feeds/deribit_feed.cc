#include "node/feeds/deribit_feed.h"

#include <algorithm>
#include <initializer_list>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include <nlohmann/json.hpp>

#include "common/collect/exact_json.h"
#include "node/feeds/json_fields.h"
#include "node/feeds/simd_fields.h"

namespace marketprism::node {

namespace {

using Json = nlohmann::json;

absl::Status Bad(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("deribit message: ", what));
}

// Our kline intervals and Deribit's chart resolutions (minutes, or "1D").
constexpr struct {
  absl::string_view interval, resolution;
  int64_t ms;
} kResolutions[] = {{"1m", "1", 60'000},         {"3m", "3", 180'000},        {"5m", "5", 300'000},
                    {"15m", "15", 900'000},      {"30m", "30", 1'800'000},    {"1h", "60", 3'600'000},
                    {"2h", "120", 7'200'000},    {"6h", "360", 21'600'000},   {"12h", "720", 43'200'000},
                    {"1d", "1D", 86'400'000}};

constexpr absl::string_view kChart = "chart.trades.";

bool Number(const Json& j, const char* field, std::string* out) {
  if (!j.contains(field)) return false;
  std::optional<std::string> t = common::NumberText(j[field]);
  if (!t) return false;
  *out = *std::move(t);
  return true;
}

// The number fields named into their outputs, as the exchange wrote them.
bool Numbers(const Json& j, std::initializer_list<std::pair<const char*, std::string*>> fields) {
  for (const auto& [name, out] : fields) {
    if (!Number(j, name, out)) return false;
  }
  return true;
}

// quote.*: {"timestamp", "instrument_name", "best_bid_price", "best_bid_amount", "best_ask_price", "best_ask_amount"}
absl::Status Quote(const Json& d, const std::string& channel, FeedEvent& e) {
  v1::BookTicker* t = e.record.mutable_book_ticker();
  if (!d.is_object() || !IntField(d, "timestamp", &e.event_ms) || !TextField(d, "instrument_name", &e.symbol) ||
      !Numbers(d, {{"best_bid_price", t->mutable_bid()->mutable_price()},
                   {"best_bid_amount", t->mutable_bid()->mutable_quantity()},
                   {"best_ask_price", t->mutable_ask()->mutable_price()},
                   {"best_ask_amount", t->mutable_ask()->mutable_quantity()}})) {
    return Bad(absl::StrCat(channel, ": a quote needs \"timestamp\", \"instrument_name\", \"best_bid_price\", "
                            "\"best_bid_amount\", \"best_ask_price\" and \"best_ask_amount\""));
  }
  // Deribit numbers no quote: its time orders them.
  t->set_update_id(e.event_ms);
  e.record_key = absl::StrCat(e.event_ms);
  e.sequence = e.event_ms;
  return absl::OkStatus();
}

// ticker.*: the public/ticker object. It has no 24 h open price (only the
// change in percent), so the record's open_price stays empty.
absl::Status Ticker(const Json& d, const std::string& channel, FeedEvent& e) {
  v1::Ticker* t = e.record.mutable_ticker();
  if (!d.is_object() || !IntField(d, "timestamp", &e.event_ms) || !TextField(d, "instrument_name", &e.symbol) ||
      !d.contains("stats") || !d["stats"].is_object() ||
      !Numbers(d, {{"last_price", t->mutable_last_price()},
                   {"best_bid_price", t->mutable_best_bid()->mutable_price()},
                   {"best_bid_amount", t->mutable_best_bid()->mutable_quantity()},
                   {"best_ask_price", t->mutable_best_ask()->mutable_price()},
                   {"best_ask_amount", t->mutable_best_ask()->mutable_quantity()}}) ||
      !Numbers(d["stats"], {{"high", t->mutable_high_price()},
                            {"low", t->mutable_low_price()},
                            {"volume", t->mutable_volume()},
                            {"volume_usd", t->mutable_quote_volume()}})) {
    return Bad(absl::StrCat(channel, ": a ticker needs \"timestamp\", \"instrument_name\", \"last_price\", the best "
                            "bid and ask, and \"stats\" with \"high\", \"low\", \"volume\" and \"volume_usd\""));
  }
  e.record_key = absl::StrCat(e.event_ms);
  e.sequence = e.event_ms;
  return absl::OkStatus();
}

// chart.trades.<instrument>.<resolution>: {"tick", "open", "high", "low",
// "close", "volume", "cost"}: the candle so far. Nothing in it says the
// candle is over; a later tick does (FeedEvent::final_when_superseded).
absl::Status Chart(const Json& d, const std::string& channel, FeedEvent& e) {
  absl::string_view rest = absl::string_view(channel).substr(kChart.size());
  size_t dot = rest.rfind('.');
  const auto* res = std::find_if(std::begin(kResolutions), std::end(kResolutions), [&](const auto& r) {
    return dot != absl::string_view::npos && r.resolution == rest.substr(dot + 1);
  });
  if (res == std::end(kResolutions)) return Bad(absl::StrCat(channel, ": not a resolution this feed reads"));
  v1::Kline* k = e.record.mutable_kline();
  int64_t open_ms = 0;
  if (!d.is_object() || !IntField(d, "tick", &open_ms) ||
      !Numbers(d, {{"open", k->mutable_open()},
                   {"high", k->mutable_high()},
                   {"low", k->mutable_low()},
                   {"close", k->mutable_close()},
                   {"volume", k->mutable_volume()}})) {
    return Bad(absl::StrCat(channel, ": a candle needs \"tick\", \"open\", \"high\", \"low\", \"close\" and \"volume\""));
  }
  e.symbol = std::string(rest.substr(0, dot));
  k->set_interval(std::string(res->interval));
  k->set_open_time_us(open_ms * 1000);
  k->set_close_time_us((open_ms + res->ms - 1) * 1000);
  // An update is told apart by its volume and close: the volume only grows,
  // but a filling sample repeats the volume with another close.
  e.record_key = absl::StrCat(open_ms, "/", k->volume(), "/", k->close());
  e.sequence = open_ms;
  e.final_when_superseded = true;
  return absl::OkStatus();
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

// ChangeLevels through simdjson: [action, price, amount] levels appended.
bool FastChangeLevels(simd::od::value v, std::vector<common::PriceLevel>* out) {
  simd::od::array levels;
  if (v.get_array().get(levels) != simdjson::SUCCESS) return false;
  for (auto level : levels) {
    simd::od::array fields;
    if (level.get_array().get(fields) != simdjson::SUCCESS) return false;
    common::PriceLevel& l = out->emplace_back();
    std::string_view action;
    int i = 0;
    for (auto field : fields) {
      simd::od::value x;
      if (field.get(x) != simdjson::SUCCESS) return false;
      bool ok = i == 0   ? x.get_string().get(action) == simdjson::SUCCESS
                : i == 1 ? simd::NumberText(x, &l.price)
                : i == 2 ? simd::NumberText(x, &l.quantity)
                         : false;
      if (!ok) return false;
      ++i;
    }
    if (i != 3 || (action != "new" && action != "change" && action != "delete")) return false;
    if (action == "delete") l.quantity = "0";
  }
  return true;
}

// A trade in a trades.* notification's data, through simdjson.
bool FastTrade(simd::od::value v, FeedEvent& e) {
  enum Field { kSeq, kId, kPrice, kAmount, kDirection, kTime, kInstrument };
  uint32_t seen = 0;
  std::string_view direction;
  bool read = simd::ForEachField(v, [&](std::string_view key, simd::od::value x) {
    auto field = [&](int bit, bool ok) { return simd::FirstTime(&seen, bit) && ok; };
    if (key == "trade_seq") return field(kSeq, simd::IntOrText(x, &e.trade_id));
    if (key == "trade_id") return field(kId, simd::Text(x, &e.trade_id_text));
    if (key == "price") return field(kPrice, simd::NumberText(x, &e.price));
    if (key == "amount") return field(kAmount, simd::NumberText(x, &e.quantity));
    if (key == "direction") {
      return field(kDirection, x.get_string().get(direction) == simdjson::SUCCESS);
    }
    if (key == "timestamp") return field(kTime, simd::IntOrText(x, &e.event_ms));
    if (key == "instrument_name") return field(kInstrument, simd::Text(x, &e.symbol));
    return simd::Skip(x);
  });
  e.kind = FeedEvent::Kind::kTrade;
  e.taker_sold = direction == "sell";
  return read && simd::AllSeen(seen, {kSeq, kId, kPrice, kAmount, kDirection, kTime, kInstrument});
}

// A book.* notification's data, through simdjson.
bool FastBook(simd::od::value v, FeedEvent& e) {
  enum Field { kType, kChange, kPrev, kTime, kInstrument, kBids, kAsks };
  uint32_t seen = 0;
  std::string_view type;
  int64_t change = 0, prev = 0;
  std::vector<common::PriceLevel> bids, asks;
  bool read = simd::ForEachField(v, [&](std::string_view key, simd::od::value x) {
    auto field = [&](int bit, bool ok) { return simd::FirstTime(&seen, bit) && ok; };
    if (key == "type") {
      return field(kType, x.get_string().get(type) == simdjson::SUCCESS);
    }
    if (key == "change_id") return field(kChange, simd::IntOrText(x, &change));
    if (key == "prev_change_id") return field(kPrev, simd::IntOrText(x, &prev));
    if (key == "timestamp") return field(kTime, simd::IntOrText(x, &e.event_ms));
    if (key == "instrument_name") return field(kInstrument, simd::Text(x, &e.symbol));
    if (key == "bids") return field(kBids, FastChangeLevels(x, &bids));
    if (key == "asks") return field(kAsks, FastChangeLevels(x, &asks));
    return simd::Skip(x);
  });
  if (!read || !simd::AllSeen(seen, {kType, kChange, kTime, kInstrument, kBids, kAsks})) {
    return false;
  }
  if (type == "snapshot") {
    e.kind = FeedEvent::Kind::kSnapshot;
    e.snapshot = {change, std::move(bids), std::move(asks)};
    return true;
  }
  if (type != "change" || !(seen & (1u << kPrev))) return false;
  e.kind = FeedEvent::Kind::kDiff;
  e.diff = {prev + 1, change, prev, std::move(bids), std::move(asks)};
  return true;
}

}  // namespace

bool ParseDeribitHot(absl::string_view text, std::vector<FeedEvent>& out) {
  enum Field { kMethod, kParams, kChannel, kData };
  size_t start = out.size();
  uint32_t seen = 0;
  std::string_view method;
  std::string channel;
  auto data = [&](simd::od::value v) {
    // Read once the channel is known, as Deribit sends it.
    if (!(seen & (1u << kChannel))) return false;
    if (absl::StartsWith(channel, "trades.")) {
      simd::od::array trades;
      if (v.get_array().get(trades) != simdjson::SUCCESS) return false;
      for (auto trade : trades) {
        simd::od::value x;
        FeedEvent& e = out.emplace_back();
        e.stream = channel;
        if (trade.get(x) != simdjson::SUCCESS || !FastTrade(x, e)) return false;
      }
      return true;
    }
    if (!absl::StartsWith(channel, "book.")) return false;
    FeedEvent& e = out.emplace_back();
    e.stream = channel;
    return FastBook(v, e);
  };
  simd::od::document doc;
  bool read = simd::ForEachRootField(text, &doc, [&](std::string_view key, simd::od::value v) {
    if (key == "method") {
      return simd::FirstTime(&seen, kMethod) && v.get_string().get(method) == simdjson::SUCCESS;
    }
    if (key == "params") {
      return simd::FirstTime(&seen, kParams) &&
             simd::ForEachField(v, [&](std::string_view k, simd::od::value x) {
               if (k == "channel") {
                 return simd::FirstTime(&seen, kChannel) && simd::Text(x, &channel);
               }
               if (k == "data") return simd::FirstTime(&seen, kData) && data(x);
               return simd::Skip(x);
             });
    }
    if (key == "result" || key == "error") return false;  // a reply
    return simd::Skip(v);
  });
  if (!read || !simd::AtEnd(doc) || method != "subscription" || !(seen & (1u << kData))) {
    out.resize(start);
    return false;
  }
  return true;
}

absl::StatusOr<std::string> DeribitFeed::StreamName(common::Channel channel, absl::string_view symbol,
                                                 absl::string_view interval) const {
  switch (channel) {
    case common::Channel::kTrades:
      return absl::StrCat("trades.", symbol, ".100ms");
    case common::Channel::kBook:
      return absl::StrCat("book.", symbol, ".100ms");
    case common::Channel::kBookTicker:
      return absl::StrCat("quote.", symbol);
    case common::Channel::kTicker:
      return absl::StrCat("ticker.", symbol, ".100ms");
    case common::Channel::kKline:
      for (const auto& r : kResolutions) {
        if (r.interval == interval) return absl::StrCat(kChart, symbol, ".", r.resolution);
      }
      return absl::InvalidArgumentError(absl::StrCat("deribit: no chart resolution for the interval \"", interval, "\""));
    default:
      return absl::InvalidArgumentError(absl::StrCat("deribit: \"", common::ChannelName(channel), "\" is not a stream"));
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
  if (parser_ == JsonParser::kSimdjson && ParseDeribitHot(text, out)) return absl::OkStatus();
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
    absl::Status first_bad;  // a bad trade costs only itself (Feed::Parse)
    for (const Json& d : data) {
      FeedEvent e;
      e.kind = FeedEvent::Kind::kTrade;
      e.stream = channel;
      std::string direction;
      if (!d.is_object() || !IntField(d, "trade_seq", &e.trade_id) || !TextField(d, "trade_id", &e.trade_id_text) ||
          !Number(d, "price", &e.price) || !Number(d, "amount", &e.quantity) || !TextField(d, "direction", &direction) ||
          !IntField(d, "timestamp", &e.event_ms) || !TextField(d, "instrument_name", &e.symbol)) {
        first_bad.Update(Bad(absl::StrCat(channel, ": a trade needs \"trade_seq\", \"trade_id\", \"price\", "
                                                   "\"amount\", \"direction\", \"timestamp\" and \"instrument_name\"")));
        continue;
      }
      e.taker_sold = direction == "sell";
      out.push_back(std::move(e));
    }
    return first_bad;
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
  absl::Status (*record)(const Json&, const std::string&, FeedEvent&) =
      absl::StartsWith(channel, "quote.")    ? Quote
      : absl::StartsWith(channel, "ticker.") ? Ticker
      : absl::StartsWith(channel, kChart)    ? Chart
                                             : nullptr;
  if (record == nullptr) return Bad(absl::StrCat("channel \"", channel, "\" is not one this feed reads"));
  FeedEvent e;
  e.kind = FeedEvent::Kind::kRecord;
  e.stream = channel;
  if (absl::Status s = record(data, channel, e); !s.ok()) return s;
  out.push_back(std::move(e));
  return absl::OkStatus();
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
