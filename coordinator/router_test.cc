#include "coordinator/router.h"

#include <deque>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"

namespace marketprism::coordinator {
namespace {

using ::marketprism::testing::StatusIs;
using ::testing::HasSubstr;

const absl::Time kMinute = absl::FromUnixSeconds(1'795'046'400);

class FakeNodeClient : public NodeClient {
 public:
  struct Call {
    std::string node;
    v1::DispatchRequest req;
    absl::Time deadline;
    DispatchDone done;
  };
  void Dispatch(const std::string& node_id, v1::DispatchRequest request, absl::Time deadline,
                DispatchDone done) override {
    calls.push_back({node_id, std::move(request), deadline, std::move(done)});
  }
  // Answers the oldest outstanding call.
  void Answer(absl::Status status, v1::DispatchResponse r) {
    Call c = std::move(calls.front());
    calls.pop_front();
    c.done(std::move(status), std::move(r));
  }
  std::deque<Call> calls;
};

v1::DispatchResponse Replied(int http_status, const std::string& body = "{}") {
  v1::DispatchResponse r;
  r.set_outcome(v1::DispatchResponse::REPLIED);
  r.set_http_status(http_status);
  r.set_body(body);
  r.set_observed_used(-1);
  return r;
}

class RouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto rules = common::RulesBook::LoadDefault();
    ASSERT_TRUE(rules.ok());
    ASSERT_TRUE(rules->ApplyLimitOverride("binance_spot.REQUEST_WEIGHT=10").ok());
    SchedulerOptions so;
    so.default_uncertainty = absl::Milliseconds(1);
    so.exposure.enabled = false;  // calls held at the node side by side (scheduler_test covers the bound)
    sched_ = std::make_unique<Scheduler>(std::move(*rules), clock_, so);
    for (const char* id : {"a", "b"}) {
      sched_->UpsertNode(id, std::string("10.0.0.") + (id[0] == 'a' ? "1" : "2"), "x:1", "t", {"binance_spot"});
      sched_->SetNodeClocks(id, {{"binance_spot", absl::ZeroDuration(), absl::ZeroDuration()}});
    }
    RouterOptions ro;
    ro.dispatch_margin = absl::ZeroDuration();
    ro.on_rejection = [this](const std::string& e) { rejections_.push_back(e); };
    router_ = std::make_unique<Router>(*sched_, nodes_, ro);
  }

  void Execute(const std::string& path, std::function<bool()> cancelled = nullptr,
               absl::Duration timeout = absl::Minutes(2)) {
    v1::ExecuteRequest req;
    req.set_exchange("binance_spot");
    req.set_method("GET");
    req.set_path(path);
    router_->Execute(
        req, clock_.Now() + timeout,
        [this](absl::StatusOr<v1::ExecuteResponse> r) { results_.push_back(std::move(r)); }, cancelled);
  }

