#include "node/feeds/okx_feed.h"

#include <algorithm>
#include <iterator>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include <nlohmann/json.hpp>

#include "node/feeds/json_fields.h"
#include "node/feeds/simd_fields.h"

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



// Our kline intervals as OKX's candle bars: 6h and longer aligned to UTC
// like every other exchange's ("6Hutc"), not to Hong Kong time.
constexpr struct {
  absl::string_view interval;
  absl::string_view bar;
  int64_t ms;
} kBars[] = {{"1m", "1m", 60'000},           {"3m", "3m", 180'000},          {"5m", "5m", 300'000},
             {"15m", "15m", 900'000},        {"30m", "30m", 1'800'000},      {"1h", "1H", 3'600'000},
             {"2h", "2H", 7'200'000},        {"4h", "4H", 14'400'000},       {"6h", "6Hutc", 21'600'000},
             {"12h", "12Hutc", 43'200'000},  {"1d", "1Dutc", 86'400'000},    {"1w", "1Wutc", 604'800'000}};

constexpr absl::string_view kCandle = "candle";

// bbo-tbt: {"asks": [["px","sz","0","n"]], "bids": [...], "ts": "...", "seqId": N}
absl::Status BookTicker(const Json& d, const std::string& stream, FeedEvent& e) {
  std::vector<common::PriceLevel> bids, asks;
  int64_t seq = 0;
  if (!d.is_object() || !IntField(d, "seqId", &seq) || !IntField(d, "ts", &e.event_ms)) {
    return Bad(absl::StrCat(stream, ": a bbo-tbt push needs \"seqId\" and \"ts\""));
  }
  if (absl::Status s = Levels(d, "bids", &bids); !s.ok()) return s;
  if (absl::Status s = Levels(d, "asks", &asks); !s.ok()) return s;
  if (bids.empty() || asks.empty()) return Bad(absl::StrCat(stream, ": a bbo-tbt push needs a bid and an ask"));
  v1::BookTicker* t = e.record.mutable_book_ticker();
  t->set_update_id(seq);
  t->mutable_bid()->set_price(std::move(bids[0].price));
  t->mutable_bid()->set_quantity(std::move(bids[0].quantity));
  t->mutable_ask()->set_price(std::move(asks[0].price));
  t->mutable_ask()->set_quantity(std::move(asks[0].quantity));
  e.record_key = absl::StrCat(seq);
  e.sequence = seq;
  return absl::OkStatus();
}

absl::Status Ticker(const Json& d, const std::string& stream, FeedEvent& e) {
  v1::Ticker* t = e.record.mutable_ticker();
  if (!d.is_object() || !IntField(d, "ts", &e.event_ms) ||
      !TextFields(d, {{"last", t->mutable_last_price()},
                      {"open24h", t->mutable_open_price()},
                      {"high24h", t->mutable_high_price()},
                      {"low24h", t->mutable_low_price()},
                      {"vol24h", t->mutable_volume()},
                      {"volCcy24h", t->mutable_quote_volume()},
                      {"bidPx", t->mutable_best_bid()->mutable_price()},
                      {"bidSz", t->mutable_best_bid()->mutable_quantity()},
                      {"askPx", t->mutable_best_ask()->mutable_price()},
                      {"askSz", t->mutable_best_ask()->mutable_quantity()}})) {
    return Bad(absl::StrCat(stream, ": a ticker needs \"last\", \"open24h\", \"high24h\", \"low24h\", \"vol24h\", "
                            "\"volCcy24h\", \"bidPx\", \"bidSz\", \"askPx\", \"askSz\" and \"ts\""));
  }
  e.record_key = absl::StrCat(e.event_ms);
  e.sequence = e.event_ms;
  return absl::OkStatus();
}

// candle<bar>: ["ts", "o", "h", "l", "c", "vol", "volCcy", "volCcyQuote", "confirm"]
absl::Status Candle(const Json& row, const std::string& stream, absl::string_view interval, int64_t bar_ms,
                    FeedEvent& e) {
  bool strings = row.is_array() && row.size() >= 9;
  for (size_t i = 0; strings && i < 9; ++i) strings = row[i].is_string();
  int64_t open_ms = 0;
  if (!strings || !absl::SimpleAtoi(row[0].get<std::string>(), &open_ms)) {
    return Bad(absl::StrCat(stream, ": a candle must be [\"ts\", \"o\", \"h\", \"l\", \"c\", \"vol\", \"volCcy\", "
                            "\"volCcyQuote\", \"confirm\"]"));
  }
  v1::Kline* k = e.record.mutable_kline();
  k->set_interval(std::string(interval));
  k->set_open_time_us(open_ms * 1000);
  k->set_close_time_us((open_ms + bar_ms - 1) * 1000);
  k->set_open(row[1].get<std::string>());
  k->set_high(row[2].get<std::string>());
  k->set_low(row[3].get<std::string>());
  k->set_close(row[4].get<std::string>());
  k->set_volume(row[5].get<std::string>());
  k->set_closed(row[8].get<std::string>() == "1");
  // OKX sends no event time: an open candle's update is told apart by its
  // volume, which only grows; a closed candle's key is the same on every copy.
  e.record_key = k->closed() ? absl::StrCat(open_ms, "/closed") : absl::StrCat(open_ms, "/", k->volume());
  e.sequence = open_ms;
  return absl::OkStatus();
}

// One trades or books push's item read through simdjson into `e`.
bool FastItem(simd::od::value v, bool trades, FeedEvent& e) {
  enum Field { kTradeId, kPrice, kSize, kSide, kTs, kSeq, kPrev, kBids, kAsks };
  uint32_t seen = 0;
  std::string_view side;
  bool read = simd::ForEachField(v, [&](std::string_view key, simd::od::value x) {
    auto field = [&](int bit, bool ok) { return simd::FirstTime(&seen, bit) && ok; };
    if (key == "ts") return field(kTs, simd::IntOrText(x, &e.event_ms));
    if (trades) {
      if (key == "tradeId") return field(kTradeId, simd::IntOrText(x, &e.trade_id));
      if (key == "px") return field(kPrice, simd::Text(x, &e.price));
      if (key == "sz") return field(kSize, simd::Text(x, &e.quantity));
      if (key == "side") return field(kSide, x.get_string().get(side) == simdjson::SUCCESS);
    } else {
      if (key == "seqId") return field(kSeq, simd::IntOrText(x, &e.diff.last));
      if (key == "prevSeqId") return field(kPrev, simd::IntOrText(x, &e.diff.prev));
      if (key == "bids") return field(kBids, simd::Levels(x, &e.diff.bids));
      if (key == "asks") return field(kAsks, simd::Levels(x, &e.diff.asks));
    }
    return simd::Skip(x);
  });
  if (!read) return false;
  if (trades) {
    e.kind = FeedEvent::Kind::kTrade;
    e.taker_sold = side == "sell";
    return simd::AllSeen(seen, {kTradeId, kPrice, kSize, kSide, kTs});
  }
  e.kind = FeedEvent::Kind::kDiff;
  e.diff.first = e.diff.prev + 1;
  return simd::AllSeen(seen, {kSeq, kTs, kBids, kAsks});
}

}  // namespace

bool ParseOkxHot(absl::string_view text, std::vector<FeedEvent>& out) {
  enum Field { kArg, kChannel, kInst, kAction, kData };
  size_t start = out.size();
  uint32_t seen = 0;
  std::string channel, inst;
  std::string_view action;
  simd::od::document doc;
  bool read = simd::ForEachRootField(text, &doc, [&](std::string_view key, simd::od::value v) {
    if (key == "arg") {
      return simd::FirstTime(&seen, kArg) &&
             simd::ForEachField(v, [&](std::string_view k, simd::od::value x) {
               if (k == "channel") {
                 return simd::FirstTime(&seen, kChannel) && simd::Text(x, &channel);
               }
               if (k == "instId") return simd::FirstTime(&seen, kInst) && simd::Text(x, &inst);
               return simd::Skip(x);
             });
    }
    if (key == "action") {
      return simd::FirstTime(&seen, kAction) && v.get_string().get(action) == simdjson::SUCCESS;
    }
    if (key == "data") {
      // Read once the channel is known, as OKX sends it.
      bool trades = channel == "trades";
      simd::od::array items;
      if (!simd::FirstTime(&seen, kData) || !simd::AllSeen(seen, {kChannel, kInst}) ||
          (!trades && channel != "books") || v.get_array().get(items) != simdjson::SUCCESS) {
        return false;
      }
      std::string stream = absl::StrCat(channel, ":", inst);
      for (auto item : items) {
        simd::od::value x;
        FeedEvent& e = out.emplace_back();
        e.stream = stream;
        e.symbol = inst;
        if (item.get(x) != simdjson::SUCCESS || !FastItem(x, trades, e)) return false;
      }
      return true;
    }
    if (key == "event") return false;  // a reply
    return simd::Skip(v);
  });
  if (!read || !simd::AtEnd(doc) || !(seen & (1u << kData))) {
    out.resize(start);
    return false;
  }
  if (action == "snapshot") {
    for (size_t i = start; i < out.size(); ++i) {
      FeedEvent& e = out[i];
      e.kind = FeedEvent::Kind::kSnapshot;
      e.snapshot = {e.diff.last, std::move(e.diff.bids), std::move(e.diff.asks)};
      e.diff = {};
    }
  }
  return true;
}

absl::StatusOr<std::string> OkxFeed::StreamName(common::Channel channel, absl::string_view symbol,
                                                 absl::string_view interval) const {
  switch (channel) {
    case common::Channel::kTrades:
      return absl::StrCat("trades:", symbol);
    case common::Channel::kBook:
      return absl::StrCat("books:", symbol);
    case common::Channel::kBookTicker:
      return absl::StrCat("bbo-tbt:", symbol);
    case common::Channel::kTicker:
      return absl::StrCat("tickers:", symbol);
    case common::Channel::kKline:
      for (const auto& b : kBars) {
        if (b.interval == interval) return absl::StrCat(kCandle, b.bar, ":", symbol);
      }
      return absl::InvalidArgumentError(absl::StrCat("okx: no candle bar for the interval \"", interval, "\""));
    default:
      return absl::InvalidArgumentError(absl::StrCat("okx: \"", common::ChannelName(channel), "\" is not a stream"));
  }
}

std::string OkxFeed::Url(const std::string& base, const std::vector<std::string>& streams) const {
  // Placement keeps candles on connections of their own (common::StreamEndpoint).
  bool candles = !streams.empty() && absl::StartsWith(streams.front(), kCandle);
  return absl::StrCat(base, candles ? "/ws/v5/business" : "/ws/v5/public");
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
  if (parser_ == JsonParser::kSimdjson && ParseOkxHot(text, out)) return absl::OkStatus();
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
  // A bad item costs only itself: the others are kept (Feed::Parse).
  absl::Status first_bad;
  if (channel == "trades") {
    for (const Json& d : j["data"]) {
      FeedEvent e;
      e.kind = FeedEvent::Kind::kTrade;
      e.stream = stream;
      e.symbol = inst;
      std::string side;
      if (!d.is_object() || !IntField(d, "tradeId", &e.trade_id) || !TextField(d, "px", &e.price) ||
          !TextField(d, "sz", &e.quantity) || !TextField(d, "side", &side) || !IntField(d, "ts", &e.event_ms)) {
        first_bad.Update(Bad(absl::StrCat(stream, ": a trade needs \"tradeId\", \"px\", \"sz\", \"side\" and \"ts\"")));
        continue;
      }
      e.taker_sold = side == "sell";
      out.push_back(std::move(e));
    }
    return first_bad;
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
        first_bad.Update(Bad(absl::StrCat(stream, ": a book push needs \"seqId\" and \"ts\"")));
        continue;  // the next one does not chain: the book resyncs
      }
      IntField(d, "prevSeqId", &prev);
      std::vector<common::PriceLevel> bids, asks;
      if (absl::Status s = Levels(d, "bids", &bids); !s.ok()) {
        first_bad.Update(s);
        continue;
      }
      if (absl::Status s = Levels(d, "asks", &asks); !s.ok()) {
        first_bad.Update(s);
        continue;
      }
      if (action == "snapshot") {
        e.kind = FeedEvent::Kind::kSnapshot;
        e.snapshot = {seq, std::move(bids), std::move(asks)};
      } else {
        e.kind = FeedEvent::Kind::kDiff;
        e.diff = {prev + 1, seq, prev, std::move(bids), std::move(asks)};
      }
      out.push_back(std::move(e));
    }
    return first_bad;
  }
  const auto* bar = std::end(kBars);
  if (absl::StartsWith(channel, kCandle)) {
    absl::string_view name = absl::string_view(channel).substr(kCandle.size());
    bar = std::find_if(std::begin(kBars), std::end(kBars), [&](const auto& x) { return x.bar == name; });
    if (bar == std::end(kBars)) return Bad(absl::StrCat("channel \"", channel, "\" is not a candle bar this feed reads"));
  } else if (channel != "bbo-tbt" && channel != "tickers") {
    return Bad(absl::StrCat("channel \"", channel, "\" is not one this feed reads"));
  }
  for (const Json& d : j["data"]) {
    FeedEvent e;
    e.kind = FeedEvent::Kind::kRecord;
    e.stream = stream;
    e.symbol = inst;
    absl::Status s = bar != std::end(kBars) ? Candle(d, stream, bar->interval, bar->ms, e)
                     : channel == "bbo-tbt"  ? BookTicker(d, stream, e)
                                             : Ticker(d, stream, e);
    if (!s.ok()) {
      first_bad.Update(s);
      continue;
    }
    out.push_back(std::move(e));
  }
  return first_bad;
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
