#include "node/dispatch_service.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <map>

#include "absl/strings/str_cat.h"
#include "node/fake_http_client.h"
#include "node/reply_record.h"
#include "tests/testing/fake_clock.h"

namespace marketprism::node {
namespace {

namespace v1 = ::marketprism::v1;
using ::testing::HasSubstr;

constexpr char kEgressIp[] = "127.0.0.11";

// The service on an in-process server (no port), over one binance_spot lane
// whose exchange is a FakeHttpClient; REQUEST_WEIGHT is cut to 8 so the
// node's own ledger is easy to fill.
class DispatchServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto rules = common::RulesBook::LoadDefault();
    ASSERT_TRUE(rules.ok()) << rules.status();
    ASSERT_TRUE(rules->ApplyLimitOverride("binance_spot.REQUEST_WEIGHT=8").ok());
    rules_ = std::make_unique<common::RulesBook>(std::move(*rules));
    auto lane =
        std::make_unique<ExchangeLane>(*rules_->Find("binance_spot"), LaneOptions{}, clock_);
    lane->SetEndpoint("http://sim:1", http_);
    // The lane takes requests once the exchange's clock is measured (weight 1).
    http_->Then(FakeHttpClient::Reply(
        200, absl::StrCat(R"({"serverTime":)", absl::ToUnixMillis(clock_.Now()), "}")));
    ASSERT_TRUE(lane->ProbeClock().ok());
    lanes_["binance_spot"] = std::move(lane);
    ASSERT_TRUE(fence_.Admit(1, "c1"));

    service_ = std::make_unique<DispatchService>(DispatchParts{
        .lanes = lanes_,
        .fence = fence_,
        .admit_term = [this](int64_t term, const std::string& c) { return fence_.Admit(term, c); },
        .executor = pool_,
        .clock = clock_,
        .report_now = [this] { ++reports_now_; },
        .egress_ip = kEgressIp,
        .node_id = "node-a",
        .on_record =
            [this](v1::MarketEvent e) {
              absl::MutexLock lock(&records_mu_);
              records_.push_back(std::move(e));
            }});
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::Node::NewStub(server_->InProcessChannel(grpc::ChannelArguments()));
  }

  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  static v1::DispatchRequest Depth(int64_t term = 1, std::string coordinator = "c1") {
    v1::DispatchRequest req;
    req.set_exchange("binance_spot");
    req.set_method("GET");
    req.set_path("/api/v3/depth");
    v1::QueryParam* q = req.add_query();
    q->set_key("symbol");
    q->set_value("BTCUSDT");
    req.set_term(term);
    req.set_coordinator_id(std::move(coordinator));
    return req;
  }

  // One call, answered in full before it returns (the service's work, the
  // report_now callback included, happens before the reply).
  v1::DispatchResponse Dispatch(const v1::DispatchRequest& req) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::DispatchResponse resp;
    grpc::Status st = stub_->Dispatch(&ctx, req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp;
  }

  std::vector<v1::MarketEvent> Records() {
    absl::MutexLock lock(&records_mu_);
    return records_;
  }

  absl::Mutex records_mu_;
  std::vector<v1::MarketEvent> records_ ABSL_GUARDED_BY(records_mu_);
  testing::FakeClock clock_;
  std::unique_ptr<common::RulesBook> rules_;
  std::shared_ptr<FakeHttpClient> http_ = std::make_shared<FakeHttpClient>();
  Lanes lanes_;
  TermFence fence_;
  common::ThreadPool pool_{2};
  std::atomic<int> reports_now_{0};
  std::unique_ptr<DispatchService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Node::Stub> stub_;
};

TEST_F(DispatchServiceTest, ARepliedRequestCarriesTheExchangesAnswerAndWhatItCost) {
  http_->Then(FakeHttpClient::Reply(200, R"({"bids":[]})",
                                    {{"X-MBX-USED-WEIGHT-1M", "6"}, {"X-Extra", "1"}}));
  v1::DispatchRequest req = Depth();
  v1::Header* h = req.add_headers();
  h->set_name("X-MBX-APIKEY");
  h->set_value("k");
  v1::DispatchResponse resp = Dispatch(req);

  EXPECT_EQ(resp.outcome(), v1::DispatchResponse::REPLIED);
  EXPECT_EQ(resp.http_status(), 200);
  EXPECT_EQ(resp.body(), R"({"bids":[]})");
  ASSERT_EQ(resp.headers_size(), 2);
  EXPECT_EQ(resp.headers(1).name(), "X-Extra");
  std::map<std::string, int64_t> cost;
  for (const v1::PoolCharge& c : resp.cost()) cost[c.pool()] = c.units();
  EXPECT_THAT(cost, ::testing::UnorderedElementsAre(::testing::Pair("RAW_REQUESTS", 1),
                                                    ::testing::Pair("REQUEST_WEIGHT", 5)));
  EXPECT_EQ(resp.observed_pool(), "REQUEST_WEIGHT");
  EXPECT_EQ(resp.observed_used(), 6);
  EXPECT_FALSE(resp.has_ban());
  EXPECT_EQ(resp.node_received_unix_us(), common::ToUnixMicros(clock_.Now()));
  EXPECT_EQ(resp.node_replied_unix_us(), common::ToUnixMicros(clock_.Now()));
  EXPECT_GT(resp.sent_exchange_us(), 0);

  std::vector<common::HttpRequestSpec> sent = http_->sent();
  ASSERT_EQ(sent.size(), 2u);  // the clock probe, then this
  EXPECT_EQ(sent.back().url, "http://sim:1/api/v3/depth?symbol=BTCUSDT");
  EXPECT_THAT(sent.back().headers,
              ::testing::Contains(std::make_pair(std::string("X-MBX-APIKEY"), std::string("k"))));
  EXPECT_EQ(reports_now_.load(), 0);
}

