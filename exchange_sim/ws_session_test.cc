#include "exchange_sim/ws_session.h"

#include <map>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tests/testing/fake_clock.h"

namespace marketprism::sim {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

const absl::Time kStart = absl::FromUnixSeconds(1'795'046'400) + absl::Milliseconds(250);

class WsSessionTest : public ::testing::Test {
 protected:
  void Make(SimOptions o = {}) {
    auto s = Simulator::Create(std::move(o), clock_);
    ASSERT_TRUE(s.ok()) << s.status();
    sim_ = std::move(*s);
  }

  std::unique_ptr<WsSession> Open(const std::string& path, common::QueryParams q = {}) {
    std::string error;
    auto s = OpenWsSession(*sim_, path, q, "10.0.0.1", clock_.Now(), &error);
    EXPECT_NE(s, nullptr) << error;
    return s;
  }

  // Advances the clock in 100 ms ticks, collecting what the session sends.
  WsOut Run(WsSession& s, int ticks) {
    WsOut all;
    for (int i = 0; i < ticks; ++i) {
      clock_.AdvanceBy(absl::Milliseconds(100));
      WsOut out;
      s.OnTick(clock_.Now(), out);
      for (auto& t : out.texts) all.texts.push_back(std::move(t));
      all.ping = all.ping || out.ping;
      if (out.close) {
        all.Close(out.close_code, out.close_reason);
        break;
      }
    }
    return all;
  }

  WsOut Say(WsSession& s, const std::string& text) {
    WsOut out;
    s.OnText(text, clock_.Now(), out);
    return out;
  }

  testing::FakeClock clock_{kStart};
  HttpResponse Get(const std::string& ip, const std::string& path, common::QueryParams query = {}) {
    HttpRequest r;
    r.path = path;
    r.query = std::move(query);
    r.peer_ip = ip;
    return sim_->Handle(r);
  }
  // What /sim/stats counts of the WebSocket limits 10.0.0.1 broke.
  Json Violations(const std::string& exchange) {
    return Json::parse(Get("127.0.0.1", "/sim/stats").body)["exchanges"][exchange]["ips"]["10.0.0.1"]["ws_violations"];
  }
  std::unique_ptr<Simulator> sim_;
};

// ---- Binance ---------------------------------------------------------------

TEST_F(WsSessionTest, BinanceTradeStreamIsGapFree) {
  Make();
  auto s = Open("/ws/btcusdt@trade");
  WsOut out = Run(*s, 30);
  ASSERT_GT(out.texts.size(), 20u);
  int64_t prev = -1;
  for (const std::string& t : out.texts) {
    Json e = Json::parse(t);
    EXPECT_EQ(e["e"], "trade");
    EXPECT_EQ(e["s"], "BTCUSDT");
    if (prev >= 0) EXPECT_EQ(e["t"].get<int64_t>(), prev + 1);
    prev = e["t"];
  }
}

TEST_F(WsSessionTest, BinanceDepthUpdateIdsChainAndMatchSnapshots) {
  Make();
  auto s = Open("/stream", {{"streams", "btcusdt@depth@100ms/ethusdt@depth"}});
  int64_t subscribed_tick = absl::ToUnixMillis(clock_.Now()) / 100;
  WsOut out = Run(*s, 25);
  std::map<std::string, int64_t> last_u;
  int fast = 0, slow = 0;
  for (const std::string& t : out.texts) {
    Json w = Json::parse(t);
    std::string stream = w["stream"];
    Json e = w["data"];
    int64_t u_first = e["U"], u_last = e["u"];
    if (last_u.count(stream)) {
      EXPECT_EQ(u_first, last_u[stream] + 1) << stream << ": a gap";
    } else {
      // The first event continues from the snapshot a client takes at subscribe time.
      EXPECT_EQ(u_first, subscribed_tick * 10 + 1) << stream;
    }
    last_u[stream] = u_last;
    (stream == "btcusdt@depth@100ms" ? fast : slow)++;
  }
  EXPECT_EQ(fast, 25) << "one event per 100 ms";
  EXPECT_EQ(slow, 2) << "one event per whole second: 2.5 s from x.25 crosses two";
}

TEST_F(WsSessionTest, BinanceBookTickerFollowsTheTopOfTheRestBook) {
  Make();
  auto s = Open("/stream", {{"streams", "btcusdt@bookTicker"}});
  WsOut out = Run(*s, 30);
  ASSERT_GT(out.texts.size(), 3u) << "the top changes within 3 s";
  int64_t prev = 0;
  for (const std::string& t : out.texts) {
    Json e = Json::parse(t)["data"];
    EXPECT_FALSE(e.contains("e")) << "spot bookTicker events carry no event type";
    EXPECT_GT(e["u"].get<int64_t>(), prev);
    prev = e["u"];
  }
  // Every change is sent: the last event is the top the REST book shows now.
  Json top = Json::parse(Get("1.1.1.1", "/api/v3/ticker/bookTicker", {{"symbol", "BTCUSDT"}}).body);
  Json last = Json::parse(out.texts.back())["data"];
  EXPECT_EQ(last["b"], top["bidPrice"]);
  EXPECT_EQ(last["B"], top["bidQty"]);
  EXPECT_EQ(last["a"], top["askPrice"]);
  EXPECT_EQ(last["A"], top["askQty"]);
  Json depth = Json::parse(Get("1.1.1.1", "/api/v3/depth", {{"symbol", "BTCUSDT"}, {"limit", "5"}}).body);
  EXPECT_LE(last["u"].get<int64_t>(), depth["lastUpdateId"].get<int64_t>());
}

TEST_F(WsSessionTest, BinanceTickerEverySecondMatchesTheRestTicker) {
  Make();
  auto s = Open("/stream", {{"streams", "ethusdt@ticker"}});
  WsOut out = Run(*s, 28);  // from x.25 to x+3.05: the last one was sent now
  ASSERT_EQ(out.texts.size(), 3u) << "one a second";
  Json e = Json::parse(out.texts.back())["data"];
  EXPECT_EQ(e["e"], "24hrTicker");
  Json rest = Json::parse(Get("1.1.1.1", "/api/v3/ticker/24hr", {{"symbol", "ETHUSDT"}}).body);
  EXPECT_EQ(e["E"], rest["closeTime"]);
  EXPECT_EQ(e["c"], rest["lastPrice"]);
  EXPECT_EQ(e["o"], rest["openPrice"]);
  EXPECT_EQ(e["v"], rest["volume"]);
  EXPECT_EQ(e["L"], rest["lastId"]);
}

TEST_F(WsSessionTest, BinanceKlinePushesTheOpenCandleAndTheClosedOneOnce) {
  Make();
  auto s = Open("/stream", {{"streams", "btcusdt@kline_1m"}});
  clock_.AdvanceBy(absl::Seconds(50));  // close to a minute's end
  WsOut out = Run(*s, 150);             // across it
  int closed = 0;
  int64_t closed_open = 0;
  for (const std::string& t : out.texts) {
    Json k = Json::parse(t)["data"]["k"];
    EXPECT_EQ(k["i"], "1m");
    EXPECT_EQ(k["T"].get<int64_t>(), k["t"].get<int64_t>() + 59'999);
    if (k["x"].get<bool>()) {
      ++closed;
      closed_open = k["t"];
      // Its final value is the REST kline of that minute.
      Json rest = Json::parse(Get("1.1.1.1", "/api/v3/klines",
                                  {{"symbol", "BTCUSDT"}, {"interval", "1m"},
                                   {"startTime", absl::StrCat(closed_open)}, {"limit", "1"}})
                                  .body);
      EXPECT_EQ(k["c"], rest[0][4]);
      EXPECT_EQ(k["v"], rest[0][5]);
      EXPECT_EQ(k["n"], rest[0][8]);
    }
  }
  EXPECT_EQ(closed, 1);
  EXPECT_EQ(closed_open % 60'000, 0);
  EXPECT_GE(out.texts.size(), 7u) << "the open candle every 2 s";
  EXPECT_EQ(Json::parse(Say(*s, R"({"method":"SUBSCRIBE","params":["btcusdt@kline_7m"],"id":1})").texts.at(0))["error"]["code"], 2);
}

TEST_F(WsSessionTest, BinanceSubscribeListAndUnsubscribe) {
  Make();
  auto s = Open("/ws");
  WsOut r = Say(*s, R"({"method":"SUBSCRIBE","params":["btcusdt@trade","ethusdt@aggTrade"],"id":1})");
  EXPECT_EQ(Json::parse(r.texts.at(0)), Json::parse(R"({"result":null,"id":1})"));
  clock_.AdvanceBy(absl::Seconds(1));  // stay under 5 messages a second
  r = Say(*s, R"({"method":"LIST_SUBSCRIPTIONS","id":2})");
  EXPECT_EQ(Json::parse(r.texts.at(0))["result"].size(), 2u);
  r = Say(*s, R"({"method":"UNSUBSCRIBE","params":["btcusdt@trade"],"id":3})");
  r = Say(*s, R"({"method":"LIST_SUBSCRIPTIONS","id":4})");
  EXPECT_EQ(Json::parse(r.texts.at(0))["result"], Json::parse(R"(["ethusdt@aggTrade"])"));
  r = Say(*s, R"({"method":"SUBSCRIBE","params":["BTCUSDT@trade"],"id":5})");
  EXPECT_EQ(Json::parse(r.texts.at(0))["error"]["code"], 2) << "names are lower case";
}

TEST_F(WsSessionTest, BinanceFiveMessagesASecondThenDisconnect) {
  Make();
  auto s = Open("/ws");
  for (int i = 0; i < 5; ++i) {
    WsOut r = Say(*s, absl::StrCat(R"({"method":"LIST_SUBSCRIPTIONS","id":)", i, "}"));
    ASSERT_FALSE(r.close) << i;
  }
  WsOut r = Say(*s, R"({"method":"LIST_SUBSCRIPTIONS","id":9})");
  EXPECT_TRUE(r.close) << "the 6th message within a second";
  EXPECT_EQ(r.close_code, 1008);
  EXPECT_EQ(Violations("binance_spot"), Json({{"messages_per_second", 1}}));
  // Pongs count too.
  auto t = Open("/ws");
  for (int i = 0; i < 5; ++i) {
    WsOut o;
    t->OnPong(clock_.Now(), o);
    ASSERT_FALSE(o.close);
  }
  WsOut o;
  t->OnPong(clock_.Now(), o);
  EXPECT_TRUE(o.close);
}

TEST_F(WsSessionTest, BinanceFiveMessagesSpreadOverASecondAreFine) {
  Make();
  auto s = Open("/ws");
  for (int i = 0; i < 20; ++i) {
    clock_.AdvanceBy(absl::Milliseconds(200));
    ASSERT_FALSE(Say(*s, R"({"method":"LIST_SUBSCRIPTIONS","id":1})").close) << i;
  }
}

TEST_F(WsSessionTest, BinanceAtMost1024Streams) {
  Make();
  auto s = Open("/ws");
  Json names = Json::array();
  for (int i = 0; i < 1024; ++i) names.push_back(absl::StrCat("sym", i, "usdt@trade"));
  WsOut r = Say(*s, Json{{"method", "SUBSCRIBE"}, {"params", names}, {"id", 1}}.dump());
  EXPECT_EQ(Json::parse(r.texts.at(0))["result"], nullptr);
  r = Say(*s, R"({"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":2})");
  Json err = Json::parse(r.texts.at(0));
  EXPECT_EQ(err["error"]["code"], 2);
  EXPECT_THAT(err["error"]["msg"].get<std::string>(), HasSubstr("1024"));
  EXPECT_EQ(Violations("binance_spot"), Json({{"streams_per_connection", 1}}));
  std::string error;
  std::string path = "/ws";
  for (int i = 0; i < 1025; ++i) path += absl::StrCat("/s", i, "@trade");
  EXPECT_EQ(OpenWsSession(*sim_, path, {}, "10.0.0.1", clock_.Now(), &error), nullptr);
}

TEST_F(WsSessionTest, BinancePingsAndDropsASilentClient) {
  SimOptions o;
  o.binance_ping_interval = absl::Seconds(1);
  o.binance_pong_timeout = absl::Seconds(3);
  Make(o);
  auto s = Open("/ws/btcusdt@trade");
  WsOut out = Run(*s, 10);
  EXPECT_TRUE(out.ping);
  EXPECT_FALSE(out.close);
  WsOut pong;
  s->OnPong(clock_.Now(), pong);  // answered: the clock restarts
  out = Run(*s, 20);
  EXPECT_FALSE(out.close) << "pings answered in time keep it open";
  out = Run(*s, 50);
  EXPECT_TRUE(out.close) << "no pong for 3 s";
}

TEST_F(WsSessionTest, BinanceBadMessages) {
  Make();
  auto s = Open("/ws");
  EXPECT_EQ(Json::parse(Say(*s, "{oops").texts.at(0))["error"]["code"], 3);
  EXPECT_EQ(Json::parse(Say(*s, R"({"method":"FLY","id":1})").texts.at(0))["error"]["code"], 2);
  EXPECT_EQ(Json::parse(Say(*s, R"({"id":1})").texts.at(0))["error"]["code"], 2);
  clock_.AdvanceBy(absl::Seconds(1));
  EXPECT_EQ(Json::parse(Say(*s, R"({"method":"SUBSCRIBE","params":"x","id":1})").texts.at(0))["error"]["code"], 2);
  EXPECT_EQ(Json::parse(Say(*s, R"({"method":"SUBSCRIBE","params":["btc@nonsense"],"id":1})").texts.at(0))["error"]["code"], 2);
}

// ---- OKX -------------------------------------------------------------------

// OKX as it is now: no snapshot push, checksum 0; the first update follows
// the book REST shows at subscribe time, by seqId.
TEST_F(WsSessionTest, OkxBooksAreUpdatesOnlyJoiningTheRestBookBySeqId) {
  Make();
  auto s = Open("/ws/v5/public");
  Say(*s, R"({"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}]})");
  WsOut out = Run(*s, 5);
  HttpResponse rest = Get("10.0.0.1", "/api/v5/market/books", {{"instId", "BTC-USDT"}, {"sz", "400"}});
  int64_t rest_seq = Json::parse(rest.body)["data"][0]["seqId"];
  WsOut more = Run(*s, 25);
  out.texts.insert(out.texts.end(), more.texts.begin(), more.texts.end());
  ASSERT_GT(out.texts.size(), 10u);
  int64_t last_seq = -1;
  int joins = 0;
  for (size_t i = 0; i < out.texts.size(); ++i) {
    Json m = Json::parse(out.texts[i]);
    Json d = m["data"][0];
    EXPECT_EQ(m["action"], "update") << "push " << i;
    EXPECT_EQ(d["checksum"], 0);
    int64_t prev = d["prevSeqId"], seq = d["seqId"];
    if (last_seq >= 0) EXPECT_EQ(prev, last_seq) << "push " << i << " does not chain";
    joins += prev <= rest_seq && rest_seq < seq;
    last_seq = seq;
  }
  EXPECT_EQ(joins, 1) << "exactly one push continues the REST book (prevSeqId <= seqId(REST) < seqId)";
}

// OKX before 2026 (--okx-ws-book-snapshot): applies book pushes to a local
// book and checks seqId chains and checksums.
TEST_F(WsSessionTest, OkxBooksSnapshotThenUpdatesWithMatchingChecksums) {
  SimOptions legacy;
  legacy.okx_ws_book_snapshot = true;
  Make(legacy);
  auto s = Open("/ws/v5/public");
  WsOut r = Say(*s, R"({"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}]})");
  Json ack = Json::parse(r.texts.at(0));
  EXPECT_EQ(ack["event"], "subscribe");
  EXPECT_EQ(ack["arg"]["channel"], "books");
  WsOut out = Run(*s, 30);
  ASSERT_GT(out.texts.size(), 10u);
  std::map<double, std::pair<std::string, std::string>, std::greater<>> bids;
  std::map<double, std::pair<std::string, std::string>> asks;
  int64_t last_seq = -2;
  for (size_t i = 0; i < out.texts.size(); ++i) {
    Json m = Json::parse(out.texts[i]);
    Json d = m["data"][0];
    if (i == 0) {
      EXPECT_EQ(m["action"], "snapshot");
      EXPECT_EQ(d["prevSeqId"], -1);
      EXPECT_EQ(d["bids"].size(), 400u);
    } else {
      EXPECT_EQ(m["action"], "update");
      EXPECT_EQ(d["prevSeqId"].get<int64_t>(), last_seq) << "a gap in seqId";
    }
    last_seq = d["seqId"];
    auto apply = [](auto& side, const Json& levels) {
      for (const Json& l : levels) {
        double px = std::stod(l[0].get<std::string>());
        if (l[1] == "0") {
          side.erase(px);
        } else {
          side[px] = {l[0], l[1]};
        }
      }
    };
    apply(bids, d["bids"]);
    apply(asks, d["asks"]);
    std::vector<std::pair<std::string, std::string>> b, a;
    for (auto& [px, l] : bids) {
      if (b.size() == 25) break;
      b.push_back(l);
    }
    for (auto& [px, l] : asks) {
      if (a.size() == 25) break;
      a.push_back(l);
    }
    EXPECT_EQ(d["checksum"].get<int32_t>(), OkxChecksum(b, a)) << "push " << i;
    EXPECT_EQ(bids.size(), 400u);
  }
}

