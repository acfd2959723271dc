// The feeds' simdjson hot path against their nlohmann path: the same events,
// field by field, and the same errors, for recorded messages, edge cases and
// a few thousand generated ones.
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "node/feeds/binance_feed.h"
#include "node/feeds/deribit_feed.h"
#include "node/feeds/feed.h"
#include "node/feeds/okx_feed.h"

namespace marketprism::node {
namespace {

using ::testing::HasSubstr;

std::string Levels(const std::vector<common::PriceLevel>& levels) {
  std::vector<std::string> out;
  for (const common::PriceLevel& l : levels) {
    out.push_back(absl::StrCat("[", l.price, " ", l.quantity, "]"));
  }
  return absl::StrJoin(out, ",");
}

// Every field of `e`, written out.
std::string Describe(const FeedEvent& e) {
  return absl::StrCat("kind=", static_cast<int>(e.kind), " stream=", e.stream, " symbol=", e.symbol,
                      " event_ms=", e.event_ms, " trade_id=", e.trade_id,
                      " trade_id_text=", e.trade_id_text, " price=", e.price,
                      " quantity=", e.quantity, " taker_sold=", e.taker_sold,
                      " diff=", e.diff.first, "/", e.diff.last, "/", e.diff.prev,
                      " bids=", Levels(e.diff.bids), " asks=", Levels(e.diff.asks),
                      " snapshot=", e.snapshot.update_id, " bids=", Levels(e.snapshot.bids),
                      " asks=", Levels(e.snapshot.asks), " record=", e.record.ShortDebugString(),
                      " record_key=", e.record_key, " sequence=", e.sequence,
                      " final=", e.final_when_superseded, " error=", e.error, " answer=", e.answer);
}

struct Result {
  std::string status;
  std::vector<std::string> events;
};

Result Run(absl::string_view exchange, JsonParser parser, absl::string_view text) {
  std::vector<FeedEvent> events;
  Result r;
  r.status = FeedFor(exchange, parser)->Parse(text, events).ToString();
  for (const FeedEvent& e : events) r.events.push_back(Describe(e));
  return r;
}

// Both parsers read `text` alike; returns what simdjson's gave.
Result ExpectSame(absl::string_view exchange, absl::string_view text) {
  Result fast = Run(exchange, JsonParser::kSimdjson, text);
  Result slow = Run(exchange, JsonParser::kNlohmann, text);
  EXPECT_EQ(fast.status, slow.status) << exchange << ": " << text;
  EXPECT_EQ(fast.events, slow.events) << exchange << ": " << text;
  return fast;
}

bool Hot(absl::string_view exchange, absl::string_view text) {
  std::vector<FeedEvent> events;
  bool hot = absl::StartsWith(exchange, "binance") ? ParseBinanceHot(text, events)
             : exchange == "okx"        ? ParseOkxHot(text, events)
                                        : ParseDeribitHot(text, events);
  EXPECT_TRUE(hot || events.empty()) << "a message it leaves adds nothing: " << text;
  return hot;
}

constexpr const char* kBinanceTrade =
    R"({"stream":"btcusdt@trade","data":{"e":"trade","E":1700000000123,"s":"BTCUSDT","t":1000001,)"
    R"("p":"43210.01000000","q":"0.02500000","T":1700000000120,"m":true,"M":true}})";
constexpr const char* kBinanceDepth =
    R"({"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1700000000123,"s":"BTCUSDT","U":1001,)"
    R"("u":1010,"b":[["90.07","0.00000000"],["90.20","14.25000000"]],"a":[["101.07","6.75000000"]]}})";
// USD-M: aggregate trades, and diffs chained by "pu" (U is not pu + 1).
constexpr const char* kUsdmAggTrade =
    R"({"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1700000000123,"s":"BTCUSDT","a":5933014,)"
    R"("p":"43210.1","q":"0.025","f":100,"l":105,"T":1700000000120,"m":false}})";