TEST_F(DispatchServiceTest, TheNodesOwnLedgerRefusesWhatWouldNotFit) {
  ASSERT_EQ(Dispatch(Depth()).outcome(), v1::DispatchResponse::REPLIED);  // 1 + 5 of 8
  v1::DispatchResponse resp = Dispatch(Depth());                          // 11 > 8

  EXPECT_EQ(resp.outcome(), v1::DispatchResponse::REFUSED);
  EXPECT_FALSE(resp.account_refused());
  EXPECT_GT(resp.retry_after_ms(), 0);
  EXPECT_THAT(resp.detail(), HasSubstr("no room"));
  EXPECT_EQ(resp.observed_used(), -1);
  ASSERT_GT(resp.usage_size(), 0);
  EXPECT_EQ(resp.usage(0).exchange(), "binance_spot");
  EXPECT_EQ(resp.usage(0).scope_key(), kEgressIp);
  EXPECT_EQ(http_->sent().size(), 2u) << "the refused request is never sent";
}

TEST_F(DispatchServiceTest, AStaleTermIsRefusedAndNeverReachesTheExchange) {
  ASSERT_TRUE(fence_.Admit(2, "c2"));  // a newer leader was seen
  v1::DispatchResponse resp = Dispatch(Depth(/*term=*/1, "c1"));

  EXPECT_EQ(resp.outcome(), v1::DispatchResponse::STALE_TERM);
  EXPECT_EQ(resp.highest_term(), 2);
  EXPECT_THAT(resp.detail(), HasSubstr("term 1 of c1 is not the newest"));
  EXPECT_EQ(http_->sent().size(), 1u) << "only the clock probe";
  EXPECT_EQ(Dispatch(Depth(2, "c2")).outcome(), v1::DispatchResponse::REPLIED);
}

TEST_F(DispatchServiceTest, AnExchangeTheNodeDoesNotServeIsNotSent) {
  v1::DispatchRequest req = Depth();
  req.set_exchange("okx");
  v1::DispatchResponse resp = Dispatch(req);

  EXPECT_EQ(resp.outcome(), v1::DispatchResponse::NOT_SENT);
  EXPECT_THAT(resp.detail(), HasSubstr("does not serve okx"));
  EXPECT_EQ(http_->sent().size(), 1u);
}

TEST_F(DispatchServiceTest, AReplyThatParksTheIpCarriesTheBanAndTellsTheCoordinatorAtOnce) {
  http_->Then(FakeHttpClient::Reply(429, R"({"code":-1003,"msg":"Too much request weight used"})",
                                    {{"Retry-After", "7"}}));
  v1::DispatchResponse resp = Dispatch(Depth());

  EXPECT_EQ(resp.outcome(), v1::DispatchResponse::REPLIED);
  EXPECT_EQ(resp.http_status(), 429);
  ASSERT_TRUE(resp.has_ban());
  EXPECT_EQ(resp.ban().exchange(), "binance_spot");
  EXPECT_EQ(resp.ban().kind(), "rate_limited");
  EXPECT_EQ(resp.ban().until_ms(), absl::ToUnixMillis(clock_.Now() + absl::Seconds(7)));
  EXPECT_EQ(reports_now_.load(), 1);

  v1::DispatchResponse again = Dispatch(Depth());
  EXPECT_EQ(again.outcome(), v1::DispatchResponse::PARKED);
  EXPECT_EQ(again.retry_after_ms(), 7000);
  EXPECT_EQ(reports_now_.load(), 1) << "only the reply that parked it";
}