  testing::FakeClock clock_{kMinute + absl::Seconds(10)};
  std::unique_ptr<Scheduler> sched_;
  FakeNodeClient nodes_;
  std::unique_ptr<Router> router_;
  std::vector<absl::StatusOr<v1::ExecuteResponse>> results_;
  std::vector<std::string> rejections_;
};

TEST_F(RouterTest, AReplyIsTheAnswer) {
  Execute("/api/v3/ping");
  ASSERT_EQ(nodes_.calls.size(), 1u);
  const v1::DispatchRequest& d = nodes_.calls[0].req;
  EXPECT_EQ(d.path(), "/api/v3/ping");
  EXPECT_EQ(d.term(), 1);
  ASSERT_EQ(d.cost_size(), 2);
  nodes_.Answer(absl::OkStatus(), Replied(200, "{}"));
  ASSERT_EQ(results_.size(), 1u);
  ASSERT_TRUE(results_[0].ok());
  EXPECT_EQ(results_[0]->http_status(), 200);
  EXPECT_EQ(results_[0]->body(), "{}");
  EXPECT_EQ(results_[0]->attempts(), 1);
  EXPECT_FALSE(results_[0]->node_id().empty());
}

TEST_F(RouterTest, AnExchangeErrorIsAReplyNotAnError) {
  Execute("/api/v3/ping");
  nodes_.Answer(absl::OkStatus(), Replied(400, R"({"code":-1121,"msg":"Invalid symbol."})"));
  ASSERT_TRUE(results_[0].ok());
  EXPECT_EQ(results_[0]->http_status(), 400);
}

TEST_F(RouterTest, ARefusalGoesToTheOtherNode) {
  Execute("/api/v3/ping");
  std::string first = nodes_.calls[0].node;
  v1::DispatchResponse refused;
  refused.set_outcome(v1::DispatchResponse::REFUSED);
  refused.set_retry_after_ms(5000);
  nodes_.Answer(absl::OkStatus(), refused);
  EXPECT_TRUE(results_.empty()) << "not answered yet";
  ASSERT_EQ(nodes_.calls.size(), 1u);
  EXPECT_NE(nodes_.calls[0].node, first);
  nodes_.Answer(absl::OkStatus(), Replied(200));
  ASSERT_TRUE(results_[0].ok());
  EXPECT_EQ(results_[0]->attempts(), 2);
}

TEST_F(RouterTest, ATransportFailureIsRetriedElsewhereAndStaysCharged) {
  v1::ExecuteRequest req;
  req.set_exchange("binance_spot");
  req.set_path("/api/v3/avgPrice");
  req.add_query()->set_key("symbol");
  req.mutable_query(0)->set_value("BTCUSDT");
  router_->Execute(req, clock_.Now() + absl::Minutes(1),
                   [this](absl::StatusOr<v1::ExecuteResponse> r) { results_.push_back(std::move(r)); });
  std::string first = nodes_.calls[0].node;
  nodes_.Answer(absl::UnavailableError("connection reset"), {});
  ASSERT_EQ(nodes_.calls.size(), 1u);
  EXPECT_NE(nodes_.calls[0].node, first);
  nodes_.Answer(absl::OkStatus(), Replied(200));
  ASSERT_TRUE(results_.back().ok());
  // The first node may have sent it: its IP keeps the 2 charged.
  for (const NodeSnapshot& n : sched_->Snapshot().nodes) {
    if (n.node_id != first) continue;
    for (const auto& [exchange, pools] : n.pools) {
      for (const auto& p : pools) {
        if (p.name == "REQUEST_WEIGHT") EXPECT_EQ(p.used, 2);
      }
    }
  }
}

TEST_F(RouterTest, ACancelledCallIsDroppedAndItsBudgetRefunded) {
  // A caller that has gone away by the time its request is placed.
  Execute("/api/v3/ping", [] { return true; });
  ASSERT_EQ(results_.size(), 1u);
  EXPECT_THAT(results_[0], StatusIs(absl::StatusCode::kCancelled));
  EXPECT_TRUE(nodes_.calls.empty()) << "never dispatched";
  // Its reservation was refunded: both IPs still take 10 each.
  for (int i = 0; i < 20; ++i) Execute("/api/v3/ping");
  EXPECT_EQ(nodes_.calls.size(), 20u);
}

TEST_F(RouterTest, BadRequestsAreAnsweredAtOnce) {
  Execute("/api/v3/nope");
  ASSERT_EQ(results_.size(), 1u);
  EXPECT_THAT(results_[0], StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("path:")));
}

TEST_F(RouterTest, ARejectionIsReportedSoLimitsCanBeReread) {
  Execute("/api/v3/ping");
  v1::DispatchResponse r = Replied(429);
  r.mutable_ban()->set_exchange("binance_spot");
  r.mutable_ban()->set_kind("rate_limited");
  r.mutable_ban()->set_until_ms(absl::ToUnixMillis(clock_.Now() + absl::Seconds(5)));
  nodes_.Answer(absl::OkStatus(), r);
  EXPECT_EQ(rejections_, std::vector<std::string>{"binance_spot"});
  ASSERT_TRUE(results_[0].ok());
  EXPECT_EQ(results_[0]->http_status(), 429) << "the exchange's reply is still the answer";
}

TEST_F(RouterTest, NoBudgetBeforeTheDeadlineIsResourceExhausted) {
  for (int i = 0; i < 20; ++i) Execute("/api/v3/ping");
  while (!nodes_.calls.empty()) nodes_.Answer(absl::OkStatus(), Replied(200));
  results_.clear();
  Execute("/api/v3/ping", nullptr, absl::Seconds(5));
  ASSERT_EQ(results_.size(), 1u);
  EXPECT_THAT(results_[0], StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(RetryAfterOf(results_[0].status()), absl::Seconds(50) + absl::Milliseconds(1));
}

}  // namespace
}  // namespace marketprism::coordinator
