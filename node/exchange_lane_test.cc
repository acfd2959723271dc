#include "node/exchange_lane.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "node/fake_http_client.h"
#include "tests/testing/fake_clock.h"

namespace marketprism::node {
namespace {

using ::testing::HasSubstr;

const absl::Time kMinute = absl::FromUnixSeconds(1'795'046'400);

class LaneTest : public ::testing::Test {
 protected:
  void Make(const std::string& exchange, std::vector<std::string> limits = {}) {
    auto rules = common::RulesBook::LoadDefault();
    ASSERT_TRUE(rules.ok());
    for (const auto& l : limits) ASSERT_TRUE(rules->ApplyLimitOverride(l).ok());
    rules_ = std::make_unique<common::RulesBook>(std::move(*rules));
    lane_ = std::make_unique<ExchangeLane>(*rules_->Find(exchange), LaneOptions{}, clock_);
    auto http = std::make_shared<FakeHttpClient>();
    http_ = http.get();
    lane_->SetEndpoint("http://sim:1", http);
  }

  // Measures the clock with a probe the exchange answers with `body` (and,
  // like Binance on every reply, a usage header).
  void Probe(const std::string& body) {
    http_->Then(FakeHttpClient::Reply(200, body, {{"X-MBX-USED-WEIGHT-1M", "1"}}));
    ASSERT_TRUE(lane_->ProbeClock().ok());
  }

  LaneResult Run(const std::string& path, common::QueryParams q = {}) {
    LaneRequest r;
    r.path = path;
    r.query = std::move(q);
    return lane_->Execute(r);
  }

  testing::FakeClock clock_{kMinute + absl::Seconds(10)};
  std::unique_ptr<common::RulesBook> rules_;
  std::unique_ptr<ExchangeLane> lane_;
  FakeHttpClient* http_ = nullptr;
};

TEST_F(LaneTest, NothingIsSentBeforeTheClockIsMeasured) {
  Make("binance_spot");
  LaneResult r = Run("/api/v3/ping");
  EXPECT_EQ(r.outcome, LaneResult::Outcome::kRefused);
  EXPECT_THAT(r.detail, HasSubstr("clock is not measured"));
  EXPECT_TRUE(http_->sent().empty());
  EXPECT_FALSE(lane_->ready());
  Probe(absl::StrCat(R"({"serverTime":)", absl::ToUnixMillis(clock_.Now()), "}"));
  EXPECT_TRUE(lane_->ready());
  EXPECT_EQ(Run("/api/v3/ping").outcome, LaneResult::Outcome::kReplied);
  EXPECT_EQ(http_->sent().back().url, "http://sim:1/api/v3/ping");
}

TEST_F(LaneTest, TheProbeMeasuresTheOffsetAndIsChargedInTheRightWindow) {
  Make("binance_spot", {"binance_spot.REQUEST_WEIGHT=10"});
  // The exchange runs 45 s ahead (we are at :10, it is at :55): its minute
  // ends 5 s from now.
  absl::Time server = clock_.Now() + absl::Seconds(45);
  http_->Then(FakeHttpClient::Reply(200, absl::StrCat(R"({"serverTime":)", absl::ToUnixMillis(server), "}"),
                                    {{"X-MBX-USED-WEIGHT-1M", "1"}}));
  ASSERT_TRUE(lane_->ProbeClock().ok());
  ClockView c = lane_->clock();
  EXPECT_TRUE(c.measured);
  EXPECT_NEAR(absl::ToDoubleMilliseconds(c.offset), 45'000.5, 1);
  // 9 more fit in the exchange's current minute (the probe took 1)...
  for (int i = 0; i < 9; ++i) ASSERT_EQ(Run("/api/v3/ping").outcome, LaneResult::Outcome::kReplied) << i;
  EXPECT_EQ(Run("/api/v3/ping").outcome, LaneResult::Outcome::kRefused);
  // ...and its minute turns 5 s from now, not 50.
  clock_.AdvanceBy(absl::Seconds(5) + absl::Milliseconds(10));
  EXPECT_EQ(Run("/api/v3/ping").outcome, LaneResult::Outcome::kReplied);
  auto events = lane_->TakeEvents();
  ASSERT_EQ(events.size(), 1u) << "the probe is reported to the coordinator";
  EXPECT_EQ(events[0].observed->second, 1);
}

TEST_F(LaneTest, TheNodesOwnLedgerRefusesWhatWouldNotFit) {
  Make("binance_spot", {"binance_spot.REQUEST_WEIGHT=12"});
  Probe(absl::StrCat(R"({"serverTime":)", absl::ToUnixMillis(clock_.Now()), "}"));
  ASSERT_EQ(Run("/api/v3/depth", {{"symbol", "BTCUSDT"}}).outcome, LaneResult::Outcome::kReplied);  // 5
  ASSERT_EQ(Run("/api/v3/depth", {{"symbol", "BTCUSDT"}}).outcome, LaneResult::Outcome::kReplied);  // 10
  size_t sent = http_->sent().size();
  LaneResult r = Run("/api/v3/depth", {{"symbol", "BTCUSDT"}});  // 15 > 12
  EXPECT_EQ(r.outcome, LaneResult::Outcome::kRefused);
  EXPECT_EQ(http_->sent().size(), sent) << "never sent";
  // To the next minute (50 s less the offset's 0.5 ms midpoint) plus the
  // uncertainty (0.5 ms) and margin (1 ms).
  EXPECT_EQ(r.retry_after, absl::Seconds(50) + absl::Milliseconds(1));
  ASSERT_FALSE(r.usage.empty());
  EXPECT_EQ(Run("/api/v3/ping").outcome, LaneResult::Outcome::kReplied) << "1 still fits";
}

TEST_F(LaneTest, UsageHeadersSettleTheLedger) {
  Make("binance_spot", {"binance_spot.REQUEST_WEIGHT=100"});
  Probe(absl::StrCat(R"({"serverTime":)", absl::ToUnixMillis(clock_.Now()), "}"));
  // Someone else on this IP: the exchange says 95 after our ping.
  http_->Then(FakeHttpClient::Reply(200, "{}", {{"x-mbx-used-weight-1m", "95"}}));
  LaneResult r = Run("/api/v3/ping");
  ASSERT_TRUE(r.observed.has_value());
  EXPECT_EQ(r.observed->first, "REQUEST_WEIGHT");
  EXPECT_EQ(r.observed->second, 95);
  EXPECT_EQ(Run("/api/v3/depth", {{"symbol", "BTCUSDT"}}).outcome, LaneResult::Outcome::kReplied) << "95 + 5";
  EXPECT_EQ(Run("/api/v3/ping").outcome, LaneResult::Outcome::kRefused);
}

TEST_F(LaneTest, A429ParksTheExchangeUntilRetryAfter) {
  Make("binance_spot");
  Probe(absl::StrCat(R"({"serverTime":)", absl::ToUnixMillis(clock_.Now()), "}"));
  http_->Then(FakeHttpClient::Reply(429, R"({"code":-1003,"msg":"Too much request weight used"})",
                                    {{"Retry-After", "7"}, {"X-MBX-USED-WEIGHT-1M", "6000"}}));
  LaneResult r = Run("/api/v3/ping");
  EXPECT_EQ(r.outcome, LaneResult::Outcome::kReplied);
  ASSERT_TRUE(r.park.has_value());
  EXPECT_EQ(r.park->kind, "rate_limited");
  EXPECT_EQ(r.park->until, clock_.Now() + absl::Seconds(7));
  size_t sent = http_->sent().size();
  LaneResult again = Run("/api/v3/ping");
  EXPECT_EQ(again.outcome, LaneResult::Outcome::kParked);
  EXPECT_EQ(again.retry_after, absl::Seconds(7));
  EXPECT_EQ(http_->sent().size(), sent);
  clock_.AdvanceBy(absl::Seconds(7));
  EXPECT_NE(Run("/api/v3/ping").outcome, LaneResult::Outcome::kParked);
}

// A reply the exchange holds back until Release(): its request stays in
// flight meanwhile, on a thread of its own.
class HeldRequest {
 public:
  HeldRequest(ExchangeLane& lane, FakeHttpClient& http, common::HttpReply reply) {
    http.ThenRun([this, reply](const common::HttpRequestSpec&) -> absl::StatusOr<common::HttpReply> {
      arrived_.Notify();
      release_.WaitForNotification();
      return reply;
    });
    thread_ = std::thread([this, &lane] {
      LaneRequest r;
      r.path = "/api/v3/ping";
      result_ = lane.Execute(r);
    });
    arrived_.WaitForNotification();
  }
  LaneResult Release() {
    release_.Notify();
    thread_.join();
    return result_;
  }

 private:
  absl::Notification arrived_, release_;
  std::thread thread_;
  LaneResult result_;
};

common::HttpReply Used(int64_t weight) {
  return FakeHttpClient::Reply(200, "{}", {{"X-MBX-USED-WEIGHT-1M", absl::StrCat(weight)}});
}

TEST_F(LaneTest, NoMoreInFlightThanTheExposureBoundWhichGrowsWithConfirmingReplies) {
  Make("binance_spot");
  Probe(absl::StrCat(R"({"serverTime":)", absl::ToUnixMillis(clock_.Now()), "}"));  // weight 1
  EXPECT_EQ(lane_->exposure_limit(), 1);
  HeldRequest held(*lane_, *http_, Used(2));
  LaneResult refused = Run("/api/v3/ping");
  EXPECT_EQ(refused.outcome, LaneResult::Outcome::kRefused);
  EXPECT_TRUE(refused.exposure_refusal);
  EXPECT_EQ(refused.exposure, 1);
  EXPECT_EQ(http_->sent().size(), 2u) << "the probe and the held request only";
  LaneResult r = held.Release();
  EXPECT_EQ(r.outcome, LaneResult::Outcome::kReplied);
  EXPECT_EQ(r.exposure, 2) << "the header said what the ledger expected";
  EXPECT_EQ(r.foreign_units, 0);
  HeldRequest a(*lane_, *http_, Used(3));
  HeldRequest b(*lane_, *http_, Used(4));
  EXPECT_TRUE(Run("/api/v3/ping").exposure_refusal) << "two in flight, bound two";
  a.Release();
  EXPECT_EQ(b.Release().exposure, 4);
}

TEST_F(LaneTest, ForeignUseIsAdoptedReportedAndDropsTheBoundToOne) {
  Make("binance_spot", {"binance_spot.REQUEST_WEIGHT=600"});
  Probe(absl::StrCat(R"({"serverTime":)", absl::ToUnixMillis(clock_.Now()), "}"));
  for (int used = 2; used <= 4; ++used) {
    http_->Then(Used(used));
    ASSERT_EQ(Run("/api/v3/ping").foreign_units, 0) << used;
  }
  EXPECT_EQ(lane_->exposure_limit(), 4);
  // Another program on this IP spent 300: our ping makes 305.
  http_->Then(Used(305));
  ::testing::internal::CaptureStderr();
  LaneResult r = Run("/api/v3/ping");
  std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(r.foreign_units, 300);
  EXPECT_EQ(r.exposure, 1);
  EXPECT_EQ(lane_->foreign_use().units, 300);
  EXPECT_EQ(lane_->foreign_use().pool, "REQUEST_WEIGHT");
  EXPECT_THAT(log, HasSubstr("counts 305 REQUEST_WEIGHT, 300 more than this node sent"));
  // Adopted at once: 295 left, not 595.
  int64_t used = 0;
  for (const auto& p : lane_->Usage()) {
    if (p.name == "REQUEST_WEIGHT") used = p.used;
  }
  EXPECT_EQ(used, 305);
}

TEST_F(LaneTest, A429HoldsTheRestOfTheWindowAndARefusalOfARequestInFlightIsNamed) {
  Make("binance_spot", {"binance_spot.REQUEST_WEIGHT=600"});
  Probe(absl::StrCat(R"({"serverTime":)", absl::ToUnixMillis(clock_.Now()), "}"));
  for (int used = 2; used <= 3; ++used) {
    http_->Then(Used(used));
    Run("/api/v3/ping");
  }
  ASSERT_EQ(lane_->exposure_limit(), 3);
  // The exchange lowered its limit to 4 without notice: of two in flight,
  // both are refused.
  common::HttpReply too_much = FakeHttpClient::Reply(
      429, R"({"code":-1003,"msg":"Too much request weight used"})", {{"Retry-After", "5"}, {"X-MBX-USED-WEIGHT-1M", "5"}});
  HeldRequest a(*lane_, *http_, too_much);
  HeldRequest b(*lane_, *http_, too_much);
  ::testing::internal::CaptureStderr();
  LaneResult first = a.Release();
  LaneResult second = b.Release();
  std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(first.park.has_value());
  EXPECT_EQ(second.exposure, 1);
  EXPECT_THAT(log, HasSubstr("a request already in flight at its first refusal"));
  EXPECT_THAT(log, ::testing::Not(HasSubstr("BUG")));
  // Held to the window's end (:60), past the Retry-After (5 s from :10).
  size_t sent = http_->sent().size();
  EXPECT_EQ(Run("/api/v3/ping").outcome, LaneResult::Outcome::kParked);
  clock_.AdvanceBy(absl::Seconds(6));
  EXPECT_EQ(Run("/api/v3/ping").outcome, LaneResult::Outcome::kRefused) << "the window is spent";
  EXPECT_EQ(http_->sent().size(), sent);
  clock_.AdvanceBy(absl::Seconds(45));
  EXPECT_EQ(Run("/api/v3/ping").outcome, LaneResult::Outcome::kReplied) << "a new window";
}

TEST_F(LaneTest, A418BanParksForItsRetryAfter) {
  Make("binance_spot");
  Probe(absl::StrCat(R"({"serverTime":)", absl::ToUnixMillis(clock_.Now()), "}"));
  http_->Then(FakeHttpClient::Reply(418, R"({"code":-1003,"msg":"IP banned"})", {{"Retry-After", "120"}}));
  LaneResult r = Run("/api/v3/ping");
  ASSERT_TRUE(r.park.has_value());
  EXPECT_EQ(r.park->kind, "banned");
  EXPECT_EQ(r.park->until, clock_.Now() + absl::Seconds(120));
}

TEST_F(LaneTest, Okx50011ParksOneWindowEvenWithHttp200) {
  Make("okx");
  Probe(absl::StrCat(R"({"code":"0","msg":"","data":[{"ts":")", absl::ToUnixMillis(clock_.Now()), R"("}]})"));
  http_->Then(FakeHttpClient::Reply(200, R"({"code":"50011","msg":"Rate limit reached.","data":[]})"));
  LaneResult r = Run("/api/v5/market/books", {{"instId", "BTC-USDT"}});
  ASSERT_TRUE(r.park.has_value());
  EXPECT_EQ(r.park->kind, "rate_limited");
  EXPECT_GE(r.park->until - clock_.Now(), absl::Seconds(2));
  // An ordinary OKX reply is not mistaken for one.
  http_->Then(FakeHttpClient::Reply(200, R"({"code":"0","msg":"","data":[{"instId":"X","last":"50011"}]})"));
  clock_.AdvanceBy(absl::Seconds(3));
  EXPECT_FALSE(Run("/api/v5/market/ticker", {{"instId", "BTC-USDT"}}).park.has_value());
}

TEST_F(LaneTest, Deribit10028EmptiesTheBucketAndParksUntilItRefills) {
  Make("deribit");
  Probe(absl::StrCat(R"({"jsonrpc":"2.0","result":)", absl::ToUnixMillis(clock_.Now()), "}"));
  http_->Then(FakeHttpClient::Reply(429, R"({"jsonrpc":"2.0","error":{"code":10028,"message":"too_many_requests"}})"));
  LaneResult r = Run("/api/v2/public/ticker", {{"instrument_name", "BTC-PERPETUAL"}});
  ASSERT_TRUE(r.park.has_value());
  // 500 credits at 10,000/s: 50 ms (plus the clock uncertainty margin).
  EXPECT_GE(r.park->until - clock_.Now(), absl::Milliseconds(50));
  EXPECT_LT(r.park->until - clock_.Now(), absl::Milliseconds(60));
}

TEST_F(LaneTest, MessagesTheNodeSendsOnItsOwnSpendTheIpsCreditsAndAreReported) {
  Make("deribit", {"deribit.non_matching_engine=1000"});  // room for two calls of 500
  Probe(absl::StrCat(R"({"jsonrpc":"2.0","result":)", absl::ToUnixMillis(clock_.Now()), "}"));
  (void)lane_->TakeEvents();  // the probe's
  auto first = lane_->SpendOwn("POST", "/api/v2/public/test");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(*first, absl::ZeroDuration());
  auto second = lane_->SpendOwn("POST", "/api/v2/public/test");
  ASSERT_TRUE(second.ok());
  EXPECT_GT(*second, absl::ZeroDuration()) << "the probe's 500 and the first call's 500 spent the bucket";
  EXPECT_LT(*second, absl::Milliseconds(60)) << "500 credits refill in 50 ms";
  std::vector<common::UsageEvent> events = lane_->TakeEvents();
  ASSERT_EQ(events.size(), 1u) << "for the coordinator's ledger";
  EXPECT_EQ(events[0].cost.charges[0].units, 500);
  EXPECT_EQ(Run("/api/v2/public/ticker", {{"instrument_name", "BTC-PERPETUAL"}}).outcome,
            LaneResult::Outcome::kRefused)
      << "requests see what the messages spent";
  clock_.AdvanceBy(*second + absl::Milliseconds(5));  // the ledger's margins are conservative
  LaneResult dispatched = Run("/api/v2/public/ticker", {{"instrument_name", "BTC-PERPETUAL"}});
  EXPECT_EQ(dispatched.outcome, LaneResult::Outcome::kRefused)
      << "the message that waited has first claim on what refilled, or requests would starve it";
  EXPECT_THAT(dispatched.detail, ::testing::HasSubstr("first claim"));
  auto third = lane_->SpendOwn("POST", "/api/v2/public/test");
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(*third, absl::ZeroDuration());
  clock_.AdvanceBy(absl::Milliseconds(60));
  http_->Then(FakeHttpClient::Reply(200, R"({"jsonrpc":"2.0","result":{}})"));
  EXPECT_EQ(Run("/api/v2/public/ticker", {{"instrument_name", "BTC-PERPETUAL"}}).outcome,
            LaneResult::Outcome::kReplied)
      << "the claim ends when the message is sent";
}

TEST_F(LaneTest, LostRequestsStayChargedButUnsentOnesAreRefunded) {
  Make("binance_spot", {"binance_spot.REQUEST_WEIGHT=6"});  // the probe's 1 + one depth
  Probe(absl::StrCat(R"({"serverTime":)", absl::ToUnixMillis(clock_.Now()), "}"));
  // Connection refused: nothing left the machine.
  http_->Then(common::NotDelivered(absl::UnavailableError("connection refused")));
  EXPECT_EQ(Run("/api/v3/depth", {{"symbol", "BTCUSDT"}}).outcome, LaneResult::Outcome::kNotSent);
  // A timeout after sending: the exchange may have counted it.
  http_->Then(absl::DeadlineExceededError("timed out"));
  EXPECT_EQ(Run("/api/v3/depth", {{"symbol", "BTCUSDT"}}).outcome, LaneResult::Outcome::kLost);
  EXPECT_EQ(Run("/api/v3/ping").outcome, LaneResult::Outcome::kRefused) << "the lost 5 still count";
}

TEST_F(LaneTest, BadRequestsAreNeverSent) {
  Make("binance_spot");
  Probe(absl::StrCat(R"({"serverTime":)", absl::ToUnixMillis(clock_.Now()), "}"));
  size_t sent = http_->sent().size();
  LaneResult r = Run("/api/v3/depth", {{"limit", "abc"}});
  EXPECT_EQ(r.outcome, LaneResult::Outcome::kInvalid);
  EXPECT_THAT(r.detail, HasSubstr("limit"));
  EXPECT_EQ(http_->sent().size(), sent);
}

TEST_F(LaneTest, CapacitiesFromTheCoordinatorApply) {
  Make("binance_spot");
  Probe(absl::StrCat(R"({"serverTime":)", absl::ToUnixMillis(clock_.Now()), "}"));
  ASSERT_TRUE(lane_->SetCapacity("REQUEST_WEIGHT", 2).ok());
  EXPECT_EQ(Run("/api/v3/ping").outcome, LaneResult::Outcome::kReplied);
  EXPECT_EQ(Run("/api/v3/avgPrice", {{"symbol", "BTCUSDT"}}).outcome, LaneResult::Outcome::kRefused);
  EXPECT_FALSE(lane_->SetCapacity("NOPE", 2).ok());
}

TEST(JsonPathIntTest, ReadsTheServerTimeFields) {
  EXPECT_EQ(*JsonPathInt(R"({"serverTime":1499827319559})", "serverTime"), 1499827319559);
  EXPECT_EQ(*JsonPathInt(R"({"code":"0","data":[{"ts":"1597026383085"}]})", "data.0.ts"), 1597026383085);
  EXPECT_EQ(*JsonPathInt(R"({"jsonrpc":"2.0","result":1550147385946})", "result"), 1550147385946);
  EXPECT_FALSE(JsonPathInt("nope", "x").ok());
  EXPECT_FALSE(JsonPathInt(R"({"data":[]})", "data.0.ts").ok());
}

LaneResult Order(ExchangeLane& lane, const std::string& key) {
  LaneRequest r;
  r.method = "POST";
  r.path = "/api/v3/order";
  r.query = {{"symbol", "BTCUSDT"}, {"side", "BUY"}, {"signature", "x"}};
  if (!key.empty()) r.headers = {{"X-MBX-APIKEY", key}};
  return lane.Execute(r);
}

TEST_F(LaneTest, AccountRequestsSpendOnlyTheNodesLeaseOfTheAccount) {
  Make("binance_spot");
  Probe(absl::StrCat(R"({"serverTime":)", absl::ToUnixMillis(clock_.Now()), "}"));
  LaneResult r = Order(*lane_, "");
  EXPECT_EQ(r.outcome, LaneResult::Outcome::kInvalid);
  EXPECT_THAT(r.detail, HasSubstr("X-MBX-APIKEY"));
  r = Order(*lane_, "KEY-ONE-0123456789");
  EXPECT_EQ(r.outcome, LaneResult::Outcome::kRefused);
  EXPECT_THAT(r.detail, HasSubstr("no lease of account KEY-ONE-..."));
  size_t sent = http_->sent().size();

  lane_->SetLeases({{"KEY-ONE-0123456789", "ORDERS_10S", 2}, {"KEY-ONE-0123456789", "ORDERS_1D", 100}},
                   clock_.Now() + absl::Seconds(10));
  EXPECT_EQ(Order(*lane_, "KEY-ONE-0123456789").outcome, LaneResult::Outcome::kReplied);
  EXPECT_EQ(Order(*lane_, "KEY-ONE-0123456789").outcome, LaneResult::Outcome::kReplied);
  ASSERT_EQ(http_->sent().size(), sent + 2);
  EXPECT_THAT(http_->sent().back().headers,
              ::testing::Contains(std::make_pair(std::string("X-MBX-APIKEY"), std::string("KEY-ONE-0123456789"))));
  r = Order(*lane_, "KEY-ONE-0123456789");
  EXPECT_EQ(r.outcome, LaneResult::Outcome::kRefused);
  EXPECT_THAT(r.detail, HasSubstr("has no room"));
  EXPECT_GT(r.retry_after, absl::ZeroDuration());
  // Another account has no lease here; public requests never need one.
  EXPECT_EQ(Order(*lane_, "KEY-TWO").outcome, LaneResult::Outcome::kRefused);
  EXPECT_EQ(Run("/api/v3/ping").outcome, LaneResult::Outcome::kReplied);
  EXPECT_EQ(http_->sent().size(), sent + 3);
}

TEST_F(LaneTest, AnUnrenewedLeaseExpiresAndAWithdrawnOneStopsAtOnce) {
  Make("binance_spot");
  Probe(absl::StrCat(R"({"serverTime":)", absl::ToUnixMillis(clock_.Now()), "}"));
  lane_->SetLeases({{"K", "ORDERS_10S", 50}, {"K", "ORDERS_1D", 1000}}, clock_.Now() + absl::Seconds(10));
  EXPECT_EQ(Order(*lane_, "K").outcome, LaneResult::Outcome::kReplied);
  clock_.AdvanceBy(absl::Seconds(10));
  LaneResult r = Order(*lane_, "K");
  EXPECT_EQ(r.outcome, LaneResult::Outcome::kRefused);
  EXPECT_THAT(r.detail, HasSubstr("expired"));
  // Renewed with a smaller share: one more in this window, then none.
  clock_.AdvanceBy(absl::Milliseconds(500));  // clear of the window's edge
  lane_->SetLeases({{"K", "ORDERS_10S", 1}, {"K", "ORDERS_1D", 1000}}, clock_.Now() + absl::Seconds(10));
  EXPECT_EQ(Order(*lane_, "K").outcome, LaneResult::Outcome::kReplied);
  EXPECT_EQ(Order(*lane_, "K").outcome, LaneResult::Outcome::kRefused);
  // A lease message without the account withdraws it.
  lane_->SetLeases({}, clock_.Now() + absl::Seconds(10));
  clock_.AdvanceBy(absl::Seconds(10));
  EXPECT_THAT(Order(*lane_, "K").detail, HasSubstr("expired"));
}

TEST_F(LaneTest, TooManyOrdersHoldsTheAccountButNotTheIp) {
  Make("binance_spot");
  Probe(absl::StrCat(R"({"serverTime":)", absl::ToUnixMillis(clock_.Now()), "}"));
  lane_->SetLeases({{"K", "ORDERS_10S", 10}, {"K", "ORDERS_1D", 1000}}, clock_.Now() + absl::Seconds(60));
  // Orders sent with the same key outside the cluster filled the account.
  http_->Then(FakeHttpClient::Reply(429, R"({"code":-1015,"msg":"Too many new orders."})", {{"Retry-After", "7"}}));
  LaneResult r = Order(*lane_, "K");
  EXPECT_EQ(r.outcome, LaneResult::Outcome::kReplied);
  EXPECT_EQ(r.reply.status, 429);
  EXPECT_FALSE(r.park.has_value()) << "the IP is not limited";
  EXPECT_FALSE(lane_->ActivePark().has_value());
  r = Order(*lane_, "K");
  EXPECT_EQ(r.outcome, LaneResult::Outcome::kRefused);
  EXPECT_TRUE(r.account_refusal);
  EXPECT_EQ(r.retry_after, absl::Seconds(7));
  EXPECT_EQ(Run("/api/v3/ping").outcome, LaneResult::Outcome::kReplied);
  clock_.AdvanceBy(absl::Seconds(7));
  EXPECT_EQ(Order(*lane_, "K").outcome, LaneResult::Outcome::kReplied);
}

}  // namespace
}  // namespace marketprism::node
