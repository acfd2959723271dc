#include "node/feeds/binance_feed.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include <nlohmann/json.hpp>

#include "node/feeds/deribit_feed.h"
#include "node/feeds/json_fields.h"
#include "node/feeds/okx_feed.h"
#include "node/feeds/simd_fields.h"

namespace marketprism::node {

namespace {

using Json = nlohmann::json;

absl::Status Bad(absl::string_view what) { return absl::InvalidArgumentError(absl::StrCat("binance message: ", what)); }

// [["price", "qty"], ...]
absl::Status Levels(const Json& j, const char* field, std::vector<common::PriceLevel>* out) {
  if (!j.contains(field) || !j[field].is_array()) return Bad(absl::StrCat("\"", field, "\" must be a list of levels"));
  for (const Json& l : j[field]) {
    if (!l.is_array() || l.size() < 2 || !l[0].is_string() || !l[1].is_string()) {
      return Bad(absl::StrCat("a level in \"", field, "\" must be [\"price\", \"quantity\"]"));
    }
    out->push_back({l[0].get<std::string>(), l[1].get<std::string>()});
  }
  return absl::OkStatus();
}

bool Int(const Json& j, const char* field, int64_t* out) {
  if (!j.contains(field) || !j[field].is_number_integer()) return false;
  *out = j[field].get<int64_t>();
  return true;
}

bool Text(const Json& j, const char* field, std::string* out) {
  if (!j.contains(field) || !j[field].is_string()) return false;
  *out = j[field].get<std::string>();
  return true;
}

// {"u": 400900217, "s": "BNBUSDT", "b": "25.35", "B": "31.21", "a": "25.36", "A": "40.66"}
absl::Status BookTicker(const Json& d, BinanceMessage& m) {
  v1::BookTicker* t = m.record.mutable_book_ticker();
  int64_t u = 0;
  if (!Int(d, "u", &u) || !Text(d, "s", &m.symbol) ||
      !TextFields(d, {{"b", t->mutable_bid()->mutable_price()}, {"B", t->mutable_bid()->mutable_quantity()},
                 {"a", t->mutable_ask()->mutable_price()}, {"A", t->mutable_ask()->mutable_quantity()}})) {
    return Bad(absl::StrCat("stream ", m.stream, ": a book ticker needs \"u\", \"s\", \"b\", \"B\", \"a\" and \"A\""));
  }
  t->set_update_id(u);
  m.kind = BinanceMessage::Kind::kRecord;
  m.record_key = absl::StrCat(u);
  m.sequence = u;
  return absl::OkStatus();
}

absl::Status Ticker(const Json& d, BinanceMessage& m) {
  v1::Ticker* t = m.record.mutable_ticker();
  if (!TextFields(d, {{"c", t->mutable_last_price()},
                 {"o", t->mutable_open_price()},
                 {"h", t->mutable_high_price()},
                 {"l", t->mutable_low_price()},
                 {"v", t->mutable_volume()},
                 {"q", t->mutable_quote_volume()}})) {
    return Bad(absl::StrCat("stream ", m.stream, ": a 24hrTicker needs \"c\", \"o\", \"h\", \"l\", \"v\" and \"q\""));
  }
  // Spot's carries the top of the book; USD-M's carries none of it.
  bool top = d.contains("b") || d.contains("B") || d.contains("a") || d.contains("A");
  if (top && !TextFields(d, {{"b", t->mutable_best_bid()->mutable_price()},
                        {"B", t->mutable_best_bid()->mutable_quantity()},
                        {"a", t->mutable_best_ask()->mutable_price()},
                        {"A", t->mutable_best_ask()->mutable_quantity()}})) {
    return Bad(absl::StrCat("stream ", m.stream, ": a 24hrTicker's top of book needs \"b\", \"B\", \"a\" and \"A\""));
  }
  m.kind = BinanceMessage::Kind::kRecord;
  m.record_key = absl::StrCat(m.event_ms);
  m.sequence = m.event_ms;
  return absl::OkStatus();
}

absl::Status Kline(const Json& d, BinanceMessage& m) {
  if (!d.contains("k") || !d["k"].is_object()) return Bad(absl::StrCat("stream ", m.stream, ": a kline event needs \"k\""));
  const Json& k = d["k"];
  v1::Kline* out = m.record.mutable_kline();
  int64_t open_ms = 0, close_ms = 0;
  if (!Int(k, "t", &open_ms) || !Int(k, "T", &close_ms) || !k.contains("x") || !k["x"].is_boolean() ||
      !TextFields(k, {{"i", out->mutable_interval()},
                 {"o", out->mutable_open()},
                 {"h", out->mutable_high()},
                 {"l", out->mutable_low()},
                 {"c", out->mutable_close()},
                 {"v", out->mutable_volume()}})) {
    return Bad(absl::StrCat("stream ", m.stream,
                            ": a kline needs \"t\", \"T\", \"i\", \"o\", \"h\", \"l\", \"c\", \"v\" and \"x\""));
  }
  out->set_open_time_us(open_ms * 1000);
  out->set_close_time_us(close_ms * 1000);
  out->set_closed(k["x"].get<bool>());
  m.kind = BinanceMessage::Kind::kRecord;
  // A closed candle's key is its own: both copies of a redundant unit see
  // it, whatever the event time.
  m.record_key = out->closed() ? absl::StrCat(open_ms, "/closed") : absl::StrCat(open_ms, "/", m.event_ms);
  m.sequence = m.event_ms;
  return absl::OkStatus();
}

// ParseBinanceHot's reading of one event into `e`.
bool ReadHot(absl::string_view text, FeedEvent& e) {
  enum Field {
    kStream,
    kData,
    kEvent,
    kEventTime,
    kSymbol,
    kTradeId,
    kPrice,
    kQuantity,
    kTradeTime,
    kMaker,
    kFirst,
    kLast,
    kBids,
    kAsks,
    kBidLevels,
    kAskLevels,
    kPrevious,
    kAggId
  };
  uint32_t seen = 0;
  std::string_view event;
  int64_t trade_ms = 0;
  int64_t agg_id = 0;
  auto data = [&](std::string_view key, simd::od::value v) {
    auto field = [&](int bit, bool ok) { return simd::FirstTime(&seen, bit) && ok; };
    if (key == "pu") return field(kPrevious, simd::Int(v, &e.diff.prev));  // USD-M's previous u
    if (key.size() != 1) return simd::Skip(v);
    switch (key[0]) {
      case 'e':
        return field(kEvent, v.get_string().get(event) == simdjson::SUCCESS);
      case 'E':
        return field(kEventTime, simd::Int(v, &e.event_ms));
      case 's':
        return field(kSymbol, simd::Text(v, &e.symbol));
      case 't':
        return field(kTradeId, simd::Int(v, &e.trade_id));
      case 'p':
        return field(kPrice, simd::Text(v, &e.price));
      case 'q':
        return field(kQuantity, simd::Text(v, &e.quantity));
      case 'T':
        return field(kTradeTime, simd::Int(v, &trade_ms));
      case 'm':  // the buyer was the maker: the taker sold
        return field(kMaker, simd::Bool(v, &e.taker_sold));
      case 'U':
        return field(kFirst, simd::Int(v, &e.diff.first));
      case 'u':
        return field(kLast, simd::Int(v, &e.diff.last));
      case 'b':
      case 'a': {
        // Levels in a depth update; in other events perhaps something else.
        bool bids = key[0] == 'b';
        simd::od::json_type type;
        if (!simd::FirstTime(&seen, bids ? kBids : kAsks) ||
            v.type().get(type) != simdjson::SUCCESS)
          return false;
        if (!bids && type == simd::od::json_type::number) {  // an aggTrade's id
          seen |= 1u << kAggId;
          return simd::Int(v, &agg_id);
        }
        if (type != simd::od::json_type::array) return simd::Skip(v);
        seen |= 1u << (bids ? kBidLevels : kAskLevels);
        return simd::Levels(v, bids ? &e.diff.bids : &e.diff.asks);
      }
      default:
        return simd::Skip(v);
    }
  };
  simd::od::document doc;
  bool read = simd::ForEachRootField(text, &doc, [&](std::string_view key, simd::od::value v) {
    if (key == "stream") return simd::FirstTime(&seen, kStream) && simd::Text(v, &e.stream);
    if (key == "data") return simd::FirstTime(&seen, kData) && simd::ForEachField(v, data);
    if (key == "id" || key == "result" || key == "error") return false;  // a reply
    return simd::Skip(v);
  });
  auto has = [&](std::initializer_list<int> fields) { return simd::AllSeen(seen, fields); };
  if (!read || !simd::AtEnd(doc) || !has({kStream, kData, kEvent, kEventTime, kSymbol})) {
    return false;
  }
  if (event == "trade" && has({kTradeId, kPrice, kQuantity, kTradeTime, kMaker}) && !has({kAggId})) {
    e.kind = FeedEvent::Kind::kTrade;
    e.event_ms = trade_ms;
    e.diff = {};
    return true;
  }
  if (event == "aggTrade" && has({kAggId, kPrice, kQuantity, kTradeTime, kMaker}) && !has({kTradeId})) {
    e.kind = FeedEvent::Kind::kTrade;  // continuity by the aggregate id
    e.trade_id = agg_id;
    e.event_ms = trade_ms;
    e.diff = {};
    return true;
  }
  if (event == "depthUpdate" && has({kFirst, kLast, kBidLevels, kAskLevels}) && !has({kAggId}) &&
      e.diff.first <= e.diff.last) {
    e.kind = FeedEvent::Kind::kDiff;
    e.trade_id = 0;
    e.price.clear();
    e.quantity.clear();
    e.taker_sold = false;
    return true;
  }
  return false;
}

}  // namespace

bool ParseBinanceHot(absl::string_view text, std::vector<FeedEvent>& out) {
  if (ReadHot(text, out.emplace_back())) return true;
  out.pop_back();
  return false;
}

absl::StatusOr<std::string> BinanceStreamName(common::Channel channel, absl::string_view symbol,
                                              absl::string_view interval, bool usdm) {
  std::string s = absl::AsciiStrToLower(symbol);
  const char* exchange = usdm ? "binance_usdm" : "binance_spot";
  switch (channel) {
    case common::Channel::kTrades:
      return absl::StrCat(s, usdm ? "@aggTrade" : "@trade");
    case common::Channel::kBook:
      return absl::StrCat(s, "@depth@100ms");
    case common::Channel::kBookTicker:
      return absl::StrCat(s, "@bookTicker");
    case common::Channel::kTicker:
      return absl::StrCat(s, "@ticker");
    case common::Channel::kKline:
      if (interval.empty()) return absl::InvalidArgumentError(absl::StrCat(exchange, ": a kline stream needs an interval"));
      return absl::StrCat(s, "@kline_", interval);
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(exchange, ": \"", common::ChannelName(channel), "\" is not a stream"));
  }
}

