#include "node/clock_prober.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "node/fake_http_client.h"
#include "tests/testing/fake_clock.h"

namespace marketprism::node {
namespace {

// One Binance lane whose exchange answers every time probe; the prober's
// rounds run inline, on the fake clock's timers.
class ClockProberTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto rules = common::RulesBook::LoadDefault();
    ASSERT_TRUE(rules.ok()) << rules.status();
    rules_ = std::make_unique<common::RulesBook>(std::move(*rules));
    lanes_["binance_spot"] = std::make_unique<ExchangeLane>(*rules_->Find("binance_spot"), LaneOptions{}, clock_);
    lanes_["binance_spot"]->SetEndpoint("http://sim:1", http_);
    prober_ = std::make_unique<ClockProber>(
        lanes_, clock_, absl::Minutes(1), [](std::function<void()> probe) { probe(); }, [this] { ++rounds_; });
  }
  void TearDown() override { prober_->Stop(); }

  int Probes() {
    int n = 0;
    for (const common::HttpRequestSpec& r : http_->sent()) n += absl::StrContains(r.url, "/api/v3/time");
    return n;
  }
  void AnswerNextProbe() {
    http_->Then(FakeHttpClient::Reply(200, absl::StrCat("{\"serverTime\":", absl::ToUnixMillis(clock_.Now()), "}")));
  }

  testing::FakeClock clock_;
  std::unique_ptr<common::RulesBook> rules_;
  std::shared_ptr<FakeHttpClient> http_ = std::make_shared<FakeHttpClient>();
  Lanes lanes_;
  std::unique_ptr<ClockProber> prober_;
  int rounds_ = 0;
};

TEST_F(ClockProberTest, ProbesAtStartThenOncePerIntervalOnTheClock) {
  AnswerNextProbe();
  prober_->Start();
  EXPECT_EQ(Probes(), 0);  // nothing happens until the clock's timer runs
  clock_.RunDue();
  EXPECT_EQ(Probes(), 1);
  EXPECT_EQ(rounds_, 1);
  EXPECT_TRUE(lanes_["binance_spot"]->clock().measured);
  clock_.AdvanceBy(absl::Seconds(59));
  EXPECT_EQ(Probes(), 1);  // looked each second, nothing due
  AnswerNextProbe();
  clock_.AdvanceBy(absl::Seconds(2));
  EXPECT_EQ(Probes(), 2);
}

TEST_F(ClockProberTest, ReprobeProbesAtOnceDueOrNot) {
  AnswerNextProbe();
  prober_->Start();
  clock_.RunDue();
  ASSERT_EQ(Probes(), 1);
  AnswerNextProbe();
  prober_->Reprobe();  // an endpoint changed
  clock_.RunDue();
  EXPECT_EQ(Probes(), 2);
}

TEST_F(ClockProberTest, ReprobeBeforeStartWaitsForStartAndStopEndsTheRounds) {
  prober_->Reprobe();
  clock_.AdvanceBy(absl::Seconds(5));
  EXPECT_EQ(Probes(), 0);  // not started: nothing runs (the node's pool may not exist yet)
  prober_->Stop();
  prober_->Start();
  clock_.AdvanceBy(absl::Minutes(5));
  EXPECT_EQ(Probes(), 0);
}

}  // namespace
}  // namespace marketprism::node