TEST_F(WsSessionTest, OkxChecksumKnownValue) {
  // CRC32 of "3366.1:7:3366.8:9:3366:6:3368:8" is 2413953002 (Python's
  // zlib.crc32); OKX sends it as a signed 32-bit integer.
  EXPECT_EQ(OkxChecksum({{"3366.1", "7"}, {"3366", "6"}}, {{"3366.8", "9"}, {"3368", "8"}}),
            static_cast<int32_t>(2413953002u));
}

TEST_F(WsSessionTest, OkxPingPongIdleAndErrors) {
  SimOptions o;
  o.okx_idle_timeout = absl::Seconds(2);
  Make(o);
  auto s = Open("/ws/v5/public");
  EXPECT_EQ(Say(*s, "ping").texts.at(0), "pong");
  EXPECT_EQ(Json::parse(Say(*s, "{bad").texts.at(0))["code"], "60012");
  EXPECT_EQ(Json::parse(Say(*s, R"({"op":"subscribe","args":[{"channel":"tickers","instId":"NOPE"}]})").texts.at(0))["code"],
            "60018");
  WsOut out = Run(*s, 15);
  EXPECT_FALSE(out.close);
  out = Run(*s, 10);
  EXPECT_TRUE(out.close) << "nothing pushed for 2 s";
  // A subscribed socket keeps receiving pushes and stays open.
  auto t = Open("/ws/v5/public");
  Say(*t, R"({"op":"subscribe","args":[{"channel":"tickers","instId":"ETH-USDT"}]})");
  out = Run(*t, 50);
  EXPECT_FALSE(out.close);
  EXPECT_EQ(Json::parse(out.texts.at(0))["data"][0]["instId"], "ETH-USDT");
}