absl::StatusOr<BinanceMessage> ParseBinanceMessage(absl::string_view text) {
  Json j = Json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Bad("not a JSON object");
  BinanceMessage m;
  if (j.contains("id") && (j.contains("result") || j.contains("error"))) {
    m.kind = BinanceMessage::Kind::kReply;
    Int(j, "id", &m.reply_id);
    if (j.contains("error") && !j["error"].is_null()) m.error = j["error"].dump();
    return m;
  }
  if (!Text(j, "stream", &m.stream) || !j.contains("data") || !j["data"].is_object()) {
    return Bad("neither a combined-stream event nor a reply");
  }
  const Json& d = j["data"];
  std::string event;
  if (!d.contains("e") && d.contains("u")) {
    if (absl::Status s = BookTicker(d, m); !s.ok()) return s;
    return m;
  }
  if (!Text(d, "e", &event) || !Text(d, "s", &m.symbol) || !Int(d, "E", &m.event_ms)) {
    return Bad(absl::StrCat("stream ", m.stream, ": an event needs \"e\", \"s\" and \"E\""));
  }
  if (event == "trade") {
    m.kind = BinanceMessage::Kind::kTrade;
    if (!Int(d, "t", &m.trade_id) || !Text(d, "p", &m.price) || !Text(d, "q", &m.quantity) ||
        !Int(d, "T", &m.trade_ms) || !d.contains("m") || !d["m"].is_boolean()) {
      return Bad(absl::StrCat("stream ", m.stream, ": a trade needs \"t\", \"p\", \"q\", \"T\" and \"m\""));
    }
    m.buyer_is_maker = d["m"].get<bool>();
    return m;
  }
  if (event == "aggTrade") {  // USD-M's trades: continuity by the aggregate id
    m.kind = BinanceMessage::Kind::kTrade;
    if (!Int(d, "a", &m.trade_id) || !Text(d, "p", &m.price) || !Text(d, "q", &m.quantity) ||
        !Int(d, "T", &m.trade_ms) || !d.contains("m") || !d["m"].is_boolean()) {
      return Bad(absl::StrCat("stream ", m.stream, ": an aggTrade needs \"a\", \"p\", \"q\", \"T\" and \"m\""));
    }
    m.buyer_is_maker = d["m"].get<bool>();
    return m;
  }
  if (event == "depthUpdate") {
    m.kind = BinanceMessage::Kind::kDepth;
    if (!Int(d, "U", &m.diff.first) || !Int(d, "u", &m.diff.last) || m.diff.first > m.diff.last) {
      return Bad(absl::StrCat("stream ", m.stream, ": a depth update needs \"U\" <= \"u\""));
    }
    if (d.contains("pu") && !Int(d, "pu", &m.diff.prev)) {
      return Bad(absl::StrCat("stream ", m.stream, ": \"pu\" must be an integer"));
    }
    if (absl::Status s = Levels(d, "b", &m.diff.bids); !s.ok()) return s;
    if (absl::Status s = Levels(d, "a", &m.diff.asks); !s.ok()) return s;
    return m;
  }
  if (event == "bookTicker") {  // USD-M's, with its event time
    if (absl::Status s = BookTicker(d, m); !s.ok()) return s;
    return m;
  }
  absl::Status s = event == "24hrTicker" ? Ticker(d, m)
                   : event == "kline"    ? Kline(d, m)
                                         : Bad(absl::StrCat("stream ", m.stream, ": event \"", event,
                                                            "\" is not one this feed reads"));
  if (!s.ok()) return s;
  return m;
}

