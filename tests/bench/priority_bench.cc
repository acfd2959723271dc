#include "tests/bench/priority_bench.h"

#include <cmath>
#include <cstdio>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/flags.h"
#include "tests/bench/workload.h"
#include "tests/testing/cluster.h"
#include "tests/testing/surprise.h"

namespace marketprism::bench {

namespace {

// Requests the simulator accepted on Binance spot, over every IP.
absl::StatusOr<int64_t> Accepted(testing::Cluster& c) {
  absl::StatusOr<nlohmann::json> stats = c.sim().Stats();
  if (!stats.ok()) return stats.status();
  return (*stats)["exchanges"]["binance_spot"]["totals"].value("accepted", int64_t{0});
}

}  // namespace

int RunPriorityBench(const std::vector<std::string>& args) {
  int64_t nodes = 3, capacity = 600, window_seconds = 5, windows = 8;
  double top_share = 0.5, overload = 2.0;
  common::FlagSet f("mp-bench priority", "the top priority's goodput at twice the budget, lower priorities queued");
  f.Int("nodes", &nodes, "nodes (egress IPs)");
  f.Int("capacity", &capacity, "Binance REQUEST_WEIGHT per IP per window");
  f.Int("window-seconds", &window_seconds, "the REQUEST_WEIGHT window (shortened from 60 s)");
  f.Int("windows", &windows, "windows to offer load for");
  f.Double("overload", &overload, "demand as a multiple of the combined budget");
  f.Double("top-share", &top_share, "the top priority's demand as a share of the budget");
  auto rest = f.Parse(args);
  if (f.help_requested()) return std::fputs(f.Help().c_str(), stdout) < 0;
  if (!rest.ok()) return common::ExitCodeFor("mp-bench priority", rest.status());
  testing::SurpriseOptions o;
  o.nodes = static_cast<int>(nodes);
  o.capacity = capacity;
  o.window_seconds = window_seconds;
  o.rules_file = MP_RULES_FILE;
  auto cluster = testing::StartShortWindowCluster(o);
  if (!cluster.ok()) return common::ExitCodeFor("mp-bench priority", cluster.status());
  testing::Cluster& c = **cluster;
  double budget = static_cast<double>(capacity * nodes) / static_cast<double>(window_seconds);  // weight/s
  // A request waits at most a window for budget: its deadline is a window
  // and a second, so the top priority is never refused for want of time.
  absl::Duration deadline = absl::Seconds(window_seconds + 1);
  ClusterDriver top(c.coordinator_address(), Demand{top_share * budget, 0, 0}, deadline, 11, /*priority=*/1);
  ClusterDriver low(c.coordinator_address(), Demand{(overload - top_share) * budget, 0, 0}, deadline, 12,
                    /*priority=*/0);
  auto before = Accepted(c);
  if (!before.ok()) return common::ExitCodeFor("mp-bench priority", before.status());
  absl::Time until = absl::Now() + absl::Seconds(window_seconds * windows);
  std::thread t1([&] { top.Run(until); }), t2([&] { low.Run(until); });
  t1.join();
  t2.join();
  auto after = Accepted(c);
  if (!after.ok()) return common::ExitCodeFor("mp-bench priority", after.status());
  int64_t answered = top.stats().ok.load() + low.stats().ok.load();
  nlohmann::ordered_json j = {
      {"bench", "priority_goodput"}, {"nodes", nodes}, {"capacity", capacity}, {"window_s", window_seconds},
      {"windows", windows}, {"demand_x_budget", overload}, {"top_share_of_budget", top_share},
      {"top_sent", top.stats().sent.load()}, {"top_answered", top.stats().ok.load()},
      {"top_goodput_pct", Pct(top.stats().ok.load(), top.stats().sent.load())},
      {"target_top_goodput_pct", 99}, {"met", Pct(top.stats().ok.load(), top.stats().sent.load()) >= 99},
      {"low_sent", low.stats().sent.load()}, {"low_answered", low.stats().ok.load()},
      {"low_without_budget", low.stats().exhausted.load()},
      {"other_errors", top.stats().other_errors.load() + low.stats().other_errors.load()},
      // Served by the exchange, answered to nobody: a request sent after (or
      // too close to) its deadline. The nodes' clock probes are in it too.
      {"served_without_an_answer", *after - *before - answered}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace marketprism::bench
