#include "common/rules/rules.h"

#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/testing/status_matchers.h"

namespace marketprism::common {
namespace {

using ::marketprism::testing::StatusIs;
using ::testing::HasSubstr;
using Json = nlohmann::json;

TEST(RulesPathTest, FlagThenEnvironmentThenShipped) {
  std::map<std::string, std::string> env;
  auto getenv = [&env](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  EXPECT_EQ(RulesBook::PathFor("", getenv), MP_RULES_FILE);
  EXPECT_EQ(RulesBook::PathFor("", nullptr), MP_RULES_FILE);
  env["MP_RULES_FILE"] = "";
  EXPECT_EQ(RulesBook::PathFor("", getenv), MP_RULES_FILE);
  env["MP_RULES_FILE"] = "/etc/env.json";
  EXPECT_EQ(RulesBook::PathFor("", getenv), "/etc/env.json");
  EXPECT_EQ(RulesBook::PathFor("/etc/flag.json", getenv), "/etc/flag.json");
}

class ShippedRulesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto book = RulesBook::LoadFile(MP_RULES_FILE);
    ASSERT_TRUE(book.ok()) << book.status();
    book_ = std::make_unique<RulesBook>(std::move(*book));
  }

  // Units charged in `pool` for GET `path` with `query`; -1 on error.
  int64_t Units(const std::string& exchange, const std::string& path, const QueryParams& query,
                const std::string& pool, const std::string& method = "GET") {
    const ExchangeRules* ex = book_->Find(exchange);
    EXPECT_NE(ex, nullptr) << exchange;
    auto cost = ex->Price(method, path, query);
    if (!cost.ok()) return -1;
    return cost->UnitsIn(ex->PoolIndex(pool));
  }

  absl::Status PriceError(const std::string& exchange, const std::string& path,
                          const QueryParams& query) {
    return book_->Find(exchange)->Price("GET", path, query).status();
  }