TEST_F(WsSessionTest, OkxSubscribeOperationsPerHour) {
  Make(SimOptions{.limit_overrides = {"okx.WS_SUBSCRIBES=3"}});
  auto s = Open("/ws/v5/public");
  const std::string sub = R"({"op":"subscribe","args":[{"channel":"tickers","instId":"BTC-USDT"}]})";
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Json::parse(Say(*s, sub).texts.at(0))["event"], "subscribe");
  EXPECT_EQ(Json::parse(Say(*s, sub).texts.at(0))["code"], "60014");
  EXPECT_EQ(Violations("okx"), Json({{"subscribe_ops_per_hour", 1}}));
  clock_.AdvanceBy(absl::Hours(1));
  EXPECT_EQ(Json::parse(Say(*s, sub).texts.at(0))["event"], "subscribe");
}

TEST_F(WsSessionTest, OkxTradesAreGapFree) {
  Make();
  auto s = Open("/ws/v5/public");
  Say(*s, R"({"op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"}]})");
  WsOut out = Run(*s, 20);
  int64_t prev = -1;
  for (const std::string& t : out.texts) {
    Json push = Json::parse(t);
    for (const Json& tr : push["data"]) {
      int64_t id = std::stoll(tr["tradeId"].get<std::string>());
      if (prev >= 0) EXPECT_EQ(id, prev + 1);
      prev = id;
    }
  }
  EXPECT_GT(prev, 0);
}

