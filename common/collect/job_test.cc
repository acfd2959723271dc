#include "common/collect/job.h"

#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace marketprism::common {
namespace {

using ::testing::HasSubstr;

class JobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto rules = RulesBook::LoadDefault();
    ASSERT_TRUE(rules.ok()) << rules.status();
    rules_ = std::make_unique<RulesBook>(*std::move(rules));
  }
  absl::StatusOr<std::vector<v1::Job>> Parse(absl::string_view text) { return ParseJobs(text, "jobs.json", *rules_); }
  std::string ErrorOf(absl::string_view job) {
    auto r = Parse(absl::StrCat(R"({"jobs": [)", job, "]}"));
    return r.ok() ? "accepted" : std::string(r.status().message());
  }
  std::unique_ptr<RulesBook> rules_;
};

TEST_F(JobTest, TheIssuesExampleParsesWithItsDefaults) {
  auto jobs = Parse(R"({"jobs": [
      {"name": "btc-books", "exchange": "binance_spot", "channel": "book",
       "symbols": ["BTCUSDT", "ETHUSDT"], "redundancy": 1},
      {"name": "trades", "exchange": "binance_spot", "channel": "trades",
       "symbols": ["BTCUSDT"], "redundancy": 2},
      {"name": "tickers", "exchange": "binance_spot", "channel": "poll",
       "path": "/api/v3/ticker/24hr", "every": "30s"},
      {"name": "candles", "exchange": "okx", "channel": "kline", "interval": "1m",
       "symbols": ["BTC-USDT"]}]})");
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_EQ(jobs->size(), 4u);
  EXPECT_EQ((*jobs)[0].depth(), 1000) << "Binance's snapshot depth by default";
  EXPECT_EQ((*jobs)[1].redundancy(), 2);
  EXPECT_EQ((*jobs)[2].every_ms(), 30'000);
  EXPECT_EQ((*jobs)[2].redundancy(), 1) << "redundancy defaults to 1";
  std::vector<UnitSpec> units = SplitIntoUnits((*jobs)[0]);
  ASSERT_EQ(units.size(), 2u);
  EXPECT_EQ(units[0].key, "binance_spot/book/BTCUSDT");
  EXPECT_EQ(units[1].symbol, "ETHUSDT");
  EXPECT_EQ(units[1].depth, 1000);
  std::vector<UnitSpec> poll = SplitIntoUnits((*jobs)[2]);
  ASSERT_EQ(poll.size(), 1u);
  EXPECT_EQ(poll[0].key, "binance_spot/poll/tickers");
  EXPECT_EQ(poll[0].every, absl::Seconds(30));
  EXPECT_EQ(SplitIntoUnits((*jobs)[3])[0].key, "okx/kline_1m/BTC-USDT");
}

TEST_F(JobTest, AllSymbolsTakesTheListedInstrumentsOnce) {
  auto jobs = Parse(R"({"jobs": [{"name": "all", "exchange": "binance_spot", "channel": "trades", "all_symbols": true}]})");
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  std::vector<UnitSpec> units = SplitIntoUnits((*jobs)[0], {"BTCUSDT", "ETHUSDT", "BTCUSDT"});
  ASSERT_EQ(units.size(), 2u);
  EXPECT_EQ(units[1].key, "binance_spot/trades/ETHUSDT");
}

TEST_F(JobTest, AStreamOfAnExchangeWithoutWebSocketRulesIsRefused) {
  std::ifstream in(RulesBook::DefaultPath());
  nlohmann::json j = nlohmann::json::parse(in);
  j["exchanges"]["binance_usdm"].erase("websocket");
  auto rules = RulesBook::Parse(j.dump(), "rules without USD-M's websocket");
  ASSERT_TRUE(rules.ok()) << rules.status();
  auto jobs = ParseJobs(R"({"jobs": [{"name": "x", "exchange": "binance_usdm", "channel": "trades", "symbols": ["BTCUSDT"]}]})",
                        "jobs.json", *rules);
  ASSERT_FALSE(jobs.ok());
  EXPECT_THAT(jobs.status().message(), HasSubstr("no WebSocket rules"));
  EXPECT_TRUE(ParseJobs(R"({"jobs": [{"name": "x", "exchange": "binance_usdm", "channel": "poll", "path": "/fapi/v1/time", "every": "5s"}]})",
                        "jobs.json", *rules)
                  .ok())
      << "a poll needs none";
}