constexpr const char* kUsdmDepth =
    R"({"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1700000000123,"T":1700000000121,)"
    R"("s":"BTCUSDT","U":157,"u":160,"pu":149,"b":[["43210.0","1.000"]],"a":[["43210.1","0"]]}})";
constexpr const char* kOkxTrades = R"({"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[
    {"instId":"BTC-USDT","tradeId":"41","px":"43000.1","sz":"0.01","side":"sell","ts":"1700000000001","count":"1"},
    {"instId":"BTC-USDT","tradeId":"42","px":"43000.2","sz":"0.02","side":"buy","ts":"1700000000002","count":"1"}]})";
constexpr const char* kOkxBooks =
    R"({"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[
    {"asks":[["43001","1","0","1"]],"bids":[],"ts":"1700000000100","checksum":0,"prevSeqId":100,"seqId":110}]})";
constexpr const char* kOkxSnapshot =
    R"({"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[
    {"asks":[["43001","1","0","1"]],"bids":[["42999","2","0","3"]],"ts":"1700000000100","checksum":0,"seqId":110}]})";
constexpr const char* kDeribitTrades =
    R"({"jsonrpc":"2.0","method":"subscription","params":{"channel":"trades.BTC-PERPETUAL.100ms","data":[
    {"trade_seq":7,"trade_id":"ETH-99","timestamp":1700000000001,"price":43000.50,"amount":10,"direction":"sell",
     "instrument_name":"BTC-PERPETUAL","tick_direction":0,"mark_price":43000.1,"index_price":43000.2}]}})";
constexpr const char* kDeribitSnapshot =
    R"({"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.100ms","data":{
    "type":"snapshot","timestamp":1700000000100,"instrument_name":"BTC-PERPETUAL","change_id":100,
    "bids":[["new",42999.5,2500.0]],"asks":[["new",43000.5,10]]}}})";
constexpr const char* kDeribitChange =
    R"({"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.100ms","data":{
    "type":"change","timestamp":1700000000200,"instrument_name":"BTC-PERPETUAL","change_id":104,"prev_change_id":100,
    "bids":[["delete",42999.5,0]],"asks":[["change",43000.5,20]]}}})";

TEST(FeedParseTest, RecordedHotMessagesTakeTheFastPathAndReadTheSame) {
  for (auto [exchange, text] :
       std::vector<std::pair<const char*, const char*>>{{"binance_spot", kBinanceTrade},
                                                        {"binance_spot", kBinanceDepth},
                                                        {"binance_usdm", kUsdmAggTrade},
                                                        {"binance_usdm", kUsdmDepth},
                                                        {"okx", kOkxTrades},
                                                        {"okx", kOkxBooks},
                                                        {"okx", kOkxSnapshot},
                                                        {"deribit", kDeribitTrades},
                                                        {"deribit", kDeribitSnapshot},
                                                        {"deribit", kDeribitChange}}) {
    EXPECT_TRUE(Hot(exchange, text)) << text;
    Result r = ExpectSame(exchange, text);
    EXPECT_EQ(r.status, "OK");
    EXPECT_FALSE(r.events.empty());
  }
  EXPECT_THAT(ExpectSame("binance_spot", kBinanceTrade).events[0],
              HasSubstr("price=43210.01000000 quantity=0.02500000 taker_sold=1"));
  EXPECT_THAT(ExpectSame("binance_usdm", kUsdmAggTrade).events[0],
              HasSubstr("trade_id=5933014 trade_id_text= price=43210.1 quantity=0.025 taker_sold=0"));
  EXPECT_THAT(ExpectSame("binance_usdm", kUsdmDepth).events[0], HasSubstr("diff=157/160/149"));
  EXPECT_THAT(ExpectSame("binance_spot", kBinanceDepth).events[0], HasSubstr("diff=1001/1010/-1"));
  EXPECT_THAT(ExpectSame("deribit", kDeribitSnapshot).events[0], HasSubstr("bids=[42999.5 2500.0]"))
      << "a JSON number keeps its own text";
}