absl::StatusOr<common::BookSnapshot> ParseBinanceDepthSnapshot(absl::string_view body) {
  Json j = Json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Bad("depth snapshot: not a JSON object");
  common::BookSnapshot s;
  if (!Int(j, "lastUpdateId", &s.update_id)) return Bad("depth snapshot: no \"lastUpdateId\"");
  if (absl::Status st = Levels(j, "bids", &s.bids); !st.ok()) return st;
  if (absl::Status st = Levels(j, "asks", &s.asks); !st.ok()) return st;
  return s;
}

std::string BinanceFeed::Url(const std::string& base, const std::vector<std::string>& streams) const {
  return absl::StrCat(base, "/stream?streams=", absl::StrJoin(streams, "/"));
}

std::string BinanceFeed::SubscribeMessage(const std::vector<std::string>& streams, bool subscribe, int64_t id) const {
  return Json{{"method", subscribe ? "SUBSCRIBE" : "UNSUBSCRIBE"}, {"params", streams}, {"id", id}}.dump();
}

absl::Status BinanceFeed::Parse(absl::string_view text, std::vector<FeedEvent>& out) const {
  if (parser_ == JsonParser::kSimdjson && ParseBinanceHot(text, out)) return absl::OkStatus();
  absl::StatusOr<BinanceMessage> m = ParseBinanceMessage(text);
  if (!m.ok()) return m.status();
  FeedEvent e;
  e.stream = std::move(m->stream);
  e.symbol = std::move(m->symbol);
  e.event_ms = m->event_ms;
  switch (m->kind) {
    case BinanceMessage::Kind::kReply:
      e.kind = FeedEvent::Kind::kReply;
      e.error = std::move(m->error);
      break;
    case BinanceMessage::Kind::kTrade:
      e.kind = FeedEvent::Kind::kTrade;
      e.trade_id = m->trade_id;
      e.price = std::move(m->price);
      e.quantity = std::move(m->quantity);
      e.taker_sold = m->buyer_is_maker;  // the buyer was the maker: the taker sold
      e.event_ms = m->trade_ms;
      break;
    case BinanceMessage::Kind::kDepth:
      e.kind = FeedEvent::Kind::kDiff;
      e.diff = std::move(m->diff);
      break;
    case BinanceMessage::Kind::kRecord:
      e.kind = FeedEvent::Kind::kRecord;
      e.record = std::move(m->record);
      e.record_key = std::move(m->record_key);
      e.sequence = m->sequence;
      break;
  }
  out.push_back(std::move(e));
  return absl::OkStatus();
}

