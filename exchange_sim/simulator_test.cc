#include "exchange_sim/simulator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "tests/testing/fake_clock.h"

namespace marketprism::sim {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

// 2026-11-18T00:00:00Z, a minute (and day) boundary.
const absl::Time kMinute = absl::FromUnixSeconds(1'795'046'400);

class SimulatorTest : public ::testing::Test {
 protected:
  void Make(SimOptions o) {
    auto s = Simulator::Create(std::move(o), clock_);
    ASSERT_TRUE(s.ok()) << s.status();
    sim_ = std::move(*s);
  }

  HttpResponse Get(const std::string& ip, const std::string& path,
                   common::QueryParams query = {}) {
    HttpRequest r;
    r.path = path;
    r.query = std::move(query);
    r.peer_ip = ip;
    return sim_->Handle(r);
  }

  HttpResponse Post(const std::string& ip, const std::string& path, const std::string& body) {
    HttpRequest r;
    r.method = "POST";
    r.path = path;
    r.body = body;
    r.peer_ip = ip;
    return sim_->Handle(r);
  }

  static std::string HeaderOf(const HttpResponse& r, const std::string& name) {
    for (const auto& [k, v] : r.headers) {
      if (k == name) return v;
    }
    return "";
  }

  testing::FakeClock clock_{kMinute + absl::Seconds(1)};
  std::unique_ptr<Simulator> sim_;
};

// ---- Binance ---------------------------------------------------------------

TEST_F(SimulatorTest, BinanceOrdersAreCountedPerApiKeyAcrossIps) {
  Make(SimOptions{});
  auto order = [&](const std::string& ip, const std::string& key, bool signed_ = true) {
    HttpRequest r;
    r.method = "POST";
    r.path = "/api/v3/order";
    r.query = {{"symbol", "BTCUSDT"}, {"side", "BUY"}, {"type", "LIMIT"}};
    if (signed_) r.query.emplace_back("signature", "abc");
    r.peer_ip = ip;
    r.api_key = key;
    return sim_->Handle(r);
  };
  EXPECT_EQ(order("10.0.0.1", "").status, 401);
  EXPECT_THAT(order("10.0.0.1", "K1", false).body, HasSubstr("signature"));
  // 50 per 10 s for the key, whichever of two IPs sends them.
  for (int i = 0; i < 50; ++i) {
    HttpResponse r = order(i % 2 ? "10.0.0.1" : "10.0.0.2", "K1");
    ASSERT_EQ(r.status, 200) << i << " " << r.body;
    EXPECT_EQ(HeaderOf(r, "X-MBX-ORDER-COUNT-10S"), absl::StrCat(i + 1));
  }
  HttpResponse full = order("10.0.0.3", "K1");
  EXPECT_EQ(full.status, 429);
  EXPECT_THAT(full.body, HasSubstr("-1015"));
  EXPECT_FALSE(HeaderOf(full, "Retry-After").empty());
  EXPECT_EQ(order("10.0.0.3", "K2").status, 200) << "another account is not affected";
  Json stats = Json::parse(sim_->StatsJson());
  EXPECT_EQ(stats["exchanges"]["binance_spot"]["accounts"]["K1"]["orders"], 50);
  EXPECT_EQ(stats["exchanges"]["binance_spot"]["accounts"]["K1"]["rejections"], 1);
  EXPECT_EQ(stats["exchanges"]["binance_spot"]["totals"]["rejections"]["-1015"], 1);
  // The next 10-second window takes orders again.
  clock_.AdvanceBy(absl::Seconds(10));
  EXPECT_EQ(order("10.0.0.3", "K1").status, 200);
}

TEST_F(SimulatorTest, BinanceFirstRejectionIsExactlyAtTheBudget) {
  Make(SimOptions{.limit_overrides = {"binance_spot.REQUEST_WEIGHT=100"}});
  for (int i = 1; i <= 20; ++i) {
    HttpResponse r = Get("10.0.0.1", "/api/v3/depth", {{"symbol", "BTCUSDT"}, {"limit", "100"}});
    ASSERT_EQ(r.status, 200) << i;
    EXPECT_EQ(HeaderOf(r, "X-MBX-USED-WEIGHT-1M"), absl::StrCat(5 * i)) << "exact used weight";
  }
  HttpResponse r = Get("10.0.0.1", "/api/v3/ping");
  EXPECT_EQ(r.status, 429) << "101 of 100";
  EXPECT_EQ(HeaderOf(r, "X-MBX-USED-WEIGHT-1M"), "100") << "a refused request is not counted";
  EXPECT_EQ(HeaderOf(r, "Retry-After"), "59") << "seconds to the next minute";
  EXPECT_EQ(Json::parse(r.body)["code"], -1003);
  EXPECT_THAT(r.body, HasSubstr("current limit is 100 request weight per 1 MINUTE"));
  // Another IP is unaffected.
  HttpResponse other = Get("10.0.0.2", "/api/v3/ping");
  EXPECT_EQ(other.status, 200);
  EXPECT_EQ(HeaderOf(other, "X-MBX-USED-WEIGHT-1M"), "1");
}

TEST_F(SimulatorTest, BinanceAHeavyRequestIsRefusedWhenItWouldNotFit) {
  Make(SimOptions{.limit_overrides = {"binance_spot.REQUEST_WEIGHT=30"}});
  ASSERT_EQ(Get("10.0.0.1", "/api/v3/depth", {{"symbol", "BTCUSDT"}, {"limit", "101"}}).status,
            200);  // 25
  EXPECT_EQ(Get("10.0.0.1", "/api/v3/depth", {{"symbol", "BTCUSDT"}}).status, 200);  // 30
  EXPECT_EQ(Get("10.0.0.1", "/api/v3/depth", {{"symbol", "BTCUSDT"}}).status, 429);  // 35
}

TEST_F(SimulatorTest, BinanceWindowResetsOnTheClockMinute) {
  Make(SimOptions{.limit_overrides = {"binance_spot.REQUEST_WEIGHT=10"}});
  clock_.SetNow(kMinute + absl::Milliseconds(59'500));
  for (int i = 0; i < 5; ++i) ASSERT_EQ(Get("10.0.0.1", "/api/v3/avgPrice", {{"symbol", "BTCUSDT"}}).status, 200);
  HttpResponse r = Get("10.0.0.1", "/api/v3/ping");
  ASSERT_EQ(r.status, 429);
  EXPECT_EQ(HeaderOf(r, "Retry-After"), "1") << "0.5 s rounds up";
  clock_.SetNow(kMinute + absl::Seconds(60) - absl::Microseconds(1));
  EXPECT_EQ(Get("10.0.0.2", "/api/v3/ping").status, 200);  // a bystander
  clock_.SetNow(kMinute + absl::Seconds(60));
  r = Get("10.0.0.1", "/api/v3/ping");
  EXPECT_EQ(r.status, 200) << "new window at :00";
  EXPECT_EQ(HeaderOf(r, "X-MBX-USED-WEIGHT-1M"), "1");
}

TEST_F(SimulatorTest, BinanceBansGrowForIpsThatIgnore429) {
  SimOptions o{.limit_overrides = {"binance_spot.REQUEST_WEIGHT=1"}};
  o.ban.strikes_to_ban = 2;
  o.ban.schedule = {absl::Seconds(2), absl::Seconds(4), absl::Seconds(8)};
  Make(o);
  ASSERT_EQ(Get("10.0.0.1", "/api/v3/ping").status, 200);
  EXPECT_EQ(Get("10.0.0.1", "/api/v3/ping").status, 429);  // the first 429
  EXPECT_EQ(Get("10.0.0.1", "/api/v3/ping").status, 429);  // strike 1
  HttpResponse ban = Get("10.0.0.1", "/api/v3/ping");      // strike 2
  ASSERT_EQ(ban.status, 418);
  EXPECT_EQ(HeaderOf(ban, "Retry-After"), "2");
  EXPECT_THAT(ban.body, HasSubstr("IP banned until"));
  clock_.AdvanceBy(absl::Milliseconds(1500));
  HttpResponse during = Get("10.0.0.1", "/api/v3/ping");
  EXPECT_EQ(during.status, 418);
  EXPECT_EQ(HeaderOf(during, "Retry-After"), "1");
  EXPECT_EQ(Get("10.0.0.2", "/api/v3/ping").status, 200) << "a ban is per IP";
  // The ban ends, the window is still full, the IP offends again: a longer ban.
  clock_.AdvanceBy(absl::Milliseconds(500));
  EXPECT_EQ(Get("10.0.0.1", "/api/v3/ping").status, 429);
  EXPECT_EQ(Get("10.0.0.1", "/api/v3/ping").status, 429);
  ban = Get("10.0.0.1", "/api/v3/ping");
  ASSERT_EQ(ban.status, 418);
  EXPECT_EQ(HeaderOf(ban, "Retry-After"), "4");
  clock_.AdvanceBy(absl::Seconds(4));
  Get("10.0.0.1", "/api/v3/ping");
  Get("10.0.0.1", "/api/v3/ping");
  EXPECT_EQ(HeaderOf(Get("10.0.0.1", "/api/v3/ping"), "Retry-After"), "8");
  clock_.AdvanceBy(absl::Seconds(8));
  Get("10.0.0.1", "/api/v3/ping");
  Get("10.0.0.1", "/api/v3/ping");
  EXPECT_EQ(HeaderOf(Get("10.0.0.1", "/api/v3/ping"), "Retry-After"), "8") << "the last step repeats";
  Json stats = Json::parse(sim_->StatsJson());
  EXPECT_EQ(stats["exchanges"]["binance_spot"]["ips"]["10.0.0.1"]["bans"], 4);
}

TEST_F(SimulatorTest, BinanceBackingOffAfterA429EarnsNoBan) {
  SimOptions o{.limit_overrides = {"binance_spot.REQUEST_WEIGHT=1"}};
  o.ban.strikes_to_ban = 1;
  Make(o);
  ASSERT_EQ(Get("10.0.0.1", "/api/v3/ping").status, 200);
  HttpResponse r = Get("10.0.0.1", "/api/v3/ping");
  ASSERT_EQ(r.status, 429);
  clock_.SetNow(kMinute + absl::Seconds(60));  // waited the Retry-After
  EXPECT_EQ(Get("10.0.0.1", "/api/v3/ping").status, 200);
  EXPECT_EQ(Get("10.0.0.1", "/api/v3/ping").status, 429) << "a fresh 429, not a ban";
}

TEST_F(SimulatorTest, BinanceForgivesAfterAQuietPeriod) {
  SimOptions o{.limit_overrides = {"binance_spot.REQUEST_WEIGHT=1"}};
  o.ban.strikes_to_ban = 1;
  o.ban.schedule = {absl::Seconds(2), absl::Seconds(60)};
  o.ban.forgive_after = absl::Hours(1);
  Make(o);
  auto offend = [&] {
    Get("10.0.0.1", "/api/v3/ping");
    Get("10.0.0.1", "/api/v3/ping");
    return HeaderOf(Get("10.0.0.1", "/api/v3/ping"), "Retry-After");
  };
  EXPECT_EQ(offend(), "2");
  clock_.AdvanceBy(absl::Hours(2));
  EXPECT_EQ(offend(), "2") << "forgiven: back to the first step";
}

TEST_F(SimulatorTest, BinanceRawRequestsCountOnePerRequest) {
  Make(SimOptions{.limit_overrides = {"binance_spot.RAW_REQUESTS=3"}});
  for (int i = 0; i < 3; ++i) ASSERT_EQ(Get("10.0.0.1", "/api/v3/ping").status, 200);
  HttpResponse r = Get("10.0.0.1", "/api/v3/ping");
  EXPECT_EQ(r.status, 429);
  EXPECT_THAT(r.body, HasSubstr("3 requests per 5 MINUTE"));
  EXPECT_EQ(HeaderOf(r, "Retry-After"), absl::StrCat(300 - 1)) << "5-minute window from :00";
}

TEST_F(SimulatorTest, BinanceExchangeInfoPublishesWhatIsEnforced) {
  Make(SimOptions{.limit_overrides = {"binance_spot.REQUEST_WEIGHT=600"}});
  Json info = Json::parse(Get("10.0.0.1", "/api/v3/exchangeInfo").body);
  ASSERT_TRUE(info["rateLimits"].is_array());
  EXPECT_EQ(info["rateLimits"][0],
            Json({{"rateLimitType", "REQUEST_WEIGHT"}, {"interval", "MINUTE"}, {"intervalNum", 1},
                  {"limit", 600}}));
  EXPECT_EQ(info["rateLimits"][1]["rateLimitType"], "RAW_REQUESTS");
  EXPECT_EQ(info["rateLimits"][1]["intervalNum"], 5);
  ASSERT_TRUE(sim_->SetLimit("binance_spot.REQUEST_WEIGHT=300").ok());
  info = Json::parse(Get("10.0.0.1", "/api/v3/exchangeInfo").body);
  EXPECT_EQ(info["rateLimits"][0]["limit"], 300);
  Json usdm = Json::parse(Get("10.0.0.1", "/fapi/v1/exchangeInfo").body);
  EXPECT_EQ(usdm["rateLimits"][0]["limit"], 2400);
}

TEST_F(SimulatorTest, BinanceLoweringALimitAppliesToLiveWindows) {
  Make(SimOptions{});
  for (int i = 0; i < 10; ++i) Get("10.0.0.1", "/api/v3/ping");
  HttpResponse r = Post("127.0.0.1", "/sim/limits", R"({"binance_spot.REQUEST_WEIGHT": 10})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Get("10.0.0.1", "/api/v3/ping").status, 429);
}

TEST_F(SimulatorTest, BinanceShapes) {
  Make(SimOptions{});
  EXPECT_EQ(Get("1.1.1.1", "/api/v3/ping").body, "{}");
  Json t = Json::parse(Get("1.1.1.1", "/api/v3/time").body);
  EXPECT_EQ(t["serverTime"], absl::ToUnixMillis(clock_.Now()));
  Json depth = Json::parse(Get("1.1.1.1", "/api/v3/depth", {{"symbol", "BTCUSDT"}, {"limit", "7"}}).body);
  EXPECT_EQ(depth["bids"].size(), 7u);
  EXPECT_EQ(depth["lastUpdateId"], absl::ToUnixMillis(clock_.Now()) / 100 * 10);
  Json klines = Json::parse(Get("1.1.1.1", "/api/v3/klines",
                                {{"symbol", "BTCUSDT"}, {"interval", "1h"}, {"limit", "1000"},
                                 {"endTime", absl::StrCat(absl::ToUnixMillis(clock_.Now() - absl::Hours(24 * 31)))}})
                            .body);
  ASSERT_EQ(klines.size(), 1000u) << "30+ days of history";
  EXPECT_EQ(klines[0].size(), 12u);
  EXPECT_EQ(klines[1][0].get<int64_t>() - klines[0][0].get<int64_t>(), 3'600'000);
  Json ticker = Json::parse(Get("1.1.1.1", "/api/v3/ticker/24hr", {{"symbol", "ETHUSDT"}}).body);
  for (const char* k : {"symbol", "priceChange", "lastPrice", "bidPrice", "askPrice", "openPrice",
                        "highPrice", "lowPrice", "volume", "openTime", "closeTime", "firstId",
                        "lastId", "count"}) {
    EXPECT_TRUE(ticker.contains(k)) << k;
  }
  Json all = Json::parse(Get("1.1.1.1", "/api/v3/ticker/price").body);
  EXPECT_EQ(all.size(), 9u);
  Json trades = Json::parse(Get("1.1.1.1", "/api/v3/trades", {{"symbol", "BTCUSDT"}, {"limit", "3"}}).body);
  ASSERT_EQ(trades.size(), 3u);
  EXPECT_EQ(trades[1]["id"].get<int64_t>(), trades[0]["id"].get<int64_t>() + 1);
  Json fdepth = Json::parse(Get("1.1.1.1", "/fapi/v1/depth", {{"symbol", "BTCUSDT"}, {"limit", "5"}}).body);
  EXPECT_TRUE(fdepth.contains("E"));
  EXPECT_EQ(fdepth["asks"].size(), 5u);
}

TEST_F(SimulatorTest, BinanceBadInputGetsItsOwnErrorsAndIsCharged) {
  Make(SimOptions{});
  HttpResponse r = Get("1.1.1.1", "/api/v3/depth", {{"symbol", "BTCUSDT"}, {"limit", "ten"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Json::parse(r.body)["code"], -1100);
  EXPECT_EQ(HeaderOf(r, "X-MBX-USED-WEIGHT-1M"), "5") << "charged the default weight";
  r = Get("1.1.1.1", "/api/v3/depth");
  EXPECT_EQ(Json::parse(r.body)["code"], -1102);
  r = Get("1.1.1.1", "/api/v3/depth", {{"symbol", "NOPE"}});
  EXPECT_EQ(Json::parse(r.body)["code"], -1121);
  r = Get("1.1.1.1", "/api/v3/klines", {{"symbol", "BTCUSDT"}, {"interval", "7m"}});
  EXPECT_EQ(Json::parse(r.body)["code"], -1120);
  r = Get("1.1.1.1", "/api/v3/nothing");
  EXPECT_EQ(r.status, 404);
  r = Get("1.1.1.1", "/no/such/exchange");
  EXPECT_EQ(r.status, 404);
  r = Get("1.1.1.1", "/fapi/v1/depth", {{"symbol", "BTCUSDT"}, {"limit", "30"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr("not one of"));
}

// ---- OKX -------------------------------------------------------------------

TEST_F(SimulatorTest, OkxRollingTwoSecondBudgetsPerEndpoint) {
  Make(SimOptions{.limit_overrides = {"okx.market/books=5"}});
  common::QueryParams q = {{"instId", "BTC-USDT"}};
  for (int i = 0; i < 5; ++i) {
    clock_.AdvanceBy(absl::Milliseconds(100));
    ASSERT_EQ(Get("10.0.0.1", "/api/v5/market/books", q).status, 200) << i;
  }
  absl::Time first = kMinute + absl::Seconds(1) + absl::Milliseconds(100);
  HttpResponse r = Get("10.0.0.1", "/api/v5/market/books", q);
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(Json::parse(r.body)["code"], "50011");
  EXPECT_EQ(Get("10.0.0.1", "/api/v5/market/ticker", q).status, 200) << "another endpoint's budget";
  EXPECT_EQ(Get("10.0.0.2", "/api/v5/market/books", q).status, 200) << "another IP";
  clock_.SetNow(first + absl::Seconds(2) - absl::Microseconds(1));
  EXPECT_EQ(Get("10.0.0.1", "/api/v5/market/books", q).status, 429);
  clock_.SetNow(first + absl::Seconds(2));
  EXPECT_EQ(Get("10.0.0.1", "/api/v5/market/books", q).status, 200) << "the oldest expired";
  EXPECT_EQ(Get("10.0.0.1", "/api/v5/market/books", q).status, 429) << "only one slot freed";
}

TEST_F(SimulatorTest, OkxShapesAndErrors) {
  Make(SimOptions{});
  Json t = Json::parse(Get("1.1.1.1", "/api/v5/public/time").body);
  EXPECT_EQ(t["code"], "0");
  EXPECT_EQ(t["data"][0]["ts"], absl::StrCat(absl::ToUnixMillis(clock_.Now())));
  Json books = Json::parse(Get("1.1.1.1", "/api/v5/market/books", {{"instId", "ETH-USDT"}, {"sz", "3"}}).body);
  EXPECT_EQ(books["data"][0]["asks"].size(), 3u);
  EXPECT_EQ(books["data"][0]["asks"][0].size(), 4u);
  Json candles = Json::parse(Get("1.1.1.1", "/api/v5/market/candles", {{"instId", "BTC-USDT"}, {"bar", "1H"}, {"limit", "300"}}).body);
  EXPECT_EQ(candles["data"].size(), 300u);
  EXPECT_GT(std::stoll(candles["data"][0][0].get<std::string>()),
            std::stoll(candles["data"][1][0].get<std::string>()))
      << "newest first";
  EXPECT_EQ(candles["data"][0][8], "0") << "the current bar is unconfirmed";
  Json old = Json::parse(Get("1.1.1.1", "/api/v5/market/history-candles",
                             {{"instId", "BTC-USDT"}, {"bar", "1D"},
                              {"after", absl::StrCat(absl::ToUnixMillis(clock_.Now() - absl::Hours(24 * 30)))}})
                         .body);
  EXPECT_EQ(old["data"].size(), 100u);
  HttpResponse r = Get("1.1.1.1", "/api/v5/market/books");
  EXPECT_EQ(Json::parse(r.body)["code"], "51000");
  r = Get("1.1.1.1", "/api/v5/market/books", {{"instId", "NOPE-USDT"}});
  EXPECT_EQ(Json::parse(r.body)["code"], "51001");
  r = Get("1.1.1.1", "/api/v5/market/tickers");
  EXPECT_EQ(Json::parse(r.body)["code"], "51000");
  Json tickers = Json::parse(Get("1.1.1.1", "/api/v5/market/tickers", {{"instType", "SWAP"}}).body);
  EXPECT_EQ(tickers["data"].size(), 2u);
}

// ---- Deribit ---------------------------------------------------------------

TEST_F(SimulatorTest, DeribitCreditBucket) {
  Make(SimOptions{});
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(Get("10.0.0.1", "/api/v2/public/get_time").status, 200) << i;
  }
  HttpResponse r = Get("10.0.0.1", "/api/v2/public/get_time");
  EXPECT_EQ(r.status, 429);
  Json err = Json::parse(r.body);
  EXPECT_EQ(err["error"]["code"], 10028);
  EXPECT_EQ(err["error"]["message"], "too_many_requests");
  EXPECT_EQ(Get("10.0.0.2", "/api/v2/public/get_time").status, 200);
  clock_.AdvanceBy(absl::Microseconds(49'999));
  EXPECT_EQ(Get("10.0.0.1", "/api/v2/public/get_time").status, 429);
  clock_.AdvanceBy(absl::Microseconds(1));
  EXPECT_EQ(Get("10.0.0.1", "/api/v2/public/get_time").status, 200) << "500 credits refilled";
  // get_instruments has its own bucket of 500,000 at 10,000 a request.
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(Get("10.0.0.3", "/api/v2/public/get_instruments", {{"currency", "BTC"}}).status, 200);
  }
  EXPECT_EQ(Get("10.0.0.3", "/api/v2/public/get_instruments", {{"currency", "BTC"}}).status, 429);
  EXPECT_EQ(Get("10.0.0.3", "/api/v2/public/get_time").status, 200);
}

TEST_F(SimulatorTest, DeribitJsonRpcOverHttp) {
  Make(SimOptions{});
  Json r = Json::parse(Post("1.1.1.1", "/api/v2",
                            R"({"jsonrpc":"2.0","id":7,"method":"public/get_order_book","params":{"instrument_name":"BTC-PERPETUAL","depth":5}})")
                           .body);
  EXPECT_EQ(r["id"], 7);
  EXPECT_EQ(r["result"]["bids"].size(), 5u);
  EXPECT_EQ(r["result"]["change_id"], absl::ToUnixMillis(clock_.Now()) / 100);
  r = Json::parse(Get("1.1.1.1", "/api/v2/public/get_time").body);
  EXPECT_EQ(r["result"], absl::ToUnixMillis(clock_.Now()));
  EXPECT_FALSE(r.contains("id"));
  Json chart = Json::parse(
      Get("1.1.1.1", "/api/v2/public/get_tradingview_chart_data",
          {{"instrument_name", "BTC-PERPETUAL"}, {"resolution", "60"},
           {"start_timestamp", absl::StrCat(absl::ToUnixMillis(clock_.Now() - absl::Hours(24 * 30)))},
           {"end_timestamp", absl::StrCat(absl::ToUnixMillis(clock_.Now()))}})
          .body);
  EXPECT_EQ(chart["result"]["status"], "ok");
  EXPECT_GE(chart["result"]["ticks"].size(), 24u * 30);
  // Malformed input: Deribit's own error shapes.
  EXPECT_EQ(Json::parse(Post("1.1.1.1", "/api/v2", "{not json").body)["error"]["code"], -32700);
  EXPECT_EQ(Json::parse(Post("1.1.1.1", "/api/v2", "[1,2]").body)["error"]["code"], -32600);
  EXPECT_EQ(Json::parse(Get("1.1.1.1", "/api/v2/public/nope").body)["error"]["code"], -32601);
  EXPECT_EQ(Json::parse(Get("1.1.1.1", "/api/v2/private/buy").body)["error"]["code"], 13009);
  Json bad = Json::parse(Get("1.1.1.1", "/api/v2/public/ticker").body);
  EXPECT_EQ(bad["error"]["code"], -32602);
  EXPECT_EQ(bad["error"]["data"]["param"], "instrument_name");
}

TEST_F(SimulatorTest, InvalidUtf8InParametersIsHandled) {
  Make(SimOptions{});
  const std::string bad = "\xff\xfe";
  EXPECT_EQ(Get("1.1.1.1", "/api/v2/public/get_time", {{"garbage", bad}}).status, 200);
  EXPECT_EQ(Get("1.1.1.1", "/api/v2/public/ticker", {{"instrument_name", bad}}).status, 400);
  EXPECT_EQ(Get("1.1.1.1", "/api/v3/depth", {{"symbol", "BTCUSDT"}, {"limit", bad}}).status, 400);
  EXPECT_EQ(Get("1.1.1.1", "/api/v3/ticker/24hr", {{"symbols", bad}}).status, 400);
  EXPECT_EQ(Get("1.1.1.1", "/api/v5/market/books", {{"instId", bad}}).status, 400);
}

// ---- Faults and admin -------------------------------------------------------

TEST_F(SimulatorTest, FaultsAtRuntime) {
  Make(SimOptions{});
  ASSERT_EQ(Post("127.0.0.1", "/sim/faults", R"({"latency_ms": 25, "clock_offset_ms": -5000})").status,
            200);
  HttpResponse r = Get("1.1.1.1", "/api/v3/time");
  EXPECT_EQ(r.delay, absl::Milliseconds(25));
  EXPECT_EQ(Json::parse(r.body)["serverTime"], absl::ToUnixMillis(clock_.Now()) - 5000);
  ASSERT_EQ(Post("127.0.0.1", "/sim/faults", R"({"error_rate": 1})").status, 200);
  r = Get("1.1.1.1", "/api/v3/ping");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(HeaderOf(r, "X-MBX-USED-WEIGHT-1M"), "1") << "an injected error is not charged";
  ASSERT_EQ(Post("127.0.0.1", "/sim/faults", R"({"error_rate": 0, "maintenance_seconds": 10})").status,
            200);
  EXPECT_EQ(Get("1.1.1.1", "/api/v5/public/time").status, 503);
  EXPECT_EQ(Json::parse(Get("1.1.1.1", "/api/v2/public/get_time").body)["error"]["code"], 13028);
  clock_.AdvanceBy(absl::Seconds(10));
  EXPECT_EQ(Get("1.1.1.1", "/api/v3/ping").status, 200);
}

TEST_F(SimulatorTest, AdminRejectsBadInputByName) {
  Make(SimOptions{});
  EXPECT_THAT(Post("127.0.0.1", "/sim/faults", "nope").body, HasSubstr("JSON object"));
  EXPECT_THAT(Post("127.0.0.1", "/sim/faults", R"({"latency": 1})").body, HasSubstr("unknown fault \\\"latency"));
  EXPECT_THAT(Post("127.0.0.1", "/sim/faults", R"({"error_rate": 2})").body, HasSubstr("within [0, 1]"));
  EXPECT_THAT(Post("127.0.0.1", "/sim/limits", R"({"kraken.X": 1})").body, HasSubstr("unknown exchange"));
  EXPECT_EQ(Get("127.0.0.1", "/sim/nothing").status, 405);
}

TEST_F(SimulatorTest, CreateRejectsBadOptions) {
  EXPECT_FALSE(Simulator::Create(SimOptions{.limit_overrides = {"binance_spot.NOPE=1"}}, clock_).ok());
  SimOptions o;
  o.ban.schedule.clear();
  EXPECT_FALSE(Simulator::Create(o, clock_).ok());
  o = SimOptions{.rules_file = "/nonexistent.json"};
  EXPECT_FALSE(Simulator::Create(o, clock_).ok());
}

TEST_F(SimulatorTest, StatsCountEverythingPerExchangeAndIp) {
  Make(SimOptions{.limit_overrides = {"binance_spot.REQUEST_WEIGHT=3", "okx.public/time=1"}});
  for (int i = 0; i < 4; ++i) Get("10.0.0.1", "/api/v3/ping");
  Get("10.0.0.1", "/api/v5/public/time");
  Get("10.0.0.1", "/api/v5/public/time");
  clock_.SetNow(kMinute + absl::Seconds(61));
  Get("10.0.0.1", "/api/v3/ping");
  Json s = Json::parse(sim_->StatsJson());
  Json ip = s["exchanges"]["binance_spot"]["ips"]["10.0.0.1"];
  EXPECT_EQ(ip["requests"], 5);
  EXPECT_EQ(ip["accepted"], 4);
  EXPECT_EQ(ip["rejections"]["429"], 1);
  EXPECT_EQ(ip["pools"]["REQUEST_WEIGHT"]["used"], 1);
  EXPECT_EQ(ip["pools"]["REQUEST_WEIGHT"]["peak"], 3);
  ASSERT_EQ(ip["pools"]["REQUEST_WEIGHT"]["windows"].size(), 1u);
  EXPECT_EQ(ip["pools"]["REQUEST_WEIGHT"]["windows"][0]["used"], 3);
  EXPECT_EQ(ip["pools"]["REQUEST_WEIGHT"]["windows"][0]["start_ms"], absl::ToUnixMillis(kMinute));
  EXPECT_EQ(s["exchanges"]["okx"]["totals"]["rejections"]["50011"], 1);
}

}  // namespace
}  // namespace marketprism::sim