TEST(FeedParseTest, OtherMessagesGoTheNlohmannWay) {
  for (
      auto [exchange, text] : std::vector<std::pair<const char*, const char*>>{
          {"binance_spot", R"({"result":null,"id":1})"},
          {"binance_spot", R"({"error":{"code":2,"msg":"Invalid request"},"id":3})"},
          {"binance_spot",
           R"({"stream":"btcusdt@bookTicker","data":{"u":4,"s":"BTCUSDT","b":"1","B":"2","a":"3","A":"4"}})"},
          {"okx",
           R"({"event":"subscribe","arg":{"channel":"trades","instId":"BTC-USDT"},"connId":"a"})"},
          {"okx", R"({"event":"error","code":"60012","msg":"Invalid request"})"},
          {"okx", R"({"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[]})"},
          {"deribit", R"({"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}})"},
          {"deribit", R"({"jsonrpc":"2.0","id":2,"result":["book.BTC-PERPETUAL.100ms"]})"},
          {"deribit",
           R"({"jsonrpc":"2.0","method":"subscription","params":{"channel":"quote.X","data":{"timestamp":1}}})"}}) {
    EXPECT_FALSE(Hot(exchange, text)) << text;
    ExpectSame(exchange, text);
  }
}

TEST(FeedParseTest, EdgeCasesReadAlikeWithTheSameErrors) {
  const std::vector<std::pair<const char*, std::string>>
      cases =
          {
              // escaped strings and keys
              {"binance_spot",
               R"({"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTC\u0055SDT\"x\\","t":5,"p":"1.5","q":"2","T":3,"m":false}})"},
              {"binance_spot",
               R"({"stream":"btcusdt@trade","data":{"\u0065":"trade","E":1,"s":"B","t":5,"\u0070":"1.5","q":"2","T":3,"m":false}})"},
              {"binance_spot",
               R"({"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"B","t":5,"p":"1.5","q":"\ud83d\ude00","T":3,"m":false}})"},
              // fields in another order, and fields this feed does not read
              {"binance_spot",
               R"({"data":{"m":true,"T":3,"q":"2","p":"1.5","t":5,"s":"B","E":1,"e":"trade","x":[{"y":null}]},"stream":"s"})"},
              // missing fields and wrong types: the nlohmann path's errors
              {"binance_spot",
               R"({"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"B","t":5,"p":"1.5","T":3,"m":false}})"},
              {"binance_spot",
               R"({"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"B","t":"5","p":"1.5","q":"2","T":3,"m":false}})"},
              {"binance_spot",
               R"({"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"B","t":5.0,"p":"1.5","q":"2","T":3,"m":false}})"},
              {"binance_spot",
               R"({"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"B","t":5,"p":1.5,"q":"2","T":3,"m":false}})"},
              {"binance_spot",
               R"({"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"B","t":5,"p":"1.5","q":"2","T":3,"m":0}})"},
              {"binance_spot",
               R"({"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"B","t":18446744073709551615,"p":"1","q":"2","T":3,"m":false}})"},
              {"binance_spot",
               R"({"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"B","t":-0,"p":"1","q":"2","T":3,"m":false}})"},
              {"binance_spot",
               R"({"stream":"s","data":{"e":"depthUpdate","E":1,"s":"B","U":9,"u":8,"b":[],"a":[]}})"},
              {"binance_spot",
               R"({"stream":"s","data":{"e":"depthUpdate","E":1,"s":"B","U":1,"u":8,"b":[["1"]],"a":[]}})"},
              {"binance_spot",
               R"({"stream":"s","data":{"e":"depthUpdate","E":1,"s":"B","U":1,"u":8,"b":[["1","2",3,{"x":[]}]],"a":[]}})"},
              {"binance_spot",
               R"({"stream":"s","data":{"e":"depthUpdate","E":1,"s":"B","U":1,"u":8,"b":[[1,"2"]],"a":[]}})"},
              {"binance_spot",
               R"({"stream":"s","data":{"e":"depthUpdate","E":1,"s":"B","U":1,"u":8,"b":[],"a":{}}})"},
              {"binance_spot", R"({"stream":"s","data":{"e":"funding","E":1,"s":"B"}})"},
              // a field twice: the nlohmann path keeps the last
              {"binance_spot",
               R"({"stream":"s","data":{"e":"trade","E":1,"s":"B","t":5,"p":"1","p":"7","q":"2","T":3,"m":false}})"},
              // not JSON, truncated, or more after the object
              {"binance_spot",
               R"({"stream":"s","data":{"e":"trade","E":1,"s":"B","t":5,"p":"1","q":"2","T":3,"m":false}} x)"},
              {"binance_spot",
               R"({"stream":"s","data":{"e":"trade","E":1,"s":"B","t":5,"p":"1","q":"2","T":3,"m":fals}})"},
              {"binance_spot", std::string(kBinanceTrade).substr(0, 90)},
              {"binance_spot", std::string(kBinanceDepth).substr(0, 150)},
              {"binance_spot", ""},
              {"binance_spot", "[]"},
              {"binance_spot", "\"x\""},
              {"okx",
               R"({"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"tradeId":41,"px":"1","sz":"2","side":"buy","ts":" 17"}]})"},
              {"okx",
               R"({"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"tradeId":"4x","px":"1","sz":"2","side":"buy","ts":"1"}]})"},
              {"okx",
               R"({"data":[{"tradeId":"4","px":"1","sz":"2","side":"buy","ts":"1"}],"arg":{"channel":"trades","instId":"X"}})"},
              {"okx",
               R"({"arg":{"channel":"books","instId":"X"},"data":[{"asks":[],"bids":[],"ts":"1","seqId":"9","prevSeqId":"x"}]})"},
              {"okx",
               R"({"arg":{"channel":"books","instId":"X"},"data":[{"asks":[],"bids":[],"ts":"1","seqId":9}],"action":"snapshot"})"},
              {"okx",
               R"({"arg":{"channel":"books","instId":"X"},"action":7,"data":[{"asks":[],"bids":[],"ts":"1","seqId":9}]})"},
              {"okx",
               R"({"arg":{"channel":"books","instId":"X"},"data":[{"asks":[],"ts":"1","seqId":9}]})"},
              {"okx", std::string(kOkxTrades).substr(0, 120)},
              {"okx", "pong"},
              // Deribit numbers: exponents, -0, beyond 64 bits, strings
              {"deribit",
               R"({"method":"subscription","params":{"channel":"trades.X","data":[{"trade_seq":7,"trade_id":"a","timestamp":1,"price":4.30005e4,"amount":-2.5E+2,"direction":"buy","instrument_name":"X"}]}})"},
              {"deribit",
               R"({"method":"subscription","params":{"channel":"trades.X","data":[{"trade_seq":7,"trade_id":"a","timestamp":1,"price":1E-3,"amount":-0,"direction":"buy","instrument_name":"X"}]}})"},
              {"deribit",
               R"({"method":"subscription","params":{"channel":"trades.X","data":[{"trade_seq":7,"trade_id":"a","timestamp":1,"price":123456789012345678901234567890,"amount":"5","direction":"buy","instrument_name":"X"}]}})"},
              {"deribit",
               R"({"method":"subscription","params":{"channel":"trades.X","data":[{"trade_seq":7,"trade_id":"a","timestamp":1,"price":1e999,"amount":1,"direction":"buy","instrument_name":"X"}]}})"},
              {"deribit",
               R"({"method":"subscription","params":{"channel":"trades.X","data":[{"trade_seq":7,"trade_id":"a","timestamp":1,"price":1,"amount":1,"direction":"buy","instrument_name":"X","x":1e-401}]}})"},
              {"deribit",
               R"({"method":"subscription","params":{"channel":"trades.X","data":[{"trade_seq":7.5,"trade_id":"a","timestamp":1,"price":1,"amount":1,"direction":"buy","instrument_name":"X"}]}})"},
              {"deribit",
               R"({"method":"subscription","params":{"channel":"trades.X","data":[{"trade_seq":7e0,"trade_id":"a","timestamp":1,"price":1,"amount":1,"direction":"buy","instrument_name":"X"}]}})"},
              {"deribit",
               R"({"method":"subscription","params":{"channel":"trades.X","data":[{"trade_seq":7,"trade_id":5,"timestamp":1,"price":1,"amount":true,"direction":"buy","instrument_name":"X"}]}})"},
              {"deribit", R"({"method":"subscription","params":{"channel":"book.X","data":{"type":"change","timestamp":1,"instrument_name":"X","change_id":4,"bids":[],"asks":[]}}})"},
              {"deribit",
               R"({"method":"subscription","params":{"channel":"book.X","data":{"type":"change","timestamp":1,"instrument_name":"X","change_id":4,"prev_change_id":3,"bids":[["new",1]],"asks":[]}}})"},
              {"deribit",
               R"({"method":"subscription","params":{"channel":"book.X","data":{"type":"change","timestamp":1,"instrument_name":"X","change_id":4,"prev_change_id":3,"bids":[["move",1,2]],"asks":[]}}})"},
              {"deribit",
               R"({"method":"subscription","params":{"channel":"book.X","data":{"type":"other","timestamp":1,"instrument_name":"X","change_id":4,"bids":[],"asks":[]}}})"},
              {"deribit", R"({"method":"subscription","params":{"data":[],"channel":"trades.X"}})"},
              {"deribit", R"({"method":"notice","params":{"channel":"trades.X","data":[]}})"},
              {"deribit", std::string(kDeribitChange).substr(0, 200)},
          };
  for (const auto& [exchange, text] : cases) ExpectSame(exchange, text);
  // The errors name the problem, as they did.
  EXPECT_THAT(ExpectSame("binance_spot", cases[4].second).status,
              HasSubstr("a trade needs \"t\", \"p\", \"q\""));
  EXPECT_THAT(ExpectSame("binance_spot", cases[11].second).status,
              HasSubstr("a depth update needs \"U\" <= \"u\""));
  EXPECT_THAT(ExpectSame("binance_spot", cases[18].second).status, HasSubstr("not a JSON object"));
  EXPECT_THAT(ExpectSame("deribit", cases.back().second).status, HasSubstr("malformed JSON"));
  // And the values are the exchange's own text.
  EXPECT_THAT(ExpectSame("deribit", cases[34].second).events.at(0),
              HasSubstr("price=43000.5 quantity=-250"));
  EXPECT_THAT(ExpectSame("deribit", cases[35].second).events.at(0),
              HasSubstr("price=0.001 quantity=0"));
  EXPECT_THAT(ExpectSame("deribit", cases[36].second).events.at(0),
              HasSubstr("price=123456789012345678901234567890 quantity=5"));
  EXPECT_THAT(ExpectSame("binance_spot", cases[0].second).events.at(0),
              HasSubstr("symbol=BTCUSDT\"x\\"));
}

