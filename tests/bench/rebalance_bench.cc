#include "tests/bench/rebalance_bench.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/flags.h"
#include "tests/bench/workload.h"
#include "tests/testing/cluster.h"
#include "tests/testing/surprise.h"

namespace marketprism::bench {

namespace {

double Ms(absl::Duration d) { return Round2(absl::ToDoubleMilliseconds(d)); }

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))];
}

}  // namespace

int RunRebalanceBench(const std::vector<std::string>& args) {
  int64_t nodes = 3, capacity = 600, window_seconds = 5, foreign_weight = 400;
  double demand = 0.6;
  absl::Duration step_at = absl::Milliseconds(1500);
  common::FlagSet f("mp-bench rebalance",
                    "a demand step on one IP under steady load: how fast its share moves to the other IPs");
  f.Int("nodes", &nodes, "nodes (egress IPs)");
  f.Int("capacity", &capacity, "Binance REQUEST_WEIGHT per IP per window");
  f.Int("window-seconds", &window_seconds, "the REQUEST_WEIGHT window (shortened from 60 s)");
  f.Double("demand", &demand, "the cluster's steady demand as a multiple of the combined budget");
  f.Int("foreign-weight", &foreign_weight, "weight the other program spends on the first IP at the step");
  f.Duration("step-at", &step_at, "when in the window the step comes");
  auto rest = f.Parse(args);
  if (f.help_requested()) return std::fputs(f.Help().c_str(), stdout) < 0;
  if (!rest.ok()) return common::ExitCodeFor("mp-bench rebalance", rest.status());
  if (nodes < 2) return common::ExitCodeFor("mp-bench rebalance", absl::InvalidArgumentError("--nodes: at least 2"));
  testing::SurpriseOptions o;
  o.nodes = static_cast<int>(nodes);
  o.capacity = capacity;
  o.window_seconds = window_seconds;
  o.rules_file = MP_RULES_FILE;
  auto cluster = testing::StartShortWindowCluster(o);
  if (!cluster.ok()) return common::ExitCodeFor("mp-bench rebalance", cluster.status());
  testing::Cluster& c = **cluster;
  std::string victim = c.egress_ip(0);
  double budget = static_cast<double>(capacity * nodes) / static_cast<double>(window_seconds);
  ClusterDriver load(c.coordinator_address(), Demand{demand * budget, 0, 0}, absl::Seconds(3), 31);
  load.RecordAnswers();
  // A whole window of steady load first, then the step in the next one.
  absl::Duration len = absl::Seconds(window_seconds);
  absl::Time window = absl::FromUnixSeconds((absl::ToUnixSeconds(absl::Now()) / window_seconds + 2) * window_seconds);
  absl::Time window_end = window + len;
  std::thread t([&] { load.Run(window_end + absl::Milliseconds(200)); });
  absl::SleepFor(window + step_at - absl::Now());
  // The step: another program on the first IP spends `foreign_weight` as
  // fast as its round trips allow (depth limit 1000: weight 50), stopping at
  // a refusal as a well-behaved client does.
  absl::Time step = absl::Now();
  int64_t foreign_spent = 0, foreign_refused = 0;
  while (foreign_spent < foreign_weight) {
    auto r = c.sim().Get(victim, "/api/v3/depth?symbol=BTCUSDT&limit=1000");
    if (!r.ok()) continue;
    if (r->status != 200) {
      ++foreign_refused;
      break;
    }
    foreign_spent += 50;
  }
  absl::Time step_done = absl::Now();
  t.join();
  auto stats = c.sim().Stats();
  if (!stats.ok()) return common::ExitCodeFor("mp-bench rebalance", stats.status());
  std::vector<Answer> answers = load.TakeAnswers();
  // Within the step's window: before the step, and after it.
  int64_t before = 0, before_victim = 0, after = 0, after_victim = 0, retried_after = 0;
  absl::Time last_victim = step;
  std::vector<double> wait_before, wait_after;
  for (const Answer& a : answers) {
    if (a.issued < window || a.issued >= window_end) continue;
    double wait = absl::ToDoubleMilliseconds(a.answered - a.issued);
    bool on_victim = a.egress_ip == victim;
    if (a.issued < step) {
      ++before;
      before_victim += on_victim;
      wait_before.push_back(wait);
    } else {
      ++after;
      after_victim += on_victim;
      retried_after += a.attempts > 1;
      wait_after.push_back(wait);
      if (on_victim) last_victim = std::max(last_victim, a.answered);
    }
  }
  int64_t r429 = 0, r418 = 0, victim_used = 0;
  for (auto& [ip, e] : (*stats)["exchanges"]["binance_spot"]["ips"].items()) {
    r429 += e["rejections"].value("429", 0);
    r418 += e["rejections"].value("418", 0);
    if (ip != victim) continue;
    for (const auto& w : e["pools"]["REQUEST_WEIGHT"]["windows"]) {
      if (w["start_ms"].get<int64_t>() == absl::ToUnixMillis(window)) victim_used = w["used"];
    }
  }
  double max_wait_after = wait_after.empty() ? 0 : *std::max_element(wait_after.begin(), wait_after.end());
  nlohmann::ordered_json j = {
      {"bench", "rebalance_after_demand_step"}, {"nodes", nodes}, {"capacity", capacity},
      {"window_s", window_seconds}, {"demand_x_budget", demand}, {"foreign_weight", foreign_weight},
      {"step_at_ms", Ms(step_at)}, {"step_took_ms", Ms(step_done - step)},
      {"foreign_refused", foreign_refused},
      {"victim_share_before_pct", Pct(before_victim, before)},
      {"victim_share_after_pct", Pct(after_victim, after)}, {"victim_calls_after", after_victim},
      // The victim's last answered call after the step: from then on its
      // share is the other IPs'.
      {"victim_last_call_after_step_ms", Ms(last_victim - step)},
      {"victim_window_used_pct", Pct(victim_used, capacity)},
      {"calls_before", before}, {"calls_after", after}, {"calls_retried_after", retried_after},
      {"wait_p50_before_ms", Round2(Percentile(wait_before, 0.5))},
      {"wait_p99_before_ms", Round2(Percentile(wait_before, 0.99))},
      {"wait_p50_after_ms", Round2(Percentile(wait_after, 0.5))},
      {"wait_p99_after_ms", Round2(Percentile(wait_after, 0.99))},
      // A call the victim could no longer take waits until another IP
      // takes it: the longest such wait is the rebalance time.
      {"rebalance_ms", Round2(max_wait_after)}, {"target_ms", 250},
      {"met", max_wait_after <= 250 && r418 == 0}, {"rejections_429", r429}, {"rejections_418", r418},
      {"calls_without_budget", load.stats().exhausted.load()}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace marketprism::bench
