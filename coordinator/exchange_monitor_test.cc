#include "coordinator/exchange_monitor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <deque>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "tests/testing/fake_clock.h"

namespace marketprism::coordinator {
namespace {

using ::testing::HasSubstr;

struct Probe {
  v1::ExecuteRequest req;
  v1::RecordAs record;
  Router::Done done;
};

// One node serving Binance spot and OKX; probes are kept for the test to
// answer, alerts collected.
class ExchangeMonitorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto rules = common::RulesBook::LoadDefault();
    ASSERT_TRUE(rules.ok());
    scheduler_ = std::make_unique<Scheduler>(std::move(*rules), clock_, SchedulerOptions{});
    ExchangeMonitorOptions o;
    o.interval = absl::Seconds(60);
    o.slow = absl::Seconds(1);
    o.history = 3;
    o.cluster = "test";
    monitor_ = std::make_unique<ExchangeMonitor>(
        o, clock_, *scheduler_,
        [this](const v1::ExecuteRequest& req, const v1::RecordAs& record, absl::Time, Router::Done done) {
          probes_.push_back({req, record, std::move(done)});
        },
        [this] { return leading_; }, [] { return HealthReport{}; },
        [this](std::string payload) { alerts_.push_back(nlohmann::json::parse(payload)); });
  }
  void AddNode() {
    scheduler_->UpsertNode("n1", "10.0.0.1", "10.0.0.1:7000", "test", {"binance_spot", "okx"});
    scheduler_->SetNodeClocks("n1", {{"binance_spot", absl::ZeroDuration(), absl::ZeroDuration()},
                                     {"okx", absl::ZeroDuration(), absl::ZeroDuration()}});
  }
  // Answers the oldest probe of `exchange`.
  void Answer(const std::string& exchange, absl::StatusOr<int> status, absl::Duration took = absl::Milliseconds(20)) {
    for (auto it = probes_.begin(); it != probes_.end(); ++it) {
      if (it->req.exchange() != exchange) continue;
      Router::Done done = std::move(it->done);
      probes_.erase(it);
      if (!status.ok()) return done(status.status());
      v1::ExecuteResponse r;
      r.set_http_status(*status);
      r.set_node_id("n1");
      r.set_exchange_us(absl::ToInt64Microseconds(took));
      int64_t ms = absl::ToUnixMillis(clock_.Now());
      r.set_body(exchange == "okx" ? absl::StrCat(R"({"code":"0","data":[{"ts":")", ms, R"("}]})")
                                   : absl::StrCat(R"({"serverTime":)", ms, "}"));
      return done(r);
    }
    ADD_FAILURE() << "no probe of " << exchange << " waits";
  }
  std::string Status(const std::string& exchange) {
    HealthReport r;
    monitor_->AddChecks(r);
    for (const HealthCheckResult& c : r.checks) {
      if (c.name == "exchange:" + exchange) return std::string(HealthLevelName(c.status));
    }
    return "none";
  }

  testing::FakeClock clock_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<ExchangeMonitor> monitor_;
  std::deque<Probe> probes_;
  std::vector<nlohmann::json> alerts_;
  bool leading_ = true;
};

TEST_F(ExchangeMonitorTest, TheLeaderProbesEachServedExchangeEveryIntervalAndTheNodeWritesTheRow) {
  monitor_->Start();
  clock_.AdvanceBy(absl::Seconds(2));
  EXPECT_TRUE(probes_.empty()) << "no node serves an exchange yet";
  AddNode();
  clock_.AdvanceBy(absl::Seconds(1));
  ASSERT_EQ(probes_.size(), 2u);
  EXPECT_EQ(probes_[0].req.path(), "/api/v3/time");
  EXPECT_EQ(probes_[1].req.path(), "/api/v5/public/time");
  const v1::RecordAs& as = probes_[0].record;
  EXPECT_EQ(as.channel(), "exchange_health");
  EXPECT_EQ(as.key(), absl::StrCat("binance_spot/exchange_health/", as.slot_us()));
  EXPECT_EQ(as.slot_us() % 60'000'000, 0) << "slots on the interval's grid, the same whoever leads";
  EXPECT_EQ(as.slow_us(), 1'000'000);
  Answer("binance_spot", 200);
  Answer("okx", 200);
  EXPECT_EQ(Status("binance_spot"), "healthy");
  EXPECT_TRUE(alerts_.empty()) << "healthy from the start is no news";
  clock_.AdvanceBy(absl::Seconds(30));
  EXPECT_TRUE(probes_.empty());
  clock_.AdvanceBy(absl::Seconds(31));
  EXPECT_EQ(probes_.size(), 2u);
  // A follower probes nothing.
  Answer("binance_spot", 200);
  Answer("okx", 200);
  leading_ = false;
  clock_.AdvanceBy(absl::Minutes(2));
  EXPECT_TRUE(probes_.empty());
  EXPECT_EQ(monitor_->History()["okx"].size(), 2u);
}