TEST(FeedParseTest, UsdmEdgeCasesReadAlikeWithTheSameErrors) {
  const std::vector<std::string> cases = {
      // 0: pu not an integer; 1: pu twice (nlohmann keeps the last)
      R"({"stream":"s","data":{"e":"depthUpdate","E":1,"s":"B","U":1,"u":8,"pu":"0","b":[],"a":[]}})",
      R"({"stream":"s","data":{"e":"depthUpdate","E":1,"s":"B","U":1,"u":8,"pu":0,"pu":1,"b":[],"a":[]}})",
      // 2: an aggTrade without its id; 3: with a text id; 4: with a trade id too
      R"({"stream":"s","data":{"e":"aggTrade","E":1,"s":"B","p":"1","q":"2","T":3,"m":false}})",
      R"({"stream":"s","data":{"e":"aggTrade","E":1,"s":"B","a":"5","p":"1","q":"2","T":3,"m":false}})",
      R"({"stream":"s","data":{"e":"aggTrade","E":1,"s":"B","a":5,"t":6,"p":"1","q":"2","T":3,"m":false}})",
      // 5: a trade with an aggregate id too
      R"({"stream":"s","data":{"e":"trade","E":1,"s":"B","a":5,"t":6,"p":"1","q":"2","T":3,"m":false}})",
      // 6: USD-M's ticker has no top of book; 7: a part of one is an error
      R"({"stream":"s","data":{"e":"24hrTicker","E":1,"s":"B","c":"1","o":"1","h":"1","l":"1","v":"1","q":"1"}})",
      R"({"stream":"s","data":{"e":"24hrTicker","E":1,"s":"B","c":"1","o":"1","h":"1","l":"1","v":"1","q":"1","b":"1"}})",
  };
  for (const std::string& text : cases) ExpectSame("binance_usdm", text);
  EXPECT_THAT(ExpectSame("binance_usdm", cases[0]).status, HasSubstr("\"pu\" must be an integer"));
  EXPECT_THAT(ExpectSame("binance_usdm", cases[1]).events.at(0), HasSubstr("diff=1/8/1"));
  EXPECT_THAT(ExpectSame("binance_usdm", cases[2]).status, HasSubstr("an aggTrade needs \"a\""));
  EXPECT_THAT(ExpectSame("binance_usdm", cases[3]).status, HasSubstr("an aggTrade needs \"a\""));
  EXPECT_THAT(ExpectSame("binance_usdm", cases[4]).events.at(0), HasSubstr("trade_id=5 "));
  EXPECT_THAT(ExpectSame("binance_usdm", cases[5]).events.at(0), HasSubstr("trade_id=6 "));
  EXPECT_EQ(ExpectSame("binance_usdm", cases[6]).status, "OK");
  EXPECT_THAT(ExpectSame("binance_usdm", cases[7]).status, HasSubstr("top of book needs"));
  EXPECT_FALSE(Hot("binance_usdm", cases[4])) << "a trade id and an aggregate id: the nlohmann way";
}