  std::unique_ptr<RulesBook> book_;
};

TEST_F(ShippedRulesTest, HasTheFourExchanges) {
  EXPECT_THAT(book_->ExchangeNames(),
              ::testing::UnorderedElementsAre("binance_spot", "binance_usdm", "okx", "deribit"));
}

// ---- Binance spot ----------------------------------------------------------

TEST_F(ShippedRulesTest, BinanceSpotOrdersChargeTheAccountPoolsNamedByTheApiKey) {
  const ExchangeRules* ex = book_->Find("binance_spot");
  EXPECT_EQ(Units("binance_spot", "/api/v3/order", {{"symbol", "BTCUSDT"}}, "ORDERS_10S", "POST"), 1);
  EXPECT_EQ(Units("binance_spot", "/api/v3/order", {{"symbol", "BTCUSDT"}}, "ORDERS_1D", "POST"), 1);
  EXPECT_EQ(Units("binance_spot", "/api/v3/order", {{"symbol", "BTCUSDT"}}, "REQUEST_WEIGHT", "POST"), 1);
  auto order = ex->Price("POST", "/api/v3/order", {});
  ASSERT_TRUE(order.ok());
  EXPECT_TRUE(ex->ChargesAccount(*order));
  EXPECT_FALSE(ex->ChargesAccount(*ex->Price("GET", "/api/v3/ping", {})));
  EXPECT_EQ(AccountOf(*ex, {{"Content-Type", "x"}, {"x-mbx-apikey", "K1"}}), "K1");
  EXPECT_EQ(AccountOf(*ex, {{"Content-Type", "x"}}), "");
  EXPECT_EQ(AccountOf(*book_->Find("okx"), {{"X-MBX-APIKEY", "K1"}}), "") << "OKX names no account header";
}

TEST_F(ShippedRulesTest, BinanceSpotFixedWeights) {
  const std::map<std::string, int64_t> expected = {
      {"/api/v3/ping", 1},          {"/api/v3/time", 1},     {"/api/v3/exchangeInfo", 20},
      {"/api/v3/trades", 25},       {"/api/v3/historicalTrades", 25},
      {"/api/v3/aggTrades", 4},     {"/api/v3/klines", 2},   {"/api/v3/uiKlines", 2},
      {"/api/v3/avgPrice", 2},      {"/api/v3/rateLimit/order", 40}};
  for (const auto& [path, weight] : expected) {
    EXPECT_EQ(Units("binance_spot", path, {{"symbol", "BTCUSDT"}}, "REQUEST_WEIGHT"), weight)
        << path;
    EXPECT_EQ(Units("binance_spot", path, {}, "RAW_REQUESTS"), 1) << path;
  }
}

TEST_F(ShippedRulesTest, BinanceSpotKlinesWeightIgnoresLimit) {
  EXPECT_EQ(Units("binance_spot", "/api/v3/klines", {{"limit", "1000"}}, "REQUEST_WEIGHT"), 2);
}

TEST_F(ShippedRulesTest, BinanceSpotDepthBandsAtEveryEdge) {
  auto depth = [&](const std::string& limit) {
    return Units("binance_spot", "/api/v3/depth", {{"symbol", "BTCUSDT"}, {"limit", limit}},
                 "REQUEST_WEIGHT");
  };
  EXPECT_EQ(Units("binance_spot", "/api/v3/depth", {{"symbol", "BTCUSDT"}}, "REQUEST_WEIGHT"), 5)
      << "default limit is 100";
  EXPECT_EQ(depth("1"), 5);
  EXPECT_EQ(depth("100"), 5);
  EXPECT_EQ(depth("101"), 25);
  EXPECT_EQ(depth("500"), 25);
  EXPECT_EQ(depth("501"), 50);
  EXPECT_EQ(depth("1000"), 50);
  EXPECT_EQ(depth("1001"), 250);
  EXPECT_EQ(depth("5000"), 250);
  EXPECT_EQ(depth("5001"), 250) << "above 5000 is truncated and priced as the top band";
  EXPECT_THAT(PriceError("binance_spot", "/api/v3/depth", {{"limit", "0"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("limit=0 is below")));
  EXPECT_THAT(PriceError("binance_spot", "/api/v3/depth", {{"limit", "ten"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("limit=\"ten\"")));
}

TEST_F(ShippedRulesTest, BinanceSpotTicker24hrBySymbols) {
  auto list = [](int n) {
    std::string s = "[";
    for (int i = 0; i < n; ++i) s += (i ? ",\"S" : "\"S") + std::to_string(i) + "\"";
    return s + "]";
  };
  auto w = [&](const QueryParams& q) {
    return Units("binance_spot", "/api/v3/ticker/24hr", q, "REQUEST_WEIGHT");
  };
  EXPECT_EQ(w({{"symbol", "BTCUSDT"}}), 2);
  EXPECT_EQ(w({}), 80);
  EXPECT_EQ(w({{"symbols", list(1)}}), 2);
  EXPECT_EQ(w({{"symbols", list(20)}}), 2);
  EXPECT_EQ(w({{"symbols", list(21)}}), 40);
  EXPECT_EQ(w({{"symbols", list(100)}}), 40);
  EXPECT_EQ(w({{"symbols", list(101)}}), 80);
  EXPECT_EQ(w({{"symbols", list(500)}}), 80);
  EXPECT_THAT(PriceError("binance_spot", "/api/v3/ticker/24hr", {{"symbols", "BTCUSDT"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("symbols")));
  EXPECT_THAT(PriceError("binance_spot", "/api/v3/ticker/24hr",
                         {{"symbol", "BTCUSDT"}, {"symbols", list(2)}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cannot both")));
}

TEST_F(ShippedRulesTest, BinanceSpotPriceAndBookTicker) {
  for (const std::string path : {"/api/v3/ticker/price", "/api/v3/ticker/bookTicker"}) {
    EXPECT_EQ(Units("binance_spot", path, {{"symbol", "BTCUSDT"}}, "REQUEST_WEIGHT"), 2) << path;
    EXPECT_EQ(Units("binance_spot", path, {}, "REQUEST_WEIGHT"), 4) << path;
    EXPECT_EQ(Units("binance_spot", path, {{"symbols", R"(["A","B","C"])"}}, "REQUEST_WEIGHT"), 4)
        << path;
  }
}

TEST_F(ShippedRulesTest, BinanceSpotRollingTickerPerSymbolWithCap) {
  for (const std::string path : {"/api/v3/ticker", "/api/v3/ticker/tradingDay"}) {
    auto w = [&](int n) {
      std::string s = "[";
      for (int i = 0; i < n; ++i) s += (i ? ",\"S" : "\"S") + std::to_string(i) + "\"";
      return Units("binance_spot", path, {{"symbols", s + "]"}}, "REQUEST_WEIGHT");
    };
    EXPECT_EQ(Units("binance_spot", path, {{"symbol", "BTCUSDT"}}, "REQUEST_WEIGHT"), 4);
    EXPECT_EQ(w(1), 4);
    EXPECT_EQ(w(49), 196);
    EXPECT_EQ(w(50), 200);
    EXPECT_EQ(w(51), 200) << "capped at 200 above 50 symbols";
    EXPECT_EQ(w(100), 200);
    EXPECT_EQ(w(101), -1) << "at most 100 symbols";
    EXPECT_THAT(PriceError("binance_spot", path, {}),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is required")));
  }
}

TEST_F(ShippedRulesTest, UnknownEndpointIsNotFoundWhenNoDefault) {
  EXPECT_THAT(PriceError("binance_spot", "/api/v3/nope", {}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/api/v3/nope")));
  EXPECT_EQ(Units("binance_spot", "/api/v3/ping", {}, "REQUEST_WEIGHT", "POST"), -1);
}

// ---- Binance USD-M ---------------------------------------------------------

TEST_F(ShippedRulesTest, BinanceUsdmFixedWeights) {
  for (const std::string path : {"/fapi/v1/ping", "/fapi/v1/time", "/fapi/v1/exchangeInfo"}) {
    EXPECT_EQ(Units("binance_usdm", path, {}, "REQUEST_WEIGHT"), 1) << path;
  }
  EXPECT_EQ(Units("binance_usdm", "/fapi/v1/ticker/24hr", {{"symbol", "BTCUSDT"}},
                  "REQUEST_WEIGHT"),
            1);
  EXPECT_EQ(Units("binance_usdm", "/fapi/v1/ticker/24hr", {}, "REQUEST_WEIGHT"), 40);
}

TEST_F(ShippedRulesTest, BinanceUsdmDepthOnlyListedValues) {
  auto depth = [&](const std::string& limit) {
    return Units("binance_usdm", "/fapi/v1/depth", {{"limit", limit}}, "REQUEST_WEIGHT");
  };
  EXPECT_EQ(Units("binance_usdm", "/fapi/v1/depth", {}, "REQUEST_WEIGHT"), 10) << "default 500";
  for (const char* v : {"5", "10", "20", "50"}) EXPECT_EQ(depth(v), 2) << v;
  EXPECT_EQ(depth("100"), 5);
  EXPECT_EQ(depth("500"), 10);
  EXPECT_EQ(depth("1000"), 20);
  EXPECT_THAT(PriceError("binance_usdm", "/fapi/v1/depth", {{"limit", "30"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("limit=30 is not one of 5,10,20,50,100,500,1000")));
}

TEST_F(ShippedRulesTest, BinanceUsdmKlinesBandsAtEveryEdge) {
  auto k = [&](const std::string& limit) {
    return Units("binance_usdm", "/fapi/v1/klines", {{"limit", limit}}, "REQUEST_WEIGHT");
  };
  EXPECT_EQ(Units("binance_usdm", "/fapi/v1/klines", {}, "REQUEST_WEIGHT"), 5) << "default 500";
  EXPECT_EQ(k("1"), 1);
  EXPECT_EQ(k("99"), 1);
  EXPECT_EQ(k("100"), 2);
  EXPECT_EQ(k("499"), 2);
  EXPECT_EQ(k("500"), 5);
  EXPECT_EQ(k("1000"), 5);
  EXPECT_EQ(k("1001"), 10);
  EXPECT_EQ(k("1500"), 10);
  EXPECT_THAT(PriceError("binance_usdm", "/fapi/v1/klines", {{"limit", "1501"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("above the maximum 1500")));
}

// ---- OKX -------------------------------------------------------------------

TEST_F(ShippedRulesTest, OkxEachEndpointChargesItsOwnPool) {
  const ExchangeRules* okx = book_->Find("okx");
  const std::map<std::string, std::pair<std::string, int64_t>> expected = {
      {"/api/v5/public/time", {"public/time", 10}},
      {"/api/v5/public/instruments", {"public/instruments", 20}},
      {"/api/v5/market/ticker", {"market/ticker", 20}},
      {"/api/v5/market/tickers", {"market/tickers", 20}},
      {"/api/v5/market/books", {"market/books", 40}},
      {"/api/v5/market/books-full", {"market/books-full", 10}},
      {"/api/v5/market/candles", {"market/candles", 40}},
      {"/api/v5/market/history-candles", {"market/history-candles", 20}},
      {"/api/v5/market/trades", {"market/trades", 100}},
      {"/api/v5/market/history-trades", {"market/history-trades", 20}}};
  ASSERT_EQ(okx->endpoints().size(), expected.size());
  for (const auto& [path, pool_cap] : expected) {
    auto cost = okx->Price("GET", path, {{"instId", "BTC-USDT"}});
    ASSERT_TRUE(cost.ok()) << path;
    ASSERT_EQ(cost->charges.size(), 1u) << path;
    const PoolRule& pool = okx->pools()[cost->charges[0].pool];
    EXPECT_EQ(pool.name, pool_cap.first);
    EXPECT_EQ(pool.capacity, pool_cap.second);
    EXPECT_EQ(pool.window, WindowKind::kRolling);
    EXPECT_EQ(pool.length, absl::Seconds(2));
    EXPECT_EQ(cost->charges[0].units, 1);
  }
}

TEST_F(ShippedRulesTest, OkxRejectionIsBodyCode50011) {
  const ExchangeRules* okx = book_->Find("okx");
  const RejectionRule* r = okx->MatchRejection(429, "50011");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->kind, RejectionKind::kRateLimited);
  ASSERT_NE(okx->MatchRejection(200, "50011"), nullptr);
  EXPECT_EQ(okx->MatchRejection(200, "0"), nullptr);
  EXPECT_EQ(okx->rejection_backoff(), absl::Seconds(2));
}

// ---- Deribit ---------------------------------------------------------------

TEST_F(ShippedRulesTest, DeribitCredits) {
  const std::map<std::string, std::pair<std::string, int64_t>> expected = {
      {"/api/v2/public/get_time", {"non_matching_engine", 500}},
      {"/api/v2/public/test", {"non_matching_engine", 500}},
      {"/api/v2/public/get_order_book", {"non_matching_engine", 500}},
      {"/api/v2/public/ticker", {"non_matching_engine", 500}},
      {"/api/v2/public/get_tradingview_chart_data", {"non_matching_engine", 500}},
      {"/api/v2/public/get_instruments", {"get_instruments", 10000}},
      {"/api/v2/public/subscribe", {"subscribe", 3000}},
      {"/api/v2/public/get_index_price", {"non_matching_engine", 500}}};  // default cost
  for (const auto& [path, pool_units] : expected) {
    for (const std::string method : {"GET", "POST"}) {
      EXPECT_EQ(Units("deribit", path, {}, pool_units.first, method), pool_units.second)
          << method << " " << path;
    }
  }
  const ExchangeRules* d = book_->Find("deribit");
  const PoolRule& nme = d->pools()[d->PoolIndex("non_matching_engine")];
  EXPECT_EQ(nme.window, WindowKind::kBucket);
  EXPECT_EQ(nme.capacity, 50000);
  EXPECT_EQ(nme.refill_per_second, 10000);
  EXPECT_EQ(d->MatchRejection(400, "10028")->kind, RejectionKind::kRateLimited);
  EXPECT_EQ(d->MatchRejection(200, "11050"), nullptr);
}

// ---- Overrides -------------------------------------------------------------

TEST_F(ShippedRulesTest, LimitOverride) {
  MP_EXPECT_OK(book_->ApplyLimitOverride("binance_spot.REQUEST_WEIGHT=600"));
  const ExchangeRules* ex = book_->Find("binance_spot");
  EXPECT_EQ(ex->pools()[ex->PoolIndex("REQUEST_WEIGHT")].capacity, 600);
  MP_EXPECT_OK(book_->ApplyLimitOverride("okx.market/books=4"));
  EXPECT_THAT(book_->ApplyLimitOverride("binance_spot.REQUEST_WEIGHT"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("EXCHANGE.POOL=CAPACITY")));
  EXPECT_THAT(book_->ApplyLimitOverride("kraken.X=1"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown exchange \"kraken\"")));
  EXPECT_THAT(book_->ApplyLimitOverride("okx.NOPE=1"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown pool \"NOPE\"")));
  EXPECT_THAT(book_->ApplyLimitOverride("okx.market/books=0"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must be >= 1")));
  EXPECT_THAT(book_->ApplyLimitOverride("okx.market/books=x"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not an integer")));
}

// ---- Traceability: every figure matches the documented facts ---------------

class ReferenceTest : public ShippedRulesTest {
 protected:
  void SetUp() override {
    ShippedRulesTest::SetUp();
    std::ifstream in(MP_REFERENCE_LIMITS);
    ASSERT_TRUE(in) << MP_REFERENCE_LIMITS;
    ref_ = Json::parse(in);
  }
  const PoolRule& Pool(const std::string& exchange, const std::string& pool) {
    const ExchangeRules* ex = book_->Find(exchange);
    return ex->pools()[ex->PoolIndex(pool)];
  }
  Json ref_;
};

TEST_F(ReferenceTest, EverySourceIdExistsInTheReference) {
  std::set<std::string> ids;
  for (const Json& s : ref_["sources"]) ids.insert(s["id"].get<std::string>());
  for (const auto& [id, location] : book_->sources()) EXPECT_TRUE(ids.contains(id)) << id;
}

TEST_F(ReferenceTest, BinanceSpotPools) {
  const Json& pools = ref_["exchanges"]["binance_spot"]["limit_pools"];
  auto ref_pool = [&](const std::string& prefix) -> const Json& {
    for (const Json& p : pools) {
      if (p["name"].get<std::string>().rfind(prefix, 0) == 0) return p;
    }
    ADD_FAILURE() << prefix;
    return pools[0];
  };
  struct Row {
    std::string ours, theirs;
  };
  for (const Row& r : {Row{"REQUEST_WEIGHT", "REQUEST_WEIGHT"}, Row{"RAW_REQUESTS", "RAW_REQUESTS"},
                       Row{"ORDERS_10S", "ORDERS (unfilled order count), short"},
                       Row{"ORDERS_1D", "ORDERS (unfilled order count), daily"},
                       Row{"WS_CONNECTIONS", "CONNECTIONS"}}) {
    const Json& ref = ref_pool(r.theirs);
    const PoolRule& pool = Pool("binance_spot", r.ours);
    EXPECT_EQ(pool.capacity, ref["capacity"].get<int64_t>()) << r.ours;
    EXPECT_EQ(pool.length, absl::Seconds(ref["window_seconds"].get<int64_t>())) << r.ours;
    EXPECT_EQ(ScopeName(pool.scope), ref["scope"].get<std::string>()) << r.ours;
  }
  const Json& ws = ref_["exchanges"]["binance_spot"]["websocket_streams"];
  EXPECT_EQ(Pool("binance_spot", "WS_MESSAGES").capacity,
            ws["incoming_messages_per_second_per_connection"].get<int64_t>());
  EXPECT_EQ(book_->Find("binance_spot")->websocket().max_streams_per_connection,
            ws["max_streams_per_connection"].get<int>());
  EXPECT_EQ(book_->Find("binance_spot")->websocket().server_ping_seconds,
            ws["server_ping_interval_seconds"].get<int>());
}

TEST_F(ReferenceTest, BinanceSpotEndpointWeights) {
  const ExchangeRules* ex = book_->Find("binance_spot");
  int checked = 0;
  for (const Json& e : ref_["exchanges"]["binance_spot"]["endpoint_weights"]) {
    std::string path = e["path"];
    if (path.rfind("/api/v3/", 0) != 0) continue;
    const EndpointRule* ours = ex->FindEndpoint("GET", path);
    ASSERT_NE(ours, nullptr) << path << " is documented but missing from the rules";
    ASSERT_EQ(ours->costs.size(), 1u);
    const CostRule& rule = ours->costs[0].second;
    if (e.contains("weight")) {
      EXPECT_EQ(rule.constant, e["weight"].get<int64_t>()) << path;
    } else if (e["rule"].contains("bands")) {
      const Json& bands = e["rule"]["bands"];
      ASSERT_EQ(rule.bands.size(), bands.size()) << path;
      for (size_t i = 0; i < bands.size(); ++i) {
        EXPECT_EQ(rule.bands[i].max, bands[i]["max"].get<int64_t>()) << path;
        EXPECT_EQ(rule.bands[i].cost, bands[i]["weight"].get<int64_t>()) << path;
      }
      EXPECT_EQ(rule.default_value, e["rule"]["default"].get<int64_t>());
    } else if (e["rule"].contains("per_symbol")) {
      EXPECT_EQ(rule.list_per_item, e["rule"]["per_symbol"].get<int64_t>()) << path;
      EXPECT_EQ(rule.list_cap, e["rule"]["cap"].get<int64_t>()) << path;
      EXPECT_EQ(rule.list_max, e["rule"]["max_symbols_per_request"].get<int64_t>()) << path;
    } else {
      EXPECT_EQ(*rule.single_cost, e["rule"]["with_symbol"].get<int64_t>()) << path;
      if (e["rule"].contains("with_symbols")) {
        const Json& bands = e["rule"]["with_symbols"];
        ASSERT_EQ(rule.list_bands.size(), bands.size());
        for (size_t i = 0; i < bands.size(); ++i) {
          EXPECT_EQ(rule.list_bands[i].cost, bands[i]["weight"].get<int64_t>());
          if (!bands[i]["max_count"].is_null()) {
            EXPECT_EQ(rule.list_bands[i].max, bands[i]["max_count"].get<int64_t>());
          }
        }
        EXPECT_EQ(*rule.none_cost, e["rule"]["no_symbol_and_no_symbols"].get<int64_t>());
      } else {
        EXPECT_EQ(rule.list_bands.at(0).cost, e["rule"]["with_symbols_any_count"].get<int64_t>());
        EXPECT_EQ(*rule.none_cost, e["rule"]["no_symbol"].get<int64_t>());
      }
    }
    ++checked;
  }
  EXPECT_EQ(checked, 16);
}

TEST_F(ReferenceTest, BinanceUsdm) {
  const Json& ref = ref_["exchanges"]["binance_usdm_futures"];
  EXPECT_EQ(Pool("binance_usdm", "REQUEST_WEIGHT").capacity,
            ref["limit_pools"][0]["capacity"].get<int64_t>());
  EXPECT_EQ(Pool("binance_usdm", "ORDERS_1M").capacity,
            ref["limit_pools"][1]["capacity"].get<int64_t>());
  EXPECT_EQ(Pool("binance_usdm", "ORDERS_10S").capacity,
            ref["limit_pools"][2]["capacity"].get<int64_t>());
  const ExchangeRules* ex = book_->Find("binance_usdm");
  for (const Json& e : ref["endpoint_weights"]) {
    const EndpointRule* ours = ex->FindEndpoint("GET", e["path"].get<std::string>());
    ASSERT_NE(ours, nullptr) << e["path"];
    const CostRule& rule = ours->costs[0].second;
    if (e.contains("weight")) {
      EXPECT_EQ(rule.constant, e["weight"].get<int64_t>()) << e["path"];
    } else if (e["rule"].contains("values")) {
      ASSERT_EQ(rule.value_sets.size(), e["rule"]["values"].size());
      for (size_t i = 0; i < rule.value_sets.size(); ++i) {
        EXPECT_EQ(rule.value_sets[i].cost, e["rule"]["values"][i]["weight"].get<int64_t>());
        EXPECT_EQ(rule.value_sets[i].values,
                  e["rule"]["values"][i]["limit_in"].get<std::vector<int64_t>>());
      }
    } else if (e["rule"].contains("bands")) {
      const Json& bands = e["rule"]["bands"];
      ASSERT_EQ(rule.bands.size(), bands.size());
      for (size_t i = 0; i < bands.size(); ++i) {
        EXPECT_EQ(rule.bands[i].cost, bands[i]["weight"].get<int64_t>());
        if (bands[i].contains("max_exclusive")) {
          EXPECT_EQ(rule.bands[i].max, bands[i]["max_exclusive"].get<int64_t>() - 1);
        } else if (bands[i].contains("max_inclusive")) {
          EXPECT_EQ(rule.bands[i].max, bands[i]["max_inclusive"].get<int64_t>());
        } else {
          EXPECT_EQ(rule.bands[i].max, e["rule"]["max"].get<int64_t>());
        }
      }
    } else {
      EXPECT_EQ(*rule.single_cost, e["rule"]["with_symbol"].get<int64_t>());
      EXPECT_EQ(*rule.none_cost, e["rule"]["no_symbol"].get<int64_t>());
    }
  }
}

TEST_F(ReferenceTest, OkxEndpointLimits) {
  const ExchangeRules* ex = book_->Find("okx");
  int checked = 0;
  for (const Json& e : ref_["exchanges"]["okx_v5"]["endpoint_limits"]) {
    std::string path = e["path"];
    if (e["rule"] != "IP" && e["rule"] != "IP + Instrument Type") continue;  // private
    const EndpointRule* ours = ex->FindEndpoint("GET", path);
    ASSERT_NE(ours, nullptr) << path;
    const PoolRule& pool = ex->pools()[ours->costs[0].first];
    EXPECT_EQ(pool.capacity, e["requests"].get<int64_t>()) << path;
    EXPECT_EQ(pool.length, absl::Seconds(e["window_seconds"].get<int64_t>())) << path;
    ++checked;
  }
  EXPECT_EQ(checked, 10);
  const Json& ws = ref_["exchanges"]["okx_v5"]["websocket"];
  EXPECT_EQ(Pool("okx", "WS_CONNECTIONS").capacity,
            ws["connection_requests_per_second_per_ip"].get<int64_t>());
  EXPECT_EQ(Pool("okx", "WS_SUBSCRIBES").capacity,
            ws["subscribe_unsubscribe_login_requests_per_hour_per_connection"].get<int64_t>());
  EXPECT_EQ(ex->websocket().idle_close_seconds, ws["idle_disconnect_seconds"].get<int>());
}

TEST_F(ReferenceTest, DeribitCredits) {
  const Json& ref = ref_["exchanges"]["deribit_v2"];
  const Json& nme = ref["limit_pools"][0];
  EXPECT_EQ(Pool("deribit", "non_matching_engine").capacity, nme["capacity_credits"].get<int64_t>());
  EXPECT_EQ(Pool("deribit", "non_matching_engine").refill_per_second,
            nme["refill_credits_per_second"].get<int64_t>());
  for (const Json& m : ref["method_costs"]) {
    std::string method = m["method"];
    std::string pool;
    if (method == "public/get_instruments") pool = "get_instruments";
    if (method.rfind("public/subscribe", 0) == 0) pool = "subscribe";
    if (pool.empty()) continue;
    EXPECT_EQ(Pool("deribit", pool).capacity, m["pool_credits"].get<int64_t>()) << method;
    EXPECT_EQ(Units("deribit", "/api/v2/public/" + (pool == "subscribe" ? std::string("subscribe")
                                                                         : std::string("get_instruments")),
                    {}, pool),
              m["cost_credits"].get<int64_t>());
  }
  EXPECT_EQ(book_->Find("deribit")->websocket().max_connections_per_ip,
            ref["connection_limits"]["max_connections_per_ip"].get<int>());
}

// ---- Validation errors name file, key and problem --------------------------

std::string MinimalRules(const std::string& pools, const std::string& endpoints) {
  return R"({"schema_version": 1, "sources": {"S1": "doc"}, "exchanges": {"x": {
    "family": "binance", "rest_base": "http://x", "pools": )" +
         pools + R"(, "endpoints": )" + endpoints + "}}}";
}

const char kGoodPool[] =
    R"([{"name": "W", "scope": "ip", "window": "fixed", "seconds": 60, "capacity": 10, "src": ["S1"]}])";

TEST(RulesValidationTest, MinimalFileParses) {
  auto book = RulesBook::Parse(
      MinimalRules(kGoodPool, R"([{"method": "GET", "path": "/p", "cost": {"W": 1}, "src": ["S1"]}])"),
      "t.json");
  ASSERT_TRUE(book.ok()) << book.status();
}

TEST(RulesValidationTest, ErrorsNameFileKeyAndProblem) {
  struct Case {
    std::string text;
    std::string expect;
  };
  const std::string good_ep = R"([{"method": "GET", "path": "/p", "cost": {"W": 1}, "src": ["S1"]}])";
  const std::vector<Case> cases = {
      {"{", "t.json: not valid JSON at byte"},
      {"[]", "t.json: : expected a JSON object"},
      {R"({"schema_version": 1, "sources": {}})", "t.json: exchanges: required key is missing"},
      {MinimalRules(R"([{"name": "W", "scope": "planet", "window": "fixed", "seconds": 1, "capacity": 1, "src": ["S1"]}])", good_ep),
       "t.json: exchanges.x.pools[0].scope: must be ip, account or connection, got \"planet\""},
      {MinimalRules(R"([{"name": "W", "scope": "ip", "window": "sliding", "seconds": 1, "capacity": 1, "src": ["S1"]}])", good_ep),
       "exchanges.x.pools[0].window: must be fixed, rolling or bucket"},
      {MinimalRules(R"([{"name": "W", "scope": "ip", "window": "fixed", "seconds": 1, "capacity": 0, "src": ["S1"]}])", good_ep),
       "exchanges.x.pools[0].capacity: must be >= 1, got 0"},
      {MinimalRules(R"([{"name": "W", "scope": "ip", "window": "fixed", "capacity": 1, "src": ["S1"]}])", good_ep),
       "exchanges.x.pools[0].seconds: required key is missing"},
      {MinimalRules(R"([{"name": "W", "scope": "ip", "window": "fixed", "seconds": 1, "capacity": 1}])", good_ep),
       "exchanges.x.pools[0].src: every figure needs sources"},
      {MinimalRules(R"([{"name": "W", "scope": "ip", "window": "fixed", "seconds": 1, "capacity": 1, "src": ["B99"]}])", good_ep),
       "exchanges.x.pools[0].src[0]: unknown source id 'B99'"},
      {MinimalRules(kGoodPool, R"([{"method": "GET", "path": "/p", "cost": {"Q": 1}, "src": ["S1"]}])"),
       "exchanges.x.endpoints[0].cost.Q: unknown pool 'Q'"},
      {MinimalRules(R"([{"name": "O", "scope": "account", "window": "fixed", "seconds": 10, "capacity": 5, "src": ["S1"]}])",
                    R"([{"method": "POST", "path": "/o", "cost": {"O": 1}, "src": ["S1"]}])"),
       "exchanges.x.endpoints[0].cost: charges account pool 'O' but the exchange names no account_header"},
      {MinimalRules(kGoodPool, R"([{"method": "GET", "path": "/p", "cost": {"W": "1"}, "src": ["S1"]}])"),
       "exchanges.x.endpoints[0].cost.W: expected an integer or a cost rule object, got string"},
      {MinimalRules(kGoodPool, R"([{"method": "GET", "path": "/p", "cost": {"W": {"param": "limit", "default": 5, "bands": [{"max": 10, "cost": 1}, {"max": 10, "cost": 2}]}}, "src": ["S1"]}])"),
       "exchanges.x.endpoints[0].cost.W.bands[1].max: bands must ascend: 10 <= previous max 10"},
      {MinimalRules(kGoodPool, R"([{"method": "GET", "path": "/p", "cost": {"W": {"param": "limit", "default": 7, "values": [{"in": [5], "cost": 1}]}}, "src": ["S1"]}])"),
       "exchanges.x.endpoints[0].cost.W.default: the default is not one of the listed values"},
      {MinimalRules(kGoodPool, R"([{"method": "GET", "path": "/p", "cost": {"W": 1}, "src": ["S1"]}, {"method": "GET", "path": "/p", "cost": {"W": 1}, "src": ["S1"]}])"),
       "exchanges.x.endpoints[1]: duplicate endpoint GET /p"},
      {MinimalRules(kGoodPool, R"([{"method": "FETCH", "path": "/p", "cost": {"W": 1}, "src": ["S1"]}])"),
       "exchanges.x.endpoints[0].method: must be GET, POST, PUT, DELETE or ANY"},
      {MinimalRules(kGoodPool, R"([{"method": "GET", "path": "p", "cost": {"W": 1}, "src": ["S1"]}])"),
       "exchanges.x.endpoints[0].path: must start with '/'"},
      {MinimalRules(kGoodPool, R"([{"method": "GET", "path": "/p", "src": ["S1"]}])"),
       "exchanges.x.endpoints[0].cost: required key is missing"},
  };
  for (const Case& c : cases) {
    auto book = RulesBook::Parse(c.text, "t.json");
    EXPECT_THAT(book, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.expect))) << c.text;
  }
}

TEST(RulesValidationTest, MissingFileIsNotFound) {
  EXPECT_THAT(RulesBook::LoadFile("/nonexistent/rules.json"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/rules.json")));
}

}  // namespace
}  // namespace marketprism::common