TEST_F(JobTest, EveryMistakeIsNamed) {
  EXPECT_THAT(ErrorOf(R"({"exchange": "binance_spot", "channel": "trades", "symbols": ["A"]})"),
              HasSubstr("\"name\" is required"));
  EXPECT_THAT(ErrorOf(R"({"name": "x", "exchange": "kraken", "channel": "trades", "symbols": ["A"]})"),
              HasSubstr("unknown exchange \"kraken\""));
  EXPECT_THAT(ErrorOf(R"({"name": "x", "exchange": "okx", "channel": "candles", "symbols": ["A"]})"),
              HasSubstr("unknown channel \"candles\""));
  EXPECT_THAT(ErrorOf(R"({"name": "x", "exchange": "okx", "channel": "trades", "symbols": ["A"], "redundancy": 3})"),
              HasSubstr("job \"x\": \"redundancy\" must be 1 or 2"));
  EXPECT_THAT(ErrorOf(R"({"name": "x", "exchange": "okx", "channel": "trades"})"), HasSubstr("\"symbols\""));
  EXPECT_THAT(ErrorOf(R"({"name": "x", "exchange": "okx", "channel": "trades", "symbols": ["A", "A"]})"),
              HasSubstr("listed twice"));
  EXPECT_THAT(ErrorOf(R"({"name": "x", "exchange": "okx", "channel": "kline", "symbols": ["A"]})"),
              HasSubstr("\"interval\""));
  EXPECT_THAT(ErrorOf(R"({"name": "x", "exchange": "okx", "channel": "trades", "symbols": ["A"], "interval": "1m"})"),
              HasSubstr("\"interval\" belongs to a kline"));
  // Deribit's chart has no 4-hour or weekly resolution.
  EXPECT_THAT(ErrorOf(R"({"name": "x", "exchange": "deribit", "channel": "kline", "symbols": ["A"], "interval": "4h"})"),
              HasSubstr("a deribit kline needs an \"interval\" of 1m, 3m, 5m, 15m, 30m, 1h, 2h, 6h, 12h, 1d"));
  EXPECT_THAT(ErrorOf(R"({"name": "x", "exchange": "binance_spot", "channel": "poll", "every": "30s"})"),
              HasSubstr("\"path\""));
  EXPECT_THAT(ErrorOf(R"({"name": "x", "exchange": "binance_spot", "channel": "poll", "path": "/api/v3/time"})"),
              HasSubstr("\"every\" of at least 1s"));
  EXPECT_THAT(ErrorOf(R"({"name": "x", "exchange": "binance_spot", "channel": "poll", "path": "/api/v3/time", "every": "soon"})"),
              HasSubstr("jobs[0].every: must be a duration"));
  EXPECT_THAT(ErrorOf(R"({"name": "x", "exchange": "binance_spot", "channel": "poll", "path": "/api/v3/depth",
                          "params": {"symbol": "BTCUSDT", "limit": "many"}, "every": "5s"})"),
              HasSubstr("cannot price GET /api/v3/depth"));
  EXPECT_THAT(ErrorOf(R"({"name": "x", "exchange": "okx", "channel": "trades", "symbol": ["A"]})"),
              HasSubstr("unknown field \"symbol\""));
  EXPECT_THAT(ErrorOf(R"({"name": "x", "exchange": "okx", "channel": "trades", "symbols": ["A"], "priority": 1})"),
              HasSubstr("\"priority\" belong to a poll"));
  EXPECT_THAT(ErrorOf(R"({"name": "x", "exchange": "binance_spot", "channel": "poll", "path": "/api/v3/time",
                          "every": "5s", "priority": 5000})"),
              HasSubstr("\"priority\" must be within"));
  EXPECT_THAT(ErrorOf(R"({"name": "x y", "exchange": "okx", "channel": "trades", "symbols": ["A"]})"),
              HasSubstr("\"name\" may hold only"));
}

TEST_F(JobTest, NothingIsAcceptedWhenOneJobIsWrong) {
  auto r = Parse(R"({"jobs": [
      {"name": "ok", "exchange": "okx", "channel": "trades", "symbols": ["BTC-USDT"]},
      {"name": "ok", "exchange": "okx", "channel": "trades", "symbols": ["ETH-USDT"]}]})");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("jobs.json: job \"ok\" is defined twice"));
  EXPECT_THAT(std::string(Parse("{").status().message()), HasSubstr("jobs.json: not valid JSON"));
  EXPECT_THAT(std::string(Parse("[]").status().message()), HasSubstr("\"jobs\" list"));
  EXPECT_EQ(LoadJobsFile("/nonexistent/jobs.json", *rules_).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace marketprism::common
