#include "coordinator/limits_refresher.h"

#include <gtest/gtest.h>

#include <deque>

#include "tests/testing/fake_clock.h"

namespace marketprism::coordinator {
namespace {

constexpr char kPublished[] = R"({"rateLimits":[
  {"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":1200}]})";

// A scheduler with one node serving every exchange, and a refresher whose
// reads are kept for the test to answer.
class LimitsRefresherTest : public ::testing::Test {
 protected:
  void Make(LimitsRefresher::Options o) {
    auto rules = common::RulesBook::LoadDefault();
    ASSERT_TRUE(rules.ok());
    SchedulerOptions so;
    so.await_published_limits = true;
    scheduler_ = std::make_unique<Scheduler>(std::move(*rules), clock_, so);
    refresher_ = std::make_unique<LimitsRefresher>(
        o, clock_, *scheduler_,
        [this](const v1::ExecuteRequest& req, absl::Time, LimitsRefresher::Done done) {
          reads_.push_back({req, std::move(done)});
        },
        [this] { ++pushes_; });
  }
  void AddNode() {
    scheduler_->UpsertNode("n1", "10.0.0.1", "10.0.0.1:7000", "test", {"binance_spot", "okx"});
    scheduler_->SetNodeClocks("n1", {{"binance_spot", absl::ZeroDuration(), absl::ZeroDuration()},
                                     {"okx", absl::ZeroDuration(), absl::ZeroDuration()}});
  }
  void Answer(int status, std::string body) {
    ASSERT_FALSE(reads_.empty());
    v1::ExecuteResponse r;
    r.set_http_status(status);
    r.set_body(std::move(body));
    auto done = std::move(reads_.front().second);
    reads_.pop_front();
    done(std::move(r));
  }
  int64_t Capacity(const std::string& pool) {
    for (const auto& [exchange, p, capacity] : scheduler_->Limits()) {
      if (exchange == "binance_spot" && p == pool) return capacity;
    }
    return -1;
  }

  testing::FakeClock clock_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<LimitsRefresher> refresher_;
  std::deque<std::pair<v1::ExecuteRequest, LimitsRefresher::Done>> reads_;
  int pushes_ = 0;
};

TEST_F(LimitsRefresherTest, ReadsOnceANodeServesTheExchangeAndAppliesWhatChanged) {
  Make({absl::Minutes(10), absl::Seconds(10)});
  refresher_->Start();
  clock_.AdvanceBy(absl::Seconds(3));
  EXPECT_TRUE(reads_.empty());  // no node serves Binance yet
  AddNode();
  clock_.AdvanceBy(absl::Seconds(1));
  ASSERT_EQ(reads_.size(), 1u);  // only Binance publishes its limits
  EXPECT_EQ(reads_.front().first.exchange(), "binance_spot");
  EXPECT_EQ(reads_.front().first.path(), "/api/v3/exchangeInfo");
  clock_.AdvanceBy(absl::Seconds(3));
  EXPECT_EQ(reads_.size(), 1u);  // one read at a time
  EXPECT_FALSE(scheduler_->LimitsConfirmed("binance_spot"));
  Answer(200, kPublished);
  EXPECT_EQ(Capacity("REQUEST_WEIGHT"), 1200);
  EXPECT_EQ(pushes_, 1);
  EXPECT_TRUE(scheduler_->LimitsConfirmed("binance_spot"));
  // Nothing more until the period is up.
  clock_.AdvanceBy(absl::Minutes(9));
  EXPECT_TRUE(reads_.empty());
  clock_.AdvanceBy(absl::Minutes(1) + absl::Seconds(1));
  ASSERT_EQ(reads_.size(), 1u);
  Answer(200, kPublished);
  EXPECT_EQ(pushes_, 1);  // the same figures: nothing to push
}