TEST_F(DispatchServiceTest, AReplyTheLeaderAskedForIsWrittenAsItsRecordAndARefusalIsNot) {
  v1::DispatchRequest poll = Depth();
  v1::RecordAs* as = poll.mutable_record();
  as->set_channel("poll");
  as->set_key("binance_spot/poll/depth/1700000000000000");
  as->set_symbol("depth");
  as->set_slot_us(1700000000000000);
  http_->Then(FakeHttpClient::Reply(200, R"({"lastUpdateId":7})"));
  ASSERT_EQ(Dispatch(poll).outcome(), v1::DispatchResponse::REPLIED);
  std::vector<v1::MarketEvent> got = Records();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].key(), "binance_spot/poll/depth/1700000000000000");
  EXPECT_EQ(got[0].node_id(), "node-a");
  EXPECT_EQ(got[0].channel(), "poll");
  EXPECT_EQ(got[0].poll().http_status(), 200);
  EXPECT_EQ(got[0].poll().body(), R"({"lastUpdateId":7})");
  EXPECT_EQ(got[0].poll().path(), "/api/v3/depth");
  // 1 + 5 of 8 spent: the next depth is refused by the ledger, not sent,
  // and the router places it again: nothing is written for it.
  EXPECT_EQ(Dispatch(poll).outcome(), v1::DispatchResponse::REFUSED);
  EXPECT_EQ(Records().size(), 1u);
}

TEST_F(DispatchServiceTest, AHealthProbeIsUpWithTheExchangesClockOrDownSayingWhy) {
  v1::DispatchRequest probe = Depth();
  probe.set_path("/api/v3/time");
  probe.clear_query();
  v1::RecordAs* as = probe.mutable_record();
  as->set_channel("exchange_health");
  as->set_key("binance_spot/exchange_health/1");
  as->set_symbol("server_time");
  as->set_slot_us(1);
  as->set_slow_us(1000000);
  int64_t server_ms = absl::ToUnixMillis(clock_.Now()) + 250;
  http_->Then(FakeHttpClient::Reply(200, absl::StrCat(R"({"serverTime":)", server_ms, "}")));
  ASSERT_EQ(Dispatch(probe).outcome(), v1::DispatchResponse::REPLIED);
  http_->Then(FakeHttpClient::Reply(503, "maintenance"));
  ASSERT_EQ(Dispatch(probe).outcome(), v1::DispatchResponse::REPLIED);
  std::vector<v1::MarketEvent> got = Records();
  ASSERT_EQ(got.size(), 2u);
  const v1::ExchangeHealth& up = got[0].exchange_health();
  EXPECT_EQ(up.status(), "up") << up.error();
  EXPECT_EQ(up.server_time_ms(), server_ms);
  EXPECT_EQ(up.clock_offset_ms(), 250);  // the fake clock stands still
  EXPECT_EQ(up.path(), "/api/v3/time");
  const v1::ExchangeHealth& down = got[1].exchange_health();
  EXPECT_EQ(down.status(), "down");
  EXPECT_EQ(down.http_status(), 503);
  EXPECT_THAT(down.error(), HasSubstr("HTTP 503 maintenance"));
}

TEST(RecordOfReplyTest, ASlowOrLostProbeSaysSo) {
  v1::DispatchRequest req;
  req.set_exchange("okx");
  req.set_path("/api/v5/public/time");
  req.mutable_record()->set_channel("exchange_health");
  req.mutable_record()->set_slow_us(500000);
  v1::DispatchResponse resp;
  resp.set_outcome(v1::DispatchResponse::REPLIED);
  resp.set_http_status(200);
  resp.set_body(R"({"code":"0","data":[{"ts":"1700000000900"}]})");
  resp.set_sent_exchange_us(1'700'000'000'000'000);
  resp.set_replied_exchange_us(1'700'000'000'800'000);  // 800 ms
  auto rules = common::RulesBook::LoadDefault();
  ASSERT_TRUE(rules.ok());
  v1::MarketEvent e =
      RecordOfReply(req, resp, rules->Find("okx"), "n", absl::FromUnixMicros(1'700'000'000'800'000));
  EXPECT_EQ(e.exchange_health().status(), "slow");
  EXPECT_EQ(e.exchange_health().response_us(), 800000);
  EXPECT_EQ(e.exchange_health().server_time_ms(), 1700000000900);
  EXPECT_EQ(e.exchange_health().clock_offset_ms(), 500);  // against our clock at 400 ms
  EXPECT_THAT(e.exchange_health().error(), HasSubstr("800 ms"));
  resp.set_body(R"({"code":"0","data":[]})");
  EXPECT_EQ(RecordOfReply(req, resp, rules->Find("okx"), "n", absl::Now()).exchange_health().status(), "down");
  resp.set_outcome(v1::DispatchResponse::LOST);
  resp.set_detail("timed out after 10 s");
  v1::MarketEvent lost = RecordOfReply(req, resp, rules->Find("okx"), "n", absl::Now());
  EXPECT_EQ(lost.exchange_health().status(), "down");
  EXPECT_EQ(lost.exchange_health().error(), "timed out after 10 s");
}

}  // namespace
}  // namespace marketprism::node