// ---- generated messages -----------------------------------------------------

// A JSON object as (key, value text) pairs, for generating and mutating.
struct Obj {
  std::vector<std::pair<std::string, std::string>> fields;
  std::string Text() const {
    std::vector<std::string> parts;
    for (const auto& [k, v] : fields) parts.push_back(absl::StrCat("\"", k, "\":", v));
    return absl::StrCat("{", absl::StrJoin(parts, ","), "}");
  }
};

class Generator {
 public:
  explicit Generator(uint64_t seed) : rng_(seed) {}
  int Draw(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool OneIn(int n) { return Draw(1, n) == 1; }
  std::string Decimal() {
    return absl::StrCat(Draw(0, 99999), Draw(0, 1) ? absl::StrCat(".", Draw(0, 99999999)) : "");
  }
  std::string Quoted(std::string s) { return absl::StrCat("\"", s, "\""); }
  std::string Number() {
    int n = Draw(0, 5000);
    switch (Draw(0, 6)) {
      case 0:
        return absl::StrCat(n);
      case 1:
        return absl::StrCat(n, ".5");
      case 2:
        return absl::StrCat(n, ".250");
      case 3:
        return absl::StrCat(n, "e3");
      case 4:
        return absl::StrCat(n, "E-4");
      case 5:
        return absl::StrCat("-", n, ".1");
      default:
        return absl::StrCat(n, ".0e+2");
    }
  }
  // Another value in place of a field's: types the parsers must tell apart.
  std::string Odd() {
    static const char* kValues[] = {"1",
                                    "\"1\"",
                                    "1.5",
                                    "true",
                                    "null",
                                    "[]",
                                    "{}",
                                    "-0",
                                    "1e3",
                                    "\"\"",
                                    "18446744073709551616",
                                    "\" 7\"",
                                    "[[\"1\",\"2\"]]",
                                    "\"x\\u0041\""};
    return kValues[Draw(0, 13)];
  }
  // Drops, repeats, retypes, adds or reorders a field now and then.
  void Mutate(Obj& o) {
    if (o.fields.empty()) return;
    size_t i = static_cast<size_t>(Draw(0, static_cast<int>(o.fields.size()) - 1));
    switch (Draw(0, 12)) {
      case 0:
        o.fields.erase(o.fields.begin() + static_cast<std::ptrdiff_t>(i));
        break;
      case 1:
        o.fields.push_back(o.fields[i]);
        break;
      case 2:
        o.fields[i].second = Odd();
        break;
      case 3:
        o.fields.push_back({"extra", R"({"a":[1,2.5,"x",null,true,{"b":-1e-2}]})"});
        break;
      case 4:
        std::shuffle(o.fields.begin(), o.fields.end(), rng_);
        break;
      default:
        break;
    }
  }
  // Now and then breaks the text itself.
  std::string Damage(std::string text) {
    if (!OneIn(8) || text.empty()) return text;
    size_t at = static_cast<size_t>(Draw(0, static_cast<int>(text.size()) - 1));
    switch (Draw(0, 2)) {
      case 0:
        return text.substr(0, at);
      case 1:
        return text.erase(at, 1);
      default:
        return text.insert(at, 1, "{}[],:\"\\0a-.e "[Draw(0, 13)]);
    }
  }
  std::string Level(bool deribit) {
    if (deribit) {
      static const char* kActions[] = {"new", "change", "delete"};
      return absl::StrCat("[\"", kActions[Draw(0, 2)], "\",", Number(), ",", Number(), "]");
    }
    return absl::StrCat("[", Quoted(Decimal()), ",", Quoted(Decimal()),
                        OneIn(3) ? ",\"0\",\"4\"" : "", "]");
  }
  std::string LevelList(bool deribit) {
    std::vector<std::string> l;
    for (int i = Draw(0, 4); i > 0; --i) l.push_back(OneIn(30) ? Odd() : Level(deribit));
    return absl::StrCat("[", absl::StrJoin(l, ","), "]");
  }

  std::string Binance() {
    Obj d;
    if (OneIn(2)) {
      d.fields = {{"e", "\"trade\""},
                  {"E", absl::StrCat(Draw(1, 1 << 30))},
                  {"s", "\"BTCUSDT\""},
                  {"t", absl::StrCat(Draw(1, 1 << 30))},
                  {"p", Quoted(Decimal())},
                  {"q", Quoted(Decimal())},
                  {"T", absl::StrCat(Draw(1, 1 << 30))},
                  {"m", OneIn(2) ? "true" : "false"},
                  {"M", "true"}};
    } else {
      int first = Draw(1, 1000);
      d.fields = {{"e", "\"depthUpdate\""},
                  {"E", absl::StrCat(Draw(1, 1 << 30))},
                  {"s", "\"BTCUSDT\""},
                  {"U", absl::StrCat(first)},
                  {"u", absl::StrCat(first + Draw(-1, 9))},
                  {"b", LevelList(false)},
                  {"a", LevelList(false)}};
    }
    Mutate(d);
    Obj root{{{"stream", "\"btcusdt@trade\""}, {"data", d.Text()}}};
    Mutate(root);
    return Damage(root.Text());
  }
  std::string Okx() {
    bool trades = OneIn(2);
    std::vector<std::string> items;
    for (int i = Draw(0, 3); i > 0; --i) {
      Obj d;
      if (trades) {
        d.fields = {{"instId", "\"BTC-USDT\""},
                    {"tradeId", Quoted(absl::StrCat(Draw(1, 1 << 30)))},
                    {"px", Quoted(Decimal())},
                    {"sz", Quoted(Decimal())},
                    {"side", OneIn(2) ? "\"sell\"" : "\"buy\""},
                    {"ts", Quoted(absl::StrCat(Draw(1, 1 << 30)))},
                    {"count", "\"1\""}};
      } else {
        d.fields = {{"asks", LevelList(false)},
                    {"bids", LevelList(false)},
                    {"ts", Quoted(absl::StrCat(Draw(1, 99)))},
                    {"checksum", "-5"},
                    {"prevSeqId", absl::StrCat(Draw(-1, 100))},
                    {"seqId", absl::StrCat(Draw(1, 200))}};
      }
      Mutate(d);
      items.push_back(d.Text());
    }
    Obj arg{{{"channel", trades ? "\"trades\"" : "\"books\""}, {"instId", "\"BTC-USDT\""}}};
    Mutate(arg);
    Obj root{{{"arg", arg.Text()}}};
    if (!trades) root.fields.push_back({"action", OneIn(2) ? "\"snapshot\"" : "\"update\""});
    root.fields.push_back({"data", absl::StrCat("[", absl::StrJoin(items, ","), "]")});
    Mutate(root);
    return Damage(root.Text());
  }
  std::string Deribit() {
    bool trades = OneIn(2);
    std::string data;
    if (trades) {
      std::vector<std::string> items;
      for (int i = Draw(0, 3); i > 0; --i) {
        Obj d{{{"trade_seq", absl::StrCat(Draw(1, 1 << 30))},
               {"trade_id", Quoted(absl::StrCat("ETH-", Draw(1, 99)))},
               {"timestamp", absl::StrCat(Draw(1, 1 << 30))},
               {"price", Number()},
               {"amount", Number()},
               {"direction", OneIn(2) ? "\"sell\"" : "\"buy\""},
               {"instrument_name", "\"BTC-PERPETUAL\""},
               {"tick_direction", "0"},
               {"mark_price", Number()}}};
        Mutate(d);
        items.push_back(d.Text());
      }
      data = absl::StrCat("[", absl::StrJoin(items, ","), "]");
    } else {
      int change = Draw(2, 1000);
      Obj d{{{"type", OneIn(3) ? "\"snapshot\"" : "\"change\""},
             {"timestamp", absl::StrCat(Draw(1, 1 << 30))},
             {"instrument_name", "\"BTC-PERPETUAL\""},
             {"change_id", absl::StrCat(change)},
             {"prev_change_id", absl::StrCat(change - 1)},
             {"bids", LevelList(true)},
             {"asks", LevelList(true)}}};
      Mutate(d);
      data = d.Text();
    }
    Obj params{
        {{"channel", trades ? "\"trades.BTC-PERPETUAL.100ms\"" : "\"book.BTC-PERPETUAL.100ms\""},
         {"data", data}}};
    Mutate(params);
    Obj root{{{"jsonrpc", "\"2.0\""}, {"method", "\"subscription\""}, {"params", params.Text()}}};
    Mutate(root);
    return Damage(root.Text());
  }

 private:
  std::mt19937_64 rng_;
};

TEST(FeedParsePropertyTest, GeneratedMessagesReadAlikeByBothParsers) {
  Generator g(14);
  int hot = 0, total = 0;
  for (int i = 0; i < 2000; ++i) {
    for (auto [exchange, text] : {std::pair{"binance_spot", g.Binance()}, std::pair{"okx", g.Okx()},
                                  std::pair{"deribit", g.Deribit()}}) {
      ExpectSame(exchange, text);
      hot += Hot(exchange, text);
      ++total;
      if (::testing::Test::HasFailure()) return;  // one message to look at, not thousands
    }
  }
  EXPECT_GT(hot, total / 3) << "most generated messages are well-formed and read by the fast path";
  EXPECT_LT(hot, total) << "and some are not";
}

}  // namespace
}  // namespace marketprism::node
