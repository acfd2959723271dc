// File: coordinator/health.h
//
// Cluster health against thresholds (all configurable; defaults from the
// product brief): error rate 5 %, exchange response time 3 s, budget usage
// 85 %, egress-IP availability 70 %. Pure functions of a scheduler snapshot.
#pragma once

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "coordinator/scheduler.h"

namespace marketprism::coordinator {

struct HealthThresholds {
  double error_rate = 0.05;
  absl::Duration response_time = absl::Seconds(3);
  double budget_usage = 0.85;
  double ip_availability = 0.70;
  int64_t min_samples = 20;  // fewer recent outcomes than this: error rate is not judged
};

// Ordered: the worse level compares greater.
enum class HealthLevel { kHealthy, kDegraded, kUnhealthy };
absl::string_view HealthLevelName(HealthLevel l);  // "healthy", "degraded", "unhealthy"

struct HealthCheckResult {
  std::string name;    // "error_rate", "response_time", "budget_usage", "ip_availability"
  HealthLevel status = HealthLevel::kHealthy;
  double value = 0;
  double threshold = 0;
  std::string message;
};

struct HealthReport {
  HealthLevel overall = HealthLevel::kHealthy;
  std::vector<HealthCheckResult> checks;
  std::vector<std::string> recommendations;
};

// IP availability below its threshold (or no IP at all) is unhealthy; any
// other breach is degraded.
HealthReport EvaluateHealth(const SchedulerSnapshot& s, const HealthThresholds& t, absl::Time now);

// The share of the combined budget in use: per exchange, the mean over
// active IPs of their busiest pool's use/capacity; the highest exchange wins.
double BudgetUsage(const SchedulerSnapshot& s);

// Egress IPs that can take work now (connected, not draining, not on hold on
// every exchange they serve) and all known IPs.
std::pair<int, int> IpAvailability(const SchedulerSnapshot& s, absl::Time now);

// Binance's exchangeInfo.rateLimits, matched to the rules' pools by
// (rateLimitType, interval, intervalNum): (pool, limit) pairs.
absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> ParsePublishedLimits(
    const common::ExchangeRules& rules, absl::string_view body);

}  // namespace marketprism::coordinator