common::QueryParams BinanceFeed::SnapshotQuery(absl::string_view symbol, int depth) const {
  // USD-M's largest is 1000 too (weight 20; spot's 1000 weighs 50).
  return {{"symbol", std::string(symbol)}, {"limit", absl::StrCat(depth > 0 ? depth : 1000)}};
}

const Feed* FeedFor(absl::string_view exchange, JsonParser parser) {
  static const BinanceFeed* binance[] = {new BinanceFeed(JsonParser::kSimdjson),
                                         new BinanceFeed(JsonParser::kNlohmann)};
  static const BinanceFeed* usdm[] = {new BinanceFeed(JsonParser::kSimdjson, /*usdm=*/true),
                                      new BinanceFeed(JsonParser::kNlohmann, /*usdm=*/true)};
  static const OkxFeed* okx[] = {new OkxFeed(JsonParser::kSimdjson),
                                 new OkxFeed(JsonParser::kNlohmann)};
  static const DeribitFeed* deribit[] = {new DeribitFeed(JsonParser::kSimdjson),
                                         new DeribitFeed(JsonParser::kNlohmann)};
  size_t i = parser == JsonParser::kSimdjson ? 0 : 1;
  if (exchange == "binance_spot") return binance[i];
  if (exchange == "binance_usdm") return usdm[i];
  if (exchange == "okx") return okx[i];
  if (exchange == "deribit") return deribit[i];
  return nullptr;
}

}  // namespace marketprism::node