TEST_F(LimitsRefresherTest, ARefusalAsksForAReadAtOnceAndThenAtMostOnceEveryFiveSeconds) {
  Make({absl::Minutes(10), absl::Seconds(10)});
  AddNode();
  refresher_->Start();
  clock_.RunDue();
  ASSERT_EQ(reads_.size(), 1u);
  Answer(200, kPublished);
  // The read just done may predate what the exchange changed: read again now.
  clock_.AdvanceBy(absl::Milliseconds(300));
  refresher_->RequestRefresh("binance_spot");
  clock_.RunDue();
  ASSERT_EQ(reads_.size(), 1u);
  Answer(200, kPublished);
  refresher_->RequestRefresh("binance_spot");
  clock_.AdvanceBy(absl::Seconds(1));
  EXPECT_TRUE(reads_.empty());  // the last refusal's read was under 5 s ago
  clock_.AdvanceBy(absl::Seconds(4));
  EXPECT_EQ(reads_.size(), 1u);
  refresher_->RequestRefresh("okx");  // publishes nothing: no read
  Answer(200, kPublished);
  clock_.AdvanceBy(absl::Seconds(30));
  EXPECT_TRUE(reads_.empty());
}

TEST_F(LimitsRefresherTest, ARefusalDuringAReadIsReadAgainAfterIt) {
  Make({absl::Minutes(10), absl::Seconds(10)});
  AddNode();
  refresher_->Start();
  clock_.RunDue();
  ASSERT_EQ(reads_.size(), 1u);  // the first read, sent before the refusal
  refresher_->RequestRefresh("binance_spot");
  clock_.AdvanceBy(absl::Seconds(2));
  EXPECT_EQ(reads_.size(), 1u) << "one read at a time";
  Answer(200, kPublished);
  clock_.AdvanceBy(absl::Seconds(1));
  EXPECT_EQ(reads_.size(), 1u) << "the refusal is not forgotten";
}

TEST_F(LimitsRefresherTest, ARefusalsReadHoldsPlacementsUntilAnsweredAndAFailedOneIsSentAgainAtOnce) {
  Make({absl::Minutes(10), absl::Seconds(10)});
  AddNode();
  refresher_->Start();
  clock_.RunDue();
  Answer(200, kPublished);
  ASSERT_TRUE(scheduler_->LimitsConfirmed("binance_spot"));
  clock_.AdvanceBy(absl::Seconds(6));
  refresher_->RequestRefresh("binance_spot");
  clock_.RunDue();
  ASSERT_EQ(reads_.size(), 1u);
  EXPECT_FALSE(scheduler_->LimitsConfirmed("binance_spot")) << "nothing is placed at the refused capacity meanwhile";
  // The read met the refusal itself: it goes again within 100 ms, not 5 s later.
  Answer(429, "");
  EXPECT_FALSE(scheduler_->LimitsConfirmed("binance_spot"));
  clock_.AdvanceBy(absl::Milliseconds(100));
  ASSERT_EQ(reads_.size(), 1u);
  Answer(200, R"({"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":300}]})");
  EXPECT_EQ(Capacity("REQUEST_WEIGHT"), 300);
  EXPECT_TRUE(scheduler_->LimitsConfirmed("binance_spot"));
  // A hold whose reads never succeed ends after the wait, capacities as they are.
  clock_.AdvanceBy(absl::Seconds(6));
  refresher_->RequestRefresh("binance_spot");
  clock_.RunDue();
  for (int i = 0; i < 200 && !scheduler_->LimitsConfirmed("binance_spot"); ++i) {
    if (!reads_.empty()) Answer(503, "busy");
    clock_.AdvanceBy(absl::Milliseconds(100));
  }
  EXPECT_TRUE(scheduler_->LimitsConfirmed("binance_spot"));
  EXPECT_EQ(Capacity("REQUEST_WEIGHT"), 300);
}

TEST_F(LimitsRefresherTest, WithoutAnAnswerTheRulesFiguresAreUsedAfterTheWait) {
  Make({absl::Minutes(10), absl::Seconds(10)});
  AddNode();
  refresher_->Start();
  clock_.RunDue();
  ASSERT_EQ(reads_.size(), 1u);
  Answer(503, "busy");
  EXPECT_FALSE(scheduler_->LimitsConfirmed("binance_spot"));
  clock_.AdvanceBy(absl::Seconds(11));
  EXPECT_TRUE(scheduler_->LimitsConfirmed("binance_spot"));
  EXPECT_EQ(Capacity("REQUEST_WEIGHT"), 6000);
  EXPECT_EQ(pushes_, 0);
}

}  // namespace
}  // namespace marketprism::coordinator