TEST_F(WsSessionTest, OkxBboTbtIsTheTopOfTheRestBookAtEverySeqId) {
  Make();
  auto s = Open("/ws/v5/public");
  Say(*s, R"({"op":"subscribe","args":[{"channel":"bbo-tbt","instId":"ETH-USDT"}]})");
  int64_t subscribed_tick = absl::ToUnixMillis(clock_.Now()) / 100;
  WsOut out = Run(*s, 30);
  ASSERT_GT(out.texts.size(), 3u);
  EXPECT_EQ(Json::parse(out.texts.at(0))["data"][0]["seqId"], subscribed_tick) << "the first push is the top at subscribe time";
  int64_t prev = 0;
  for (const std::string& t : out.texts) {
    Json d = Json::parse(t)["data"][0];
    EXPECT_GT(d["seqId"].get<int64_t>(), prev);
    prev = d["seqId"];
  }
  Json last = Json::parse(out.texts.back())["data"][0];
  Json rest = Json::parse(Get("1.1.1.1", "/api/v5/market/books", {{"instId", "ETH-USDT"}, {"sz", "1"}}).body)["data"][0];
  EXPECT_EQ(last["bids"][0][0], rest["bids"][0][0]);
  EXPECT_EQ(last["bids"][0][1], rest["bids"][0][1]);
  EXPECT_EQ(last["asks"][0][0], rest["asks"][0][0]);
  EXPECT_EQ(last["asks"][0][1], rest["asks"][0][1]);
}

