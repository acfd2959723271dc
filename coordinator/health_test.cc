#include "coordinator/health.h"

#include <gtest/gtest.h>

#include "coordinator/coordinator_options.h"

namespace marketprism::coordinator {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1'795'046'400);

NodeSnapshot Node(const std::string& ip, NodeState state, int64_t used, int64_t cap) {
  NodeSnapshot n;
  n.node_id = "node-" + ip;
  n.egress_ip = ip;
  n.state = state;
  common::BudgetBook::PoolView p;
  p.name = "REQUEST_WEIGHT";
  p.used = used;
  p.capacity = cap;
  n.pools.push_back({"binance_spot", {p}});
  n.lanes.push_back({"binance_spot", absl::InfinitePast(), "", absl::ZeroDuration()});
  return n;
}

const HealthCheckResult& Check(const HealthReport& r, const std::string& name) {
  for (const auto& c : r.checks) {
    if (c.name == name) return c;
  }
  static HealthCheckResult none;
  return none;
}

TEST(HealthLevelTest, NamesAtTheEdge) {
  EXPECT_EQ(HealthLevelName(HealthLevel::kHealthy), "healthy");
  EXPECT_EQ(HealthLevelName(HealthLevel::kDegraded), "degraded");
  EXPECT_EQ(HealthLevelName(HealthLevel::kUnhealthy), "unhealthy");
  EXPECT_EQ(NodeStateName(NodeState::kDraining), "draining");
  EXPECT_EQ(NodeStateName(NodeState::kDisconnected), "disconnected");
}

TEST(HealthTest, HealthyCluster) {
  SchedulerSnapshot s;
  s.nodes = {Node("1", NodeState::kActive, 10, 100), Node("2", NodeState::kActive, 20, 100)};
  s.recent_outcomes = 100;
  s.success_rate = 0.99;
  HealthReport r = EvaluateHealth(s, HealthThresholds{}, kNow);
  EXPECT_EQ(r.overall, HealthLevel::kHealthy);
  EXPECT_TRUE(r.recommendations.empty());
  EXPECT_DOUBLE_EQ(Check(r, "budget_usage").value, 0.15);
}

TEST(HealthTest, EachThresholdDegrades) {
  SchedulerSnapshot s;
  s.nodes = {Node("1", NodeState::kActive, 90, 100), Node("2", NodeState::kActive, 90, 100)};
  s.recent_outcomes = 100;
  s.success_rate = 0.90;
  s.p95_exchange_time = absl::Seconds(4);
  HealthReport r = EvaluateHealth(s, HealthThresholds{}, kNow);
  EXPECT_EQ(r.overall, HealthLevel::kDegraded);
  EXPECT_EQ(Check(r, "error_rate").status, HealthLevel::kDegraded);
  EXPECT_EQ(Check(r, "response_time").status, HealthLevel::kDegraded);
  EXPECT_EQ(Check(r, "budget_usage").status, HealthLevel::kDegraded);
  EXPECT_EQ(Check(r, "ip_availability").status, HealthLevel::kHealthy);
  EXPECT_EQ(r.recommendations.size(), 3u);
  HealthThresholds lax;
  lax.error_rate = 0.2;
  lax.response_time = absl::Seconds(5);
  lax.budget_usage = 0.95;
  EXPECT_EQ(EvaluateHealth(s, lax, kNow).overall, HealthLevel::kHealthy);
}

TEST(HealthTest, FewUsableIpsIsUnhealthy) {
  SchedulerSnapshot s;
  NodeSnapshot banned = Node("3", NodeState::kActive, 0, 100);
  banned.lanes[0].parked_until = kNow + absl::Minutes(2);
  s.nodes = {Node("1", NodeState::kActive, 0, 100), Node("2", NodeState::kDisconnected, 0, 100), banned};
  HealthReport r = EvaluateHealth(s, HealthThresholds{}, kNow);
  EXPECT_EQ(r.overall, HealthLevel::kUnhealthy);
  EXPECT_NEAR(Check(r, "ip_availability").value, 1.0 / 3, 1e-9);
  EXPECT_EQ(EvaluateHealth(SchedulerSnapshot{}, HealthThresholds{}, kNow).overall, HealthLevel::kUnhealthy);
}

TEST(HealthTest, TooFewSamplesAreNotJudged) {
  SchedulerSnapshot s;
  s.nodes = {Node("1", NodeState::kActive, 0, 100)};
  s.recent_outcomes = 5;
  s.success_rate = 0.0;
  EXPECT_EQ(Check(EvaluateHealth(s, HealthThresholds{}, kNow), "error_rate").status, HealthLevel::kHealthy);
}

TEST(PublishedLimitsTest, MatchesPoolsByTypeAndInterval) {
  auto rules = common::RulesBook::LoadDefault();
  ASSERT_TRUE(rules.ok());
  auto limits = ParsePublishedLimits(*rules->Find("binance_spot"), R"({"rateLimits":[
      {"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":1200},
      {"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":50},
      {"rateLimitType":"RAW_REQUESTS","interval":"MINUTE","intervalNum":5,"limit":61000},
      {"rateLimitType":"ORDERS","interval":"HOUR","intervalNum":1,"limit":9}]})");
  ASSERT_TRUE(limits.ok()) << limits.status();
  std::map<std::string, int64_t> m(limits->begin(), limits->end());
  EXPECT_EQ(m.at("REQUEST_WEIGHT"), 1200);
  EXPECT_EQ(m.at("ORDERS_10S"), 50);
  EXPECT_EQ(m.at("RAW_REQUESTS"), 61000);
  EXPECT_EQ(m.size(), 3u) << "an interval we have no pool for is ignored";
  EXPECT_FALSE(ParsePublishedLimits(*rules->Find("binance_spot"), "{}").ok());
  EXPECT_FALSE(ParsePublishedLimits(*rules->Find("binance_spot"), R"({"rateLimits":[{"limit":"x"}]})").ok());
}

TEST(CoordinatorOptionsTest, BadSettingsAreNamed) {
  std::string help;
  auto parse = [&](std::vector<std::string> a) {
    return ParseCoordinatorOptions(a, &help, [](const char*) -> const char* { return nullptr; }).status();
  };
  EXPECT_TRUE(parse({"--listen", "127.0.0.1:0"}).ok());
  EXPECT_FALSE(parse({"--listen", "nowhere"}).ok());
  EXPECT_NE(parse({"--health-error-rate", "2"}).message().find("--health-error-rate"), std::string::npos);
  EXPECT_NE(parse({"--max-queue", "0"}).message().find("--max-queue"), std::string::npos);
  EXPECT_NE(parse({"--limit", "binance_spot.NOPE=1"}).message().find("NOPE"), std::string::npos);
  EXPECT_NE(parse({"--exchange-url", "binance_spot=ws://x"}).message().find("http://"), std::string::npos);
  EXPECT_NE(parse({"--default-deadline", "0s"}).message().find("--default-deadline"), std::string::npos);
}

}  // namespace
}  // namespace marketprism::coordinator