TEST_F(ExchangeMonitorTest, AnExchangeThatStopsAnsweringAlertsOnceAndResolvesWhenItIsBack) {
  AddNode();
  monitor_->Start();
  clock_.AdvanceBy(absl::Seconds(1));
  Answer("binance_spot", 200);
  Answer("okx", 200);
  // One failure is degraded, the second in a row unhealthy: two alerts.
  clock_.AdvanceBy(absl::Seconds(60));
  Answer("okx", absl::UnavailableError("connect failed"));
  Answer("binance_spot", 200);
  EXPECT_EQ(Status("okx"), "degraded");
  clock_.AdvanceBy(absl::Seconds(60));
  Answer("okx", 503);
  Answer("binance_spot", 200);
  EXPECT_EQ(Status("okx"), "unhealthy");
  clock_.AdvanceBy(absl::Seconds(60));
  Answer("okx", 503);  // no change, no alert
  Answer("binance_spot", 200, absl::Seconds(2));
  EXPECT_EQ(Status("binance_spot"), "degraded") << "slow";
  clock_.AdvanceBy(absl::Seconds(60));
  Answer("okx", 200);
  Answer("binance_spot", 200);

  std::vector<std::string> okx;
  for (const nlohmann::json& a : alerts_) {
    ASSERT_EQ(a["version"], "4");
    ASSERT_EQ(a["alerts"].size(), 1u);
    const nlohmann::json& alert = a["alerts"][0];
    EXPECT_EQ(alert["labels"]["cluster"], "test");
    if (alert["labels"]["alertname"] != "MarketPrismExchangeHealth") continue;
    if (alert["labels"]["exchange"] != "okx") continue;
    okx.push_back(absl::StrCat(alert["status"].get<std::string>(), "/",
                               alert["annotations"]["state"].get<std::string>()));
    if (alert["status"] == "firing") {
      EXPECT_EQ(alert["endsAt"], "0001-01-01T00:00:00Z");
      EXPECT_THAT(alert["annotations"]["recommendation"].get<std::string>(), HasSubstr("status page"));
    }
  }
  EXPECT_EQ(okx, (std::vector<std::string>{"firing/degraded", "firing/unhealthy", "resolved/healthy"}));
  // History keeps the newest three; GetHealth's check says what the last one was.
  std::vector<ExchangeProbe> h = monitor_->History()["okx"];
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h[0].status, "down");
  EXPECT_THAT(h[0].error, HasSubstr("HTTP 503"));
  EXPECT_EQ(h[2].status, "up");
  EXPECT_EQ(h[2].server_time_ms, absl::ToUnixMillis(clock_.Now()));
}

TEST_F(ExchangeMonitorTest, TheClustersHealthChangingIsAnAlertWithItsRecommendations) {
  leading_ = true;
  ExchangeMonitorOptions o;
  o.interval = absl::Seconds(10);
  o.cluster = "test";
  HealthReport bad;
  bad.overall = HealthLevel::kUnhealthy;
  bad.checks.push_back({"ip_availability", HealthLevel::kUnhealthy, 0, 0.7, "0 of 1 egress IPs can take work"});
  bad.recommendations.push_back("Restore nodes.");
  HealthReport now = bad;
  monitor_ = std::make_unique<ExchangeMonitor>(
      o, clock_, *scheduler_, [](const v1::ExecuteRequest&, const v1::RecordAs&, absl::Time, Router::Done) {},
      [] { return true; }, [&now] { return now; },
      [this](std::string payload) { alerts_.push_back(nlohmann::json::parse(payload)); });
  monitor_->Start();
  clock_.AdvanceBy(absl::Seconds(1));
  ASSERT_EQ(alerts_.size(), 1u) << "unhealthy at the first look";
  EXPECT_EQ(alerts_[0]["alerts"][0]["labels"]["alertname"], "MarketPrismClusterHealth");
  EXPECT_EQ(alerts_[0]["alerts"][0]["labels"]["severity"], "critical");
  EXPECT_THAT(alerts_[0]["alerts"][0]["annotations"]["summary"].get<std::string>(), HasSubstr("0 of 1 egress IPs"));
  EXPECT_EQ(alerts_[0]["alerts"][0]["annotations"]["recommendation"], "Restore nodes.");
  clock_.AdvanceBy(absl::Seconds(10));
  EXPECT_EQ(alerts_.size(), 1u);
  now = HealthReport{};
  clock_.AdvanceBy(absl::Seconds(10));
  ASSERT_EQ(alerts_.size(), 2u);
  EXPECT_EQ(alerts_[1]["status"], "resolved");
}

}  // namespace
}  // namespace marketprism::coordinator