TEST_F(WsSessionTest, OkxCandlesAreServedAtTheBusinessEndpointAndCloseOnce) {
  Make();
  auto pub = Open("/ws/v5/public");
  WsOut refused = Say(*pub, R"({"op":"subscribe","args":[{"channel":"candle1m","instId":"BTC-USDT"}]})");
  EXPECT_EQ(Json::parse(refused.texts.at(0))["code"], "60018") << "as OKX: candles moved to /ws/v5/business";
  auto s = Open("/ws/v5/business");
  WsOut ok = Say(*s, R"({"op":"subscribe","args":[{"channel":"candle1m","instId":"BTC-USDT"}]})");
  EXPECT_EQ(Json::parse(ok.texts.at(0))["event"], "subscribe");
  EXPECT_EQ(Json::parse(Say(*s, R"({"op":"subscribe","args":[{"channel":"tickers","instId":"BTC-USDT"}]})").texts.at(0))["code"],
            "60018");
  clock_.AdvanceBy(absl::Seconds(55));
  WsOut out = Run(*s, 100);
  int closed = 0;
  for (const std::string& t : out.texts) {
    Json row = Json::parse(t)["data"][0];
    int64_t open = std::stoll(row[0].get<std::string>());
    EXPECT_EQ(open % 60'000, 0);
    if (row[8] != "1") continue;
    ++closed;
    Json rest = Json::parse(Get("1.1.1.1", "/api/v5/market/candles",
                                {{"instId", "BTC-USDT"}, {"bar", "1m"}, {"after", absl::StrCat(open + 1)}, {"limit", "1"}})
                                .body)["data"][0];
    EXPECT_EQ(row, rest) << "the closed candle is the REST candle";
  }
  EXPECT_EQ(closed, 1);
  EXPECT_GE(out.texts.size(), 15u) << "the open candle every 500 ms";
}

// ---- Deribit ---------------------------------------------------------------

TEST_F(WsSessionTest, DeribitBookChangeIdsChainAndRebuildTheBook) {
  Make();
  auto s = Open("/ws/api/v2");
  WsOut r = Say(*s, R"({"jsonrpc":"2.0","id":3,"method":"public/subscribe","params":{"channels":["book.BTC-PERPETUAL.100ms"]}})");
  Json ack = Json::parse(r.texts.at(0));
  EXPECT_EQ(ack["id"], 3);
  EXPECT_EQ(ack["result"][0], "book.BTC-PERPETUAL.100ms");
  WsOut out = Run(*s, 20);
  std::map<double, double> bids;
  int64_t last = -1;
  for (size_t i = 0; i < out.texts.size(); ++i) {
    Json d = Json::parse(out.texts[i])["params"]["data"];
    if (i == 0) {
      EXPECT_EQ(d["type"], "snapshot");
    } else {
      EXPECT_EQ(d["type"], "change");
      EXPECT_EQ(d["prev_change_id"].get<int64_t>(), last);
    }
    last = d["change_id"];
    for (const Json& l : d["bids"]) {
      if (l[0] == "delete") {
        EXPECT_EQ(bids.erase(l[1].get<double>()), 1u) << "deleting a level that was not there";
      } else if (l[0] == "new") {
        EXPECT_FALSE(bids.count(l[1].get<double>())) << "a new level that already existed";
        bids[l[1]] = l[2];
      } else {
        EXPECT_TRUE(bids.count(l[1].get<double>()));
        bids[l[1]] = l[2];
      }
    }
  }
  Book truth = sim_->market().BookAt(*sim_->market().Find("deribit", "BTC-PERPETUAL"), last, 200);
  ASSERT_EQ(bids.size(), truth.bids.size());
  auto it = bids.rbegin();
  for (const Level& l : truth.bids) {
    EXPECT_DOUBLE_EQ(it->first, sim_->market().PriceOf(*sim_->market().Find("deribit", "BTC-PERPETUAL"), l.grid));
    ++it;
  }
}

TEST_F(WsSessionTest, DeribitHeartbeatClosesAnUnansweredSession) {
  SimOptions o;
  o.deribit_min_heartbeat = absl::Seconds(1);
  Make(o);
  auto s = Open("/ws/api/v2");
  Json r = Json::parse(Say(*s, R"({"jsonrpc":"2.0","id":1,"method":"public/set_heartbeat","params":{"interval":0.5}})").texts.at(0));
  EXPECT_EQ(r["error"]["code"], -32602) << "below the minimum interval";
  r = Json::parse(Say(*s, R"({"jsonrpc":"2.0","id":2,"method":"public/set_heartbeat","params":{"interval":1}})").texts.at(0));
  EXPECT_EQ(r["result"], "ok");
  WsOut out = Run(*s, 10);
  ASSERT_FALSE(out.texts.empty());
  EXPECT_EQ(Json::parse(out.texts[0])["params"]["type"], "test_request");
  EXPECT_FALSE(out.close);
  Say(*s, R"({"jsonrpc":"2.0","id":3,"method":"public/test"})");
  out = Run(*s, 10);
  EXPECT_FALSE(out.close) << "answered";
  out = Run(*s, 20);
  EXPECT_TRUE(out.close) << "a test_request went unanswered";
}

TEST_F(WsSessionTest, DeribitRateLimitEndsTheSession) {
  Make(SimOptions{.limit_overrides = {"deribit.non_matching_engine=1000"}});
  auto s = Open("/ws/api/v2");
  const std::string call = R"({"jsonrpc":"2.0","id":1,"method":"public/get_time"})";
  EXPECT_TRUE(Json::parse(Say(*s, call).texts.at(0)).contains("result"));
  EXPECT_TRUE(Json::parse(Say(*s, call).texts.at(0)).contains("result"));
  WsOut r = Say(*s, call);
  EXPECT_EQ(Json::parse(r.texts.at(0))["error"]["code"], 10028);
  EXPECT_TRUE(r.close);
  // The bucket is the IP's: HTTP from the same IP is refused too.
  HttpRequest req;
  req.path = "/api/v2/public/get_time";
  req.peer_ip = "10.0.0.1";
  EXPECT_EQ(sim_->Handle(req).status, 429);
}

TEST_F(WsSessionTest, DeribitRawAndUnknownChannels) {
  Make();
  auto s = Open("/ws/api/v2");
  Json r = Json::parse(Say(*s, R"({"jsonrpc":"2.0","id":1,"method":"public/subscribe","params":{"channels":["book.BTC-PERPETUAL.raw"]}})").texts.at(0));
  EXPECT_EQ(r["error"]["code"], 13778);
  r = Json::parse(Say(*s, R"({"jsonrpc":"2.0","id":1,"method":"public/subscribe","params":{"channels":["weather.today"]}})").texts.at(0));
  EXPECT_EQ(r["error"]["code"], -32602);
  r = Json::parse(Say(*s, "not json").texts.at(0));
  EXPECT_EQ(r["error"]["code"], -32700);
  Json channels = Json::array();
  for (int i = 0; i < 501; ++i) channels.push_back(absl::StrCat("ticker.X", i, ".100ms"));
  r = Json::parse(Say(*s, Json{{"jsonrpc", "2.0"}, {"id", 2}, {"method", "public/subscribe"},
                               {"params", {{"channels", channels}}}}.dump()).texts.at(0));
  EXPECT_EQ(r["error"]["code"], -32602) << "at most 500 channels a call";
  EXPECT_EQ(Violations("deribit"), Json({{"channels_per_subscribe", 1}}));
}

TEST_F(WsSessionTest, DeribitQuoteIsTheTopOfTheRestBookWheneverItChanges) {
  Make();
  auto s = Open("/ws/api/v2");
  Json ack = Json::parse(Say(*s, R"({"jsonrpc":"2.0","id":1,"method":"public/subscribe","params":{"channels":["quote.BTC-PERPETUAL"]}})").texts.at(0));
  EXPECT_EQ(ack["result"][0], "quote.BTC-PERPETUAL");
  WsOut out = Run(*s, 30);
  ASSERT_GT(out.texts.size(), 3u);
  Json prev;
  for (const std::string& t : out.texts) {
    Json d = Json::parse(t)["params"]["data"];
    EXPECT_EQ(d["instrument_name"], "BTC-PERPETUAL");
    if (!prev.is_null()) {
      EXPECT_GT(d["timestamp"].get<int64_t>(), prev["timestamp"].get<int64_t>());
      d["timestamp"] = prev["timestamp"];
      EXPECT_NE(d, prev) << "a push without a change";
    }
    prev = Json::parse(t)["params"]["data"];
  }
  Json rest = Json::parse(Get("1.1.1.1", "/api/v2/public/get_order_book",
                              {{"instrument_name", "BTC-PERPETUAL"}, {"depth", "1"}}).body)["result"];
  EXPECT_EQ(prev["best_bid_price"], rest["bids"][0][0]);
  EXPECT_EQ(prev["best_bid_amount"], rest["bids"][0][1]);
  EXPECT_EQ(prev["best_ask_price"], rest["asks"][0][0]);
  EXPECT_EQ(prev["best_ask_amount"], rest["asks"][0][1]);
}

TEST_F(WsSessionTest, DeribitTickerIsThePublicTicker) {
  Make();
  auto s = Open("/ws/api/v2");
  Say(*s, R"({"jsonrpc":"2.0","id":1,"method":"public/subscribe","params":{"channels":["ticker.ETH-PERPETUAL.100ms"]}})");
  WsOut out = Run(*s, 3);
  ASSERT_FALSE(out.texts.empty());
  Json pushed = Json::parse(out.texts.back())["params"]["data"];
  Json rest = Json::parse(Get("1.1.1.1", "/api/v2/public/ticker", {{"instrument_name", "ETH-PERPETUAL"}}).body)["result"];
  EXPECT_EQ(pushed, rest);
}

TEST_F(WsSessionTest, DeribitChartPushesTheOpenCandleAndItsFinalValueBeforeTheNext) {
  Make();
  auto s = Open("/ws/api/v2");
  Json bad = Json::parse(Say(*s, R"({"jsonrpc":"2.0","id":1,"method":"public/subscribe","params":{"channels":["chart.trades.BTC-PERPETUAL.240"]}})").texts.at(0));
  EXPECT_EQ(bad["error"]["code"], -32602) << "240 minutes is not a Deribit resolution";
  Say(*s, R"({"jsonrpc":"2.0","id":2,"method":"public/subscribe","params":{"channels":["chart.trades.BTC-PERPETUAL.1"]}})");
  clock_.AdvanceBy(absl::Seconds(55));
  WsOut out = Run(*s, 100);
  ASSERT_GE(out.texts.size(), 15u) << "the open candle every 500 ms";
  int64_t prev_tick = 0;
  Json last_of_prev;
  int rollovers = 0;
  for (const std::string& t : out.texts) {
    Json d = Json::parse(t)["params"]["data"];
    int64_t tick = d["tick"];
    EXPECT_EQ(tick % 60'000, 0);
    EXPECT_GE(tick, prev_tick);
    if (prev_tick > 0 && tick > prev_tick) {
      ++rollovers;
      // The last push of a candle is its final value: the REST chart's.
      Json rest = Json::parse(Get("1.1.1.1", "/api/v2/public/get_tradingview_chart_data",
                                  {{"instrument_name", "BTC-PERPETUAL"}, {"resolution", "1"},
                                   {"start_timestamp", absl::StrCat(prev_tick)}, {"end_timestamp", absl::StrCat(prev_tick)}})
                                  .body)["result"];
      EXPECT_EQ(last_of_prev["close"], rest["close"][0]);
      EXPECT_EQ(last_of_prev["high"], rest["high"][0]);
      EXPECT_EQ(last_of_prev["low"], rest["low"][0]);
      EXPECT_EQ(last_of_prev["volume"], rest["volume"][0]);
      EXPECT_EQ(last_of_prev["cost"], rest["cost"][0]);
    }
    prev_tick = tick;
    last_of_prev = d;
  }
  EXPECT_EQ(rollovers, 1);
}

TEST_F(WsSessionTest, UnknownPathsAreRefused) {
  Make();
  std::string error;
  EXPECT_EQ(OpenWsSession(*sim_, "/nowhere", {}, "10.0.0.1", clock_.Now(), &error), nullptr);
  EXPECT_THAT(error, HasSubstr("/nowhere"));
}

}  // namespace
}  // namespace marketprism::sim
