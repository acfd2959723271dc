#include "coordinator/health.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include <nlohmann/json.hpp>

namespace marketprism::coordinator {

absl::string_view HealthLevelName(HealthLevel l) {
  switch (l) {
    case HealthLevel::kHealthy:
      return "healthy";
    case HealthLevel::kDegraded:
      return "degraded";
    case HealthLevel::kUnhealthy:
      return "unhealthy";
  }
  return "unknown";
}

double BudgetUsage(const SchedulerSnapshot& s) {
  std::map<std::string, std::pair<double, int>> per_exchange;  // sum of busiest shares, IPs
  for (const NodeSnapshot& n : s.nodes) {
    if (n.state != NodeState::kActive) continue;
    for (const auto& [exchange, pools] : n.pools) {
      double busiest = 0;
      for (const auto& p : pools) {
        if (p.capacity > 0) busiest = std::max(busiest, static_cast<double>(p.used) / static_cast<double>(p.capacity));
      }
      auto& e = per_exchange[exchange];
      e.first += std::min(busiest, 1.0);
      e.second += 1;
    }
  }
  double worst = 0;
  for (const auto& [exchange, e] : per_exchange) {
    if (e.second > 0) worst = std::max(worst, e.first / e.second);
  }
  return worst;
}

std::pair<int, int> IpAvailability(const SchedulerSnapshot& s, absl::Time now) {
  std::set<std::string> all, available;
  for (const NodeSnapshot& n : s.nodes) {
    all.insert(n.egress_ip);
    if (n.state != NodeState::kActive) continue;
    bool any_lane_open = n.lanes.empty();
    for (const LaneStatus& l : n.lanes) any_lane_open = any_lane_open || l.parked_until <= now;
    if (any_lane_open) available.insert(n.egress_ip);
  }
  return {static_cast<int>(available.size()), static_cast<int>(all.size())};
}

HealthReport EvaluateHealth(const SchedulerSnapshot& s, const HealthThresholds& t, absl::Time now) {
  HealthReport r;
  auto add = [&](HealthCheckResult c, const std::string& advice) {
    if (c.status != HealthLevel::kHealthy && !advice.empty()) r.recommendations.push_back(advice);
    r.checks.push_back(std::move(c));
  };

  double error_rate = 1.0 - s.success_rate;
  bool judged = s.recent_outcomes >= t.min_samples;
  add({"error_rate", judged && error_rate > t.error_rate ? HealthLevel::kDegraded : HealthLevel::kHealthy, error_rate,
       t.error_rate,
       judged ? absl::StrFormat("%.1f%% of the last %d requests failed or were refused by the exchange",
                                error_rate * 100, s.recent_outcomes)
              : absl::StrCat("only ", s.recent_outcomes, " recent requests: not judged yet")},
      "Many requests fail: check the exchanges' status pages, the nodes' network and proxies, "
      "and whether another client shares these IPs.");

  double rt = absl::ToDoubleSeconds(s.p95_exchange_time);
  add({"response_time", rt > absl::ToDoubleSeconds(t.response_time) ? HealthLevel::kDegraded : HealthLevel::kHealthy, rt,
       absl::ToDoubleSeconds(t.response_time),
       absl::StrFormat("p95 exchange round trip %.3f s", rt)},
      "Exchange round trips are slow: check the route to the exchange (proxy, region) or move "
      "nodes closer to it.");

  double usage = BudgetUsage(s);
  add({"budget_usage", usage > t.budget_usage ? HealthLevel::kDegraded : HealthLevel::kHealthy, usage, t.budget_usage,
       absl::StrFormat("%.1f%% of the combined budget in use", usage * 100)},
      "The cluster is near its combined budget: add egress IPs or lower the request rate to keep "
      "headroom for bursts.");

  auto [available, total] = IpAvailability(s, now);
  double share = total == 0 ? 0.0 : static_cast<double>(available) / total;
  add({"ip_availability", total == 0 || share < t.ip_availability ? HealthLevel::kUnhealthy : HealthLevel::kHealthy, share,
       t.ip_availability,
       absl::StrCat(available, " of ", total, " egress IPs can take work")},
      total == 0 ? "No node has registered: start mp-node processes pointing at this coordinator."
                 : "Too few egress IPs can take work (disconnected, drained or banned): restore "
                   "nodes, undrain them, or wait out the bans.");

  // Sinks, when nodes have any: one that cannot write is degraded (its
  // records wait in the spool); one whose spool is full loses records to
  // gap records, which is unhealthy.
  int sinks = 0, failing = 0, full = 0;
  std::string worst;
  for (const NodeSnapshot& n : s.nodes) {
    if (n.state == NodeState::kDisconnected) continue;
    for (const SinkView& v : n.sinks) {
      ++sinks;
      if (v.healthy && v.spool_records == 0) continue;
      ++failing;
      bool dropping = !v.healthy && v.dropped > 0;
      full += dropping ? 1 : 0;
      if (worst.empty() || dropping) {
        worst = absl::StrCat(n.node_id, " ", v.name, ": ", v.healthy ? "catching up" : v.last_error, ", ",
                             v.spool_records, " records spooled (oldest ", absl::FormatDuration(v.spool_age), ")",
                             v.dropped > 0 ? absl::StrCat(", ", v.dropped, " dropped") : "");
      }
    }
  }
  if (sinks > 0) {
    add({"sinks", full > 0 ? HealthLevel::kUnhealthy : failing > 0 ? HealthLevel::kDegraded : HealthLevel::kHealthy,
         static_cast<double>(failing), 0,
         failing == 0 ? absl::StrCat(sinks, " sinks writing") : absl::StrCat(failing, " of ", sinks, " sinks behind; ", worst)},
        full > 0 ? "A sink's spool is full and records are being dropped (each loss is a gap record): bring the "
                   "sink back or give the spool more room (mp-node --spool-max-mb)."
                 : "A sink is down or slow: its records wait in the node's spool; check the NATS or ClickHouse "
                   "server the node names.");
  }

  r.overall = HealthLevel::kHealthy;
  for (const HealthCheckResult& c : r.checks) r.overall = std::max(r.overall, c.status);
  return r;
}

absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> ParsePublishedLimits(
    const common::ExchangeRules& rules, absl::string_view body) {
  nlohmann::json j = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("rateLimits") || !j["rateLimits"].is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(rules.name(), " exchangeInfo: no rateLimits array"));
  }
  std::vector<std::pair<std::string, int64_t>> out;
  for (const auto& l : j["rateLimits"]) {
    if (!l.is_object() || !l.value("rateLimitType", nlohmann::json()).is_string() ||
        !l.value("interval", nlohmann::json()).is_string() ||
        !l.value("intervalNum", nlohmann::json()).is_number_integer() ||
        !l.value("limit", nlohmann::json()).is_number_integer()) {
      return absl::InvalidArgumentError(absl::StrCat(rules.name(), " exchangeInfo: malformed rateLimits entry ", l.dump()));
    }
    for (const common::PoolRule& p : rules.pools()) {
      if (p.published_as && p.published_as->rate_limit_type == l["rateLimitType"] &&
          p.published_as->interval == l["interval"] &&
          p.published_as->interval_num == l["intervalNum"].get<int>()) {
        int64_t limit = l["limit"].get<int64_t>();
        if (limit >= 1) out.emplace_back(p.name, limit);
      }
    }
  }
  return out;
}

}  // namespace marketprism::coordinator
