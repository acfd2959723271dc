#include "tests/bench/drift_bench.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/time/clock.h"
#include "common/flags.h"
#include "tests/bench/workload.h"
#include "tests/testing/cluster.h"
#include "tests/testing/surprise.h"

namespace marketprism::bench {

namespace {

// The ledger's tally of one finished window of one IP.
struct Tally {
  int64_t own = 0;
  int64_t observed = -1;
};

using Key = std::pair<std::string, int64_t>;  // (egress IP, window start ms)

// Reads the coordinator's view of each IP's previous REQUEST_WEIGHT window.
void ReadTallies(testing::Cluster& c, std::map<Key, Tally>* out) {
  grpc::ClientContext ctx;
  v1::GetStatusResponse s;
  if (!c.stub().GetStatus(&ctx, {}, &s).ok()) return;
  for (const v1::NodeStatus& n : s.nodes()) {
    for (const v1::PoolUsage& p : n.pools()) {
      if (p.exchange() != "binance_spot" || p.pool() != "REQUEST_WEIGHT" || p.previous_window_start_ms() == 0) continue;
      (*out)[{n.egress_ip(), p.previous_window_start_ms()}] = Tally{p.previous_window_own(), p.previous_window_observed()};
    }
  }
}

}  // namespace

int RunDriftBench(const std::vector<std::string>& args) {
  int64_t nodes = 3, capacity = 600, window_seconds = 5, windows = 12;
  double demand = 1.5;
  int64_t max_in_flight = -1;
  common::FlagSet f("mp-bench drift",
                    "the coordinator ledger's own count of each IP's window beside the exchange's count");
  f.Int("nodes", &nodes, "nodes (egress IPs)");
  f.Int("capacity", &capacity, "Binance REQUEST_WEIGHT per IP per window");
  f.Int("window-seconds", &window_seconds, "the REQUEST_WEIGHT window (60 is the exchange's own)");
  f.Int("windows", &windows, "windows to measure");
  f.Double("demand", &demand, "demand as a multiple of the combined budget");
  f.Int("max-in-flight", &max_in_flight, "the members' --max-in-flight (0: no exposure bound; -1: their default)");
  auto rest = f.Parse(args);
  if (f.help_requested()) return std::fputs(f.Help().c_str(), stdout) < 0;
  if (!rest.ok()) return common::ExitCodeFor("mp-bench drift", rest.status());
  testing::SurpriseOptions o;
  o.nodes = static_cast<int>(nodes);
  o.capacity = capacity;
  o.window_seconds = window_seconds;
  o.rules_file = MP_RULES_FILE;
  if (max_in_flight >= 0) o.cluster_flags = {"--max-in-flight", std::to_string(max_in_flight)};
  auto cluster = testing::StartShortWindowCluster(o);
  if (!cluster.ok()) return common::ExitCodeFor("mp-bench drift", cluster.status());
  testing::Cluster& c = **cluster;
  double budget = static_cast<double>(capacity * nodes) / static_cast<double>(window_seconds);
  ClusterDriver load(c.coordinator_address(), Demand{demand * budget, 0, 0}, absl::Seconds(3), 21);
  // Measure whole windows only: from the next edge.
  int64_t len_ms = window_seconds * 1000;
  int64_t first_ms = (absl::ToUnixMillis(absl::Now()) / len_ms + 1) * len_ms;
  int64_t end_ms = first_ms + windows * len_ms;
  std::map<Key, Tally> tallies;
  std::atomic<bool> done{false};
  std::thread poll([&] {
    while (!done.load()) {
      ReadTallies(c, &tallies);
      absl::SleepFor(absl::Milliseconds(200));
    }
  });
  load.Run(absl::FromUnixMillis(end_ms + 100));
  // The last window's tally shows once the next one has begun.
  absl::SleepFor(absl::Milliseconds(500));
  done.store(true);
  poll.join();
  ReadTallies(c, &tallies);
  auto stats = c.sim().Stats();
  if (!stats.ok()) return common::ExitCodeFor("mp-bench drift", stats.status());
  int64_t r429 = 0, r418 = 0;
  for (auto& [ip, e] : (*stats)["exchanges"]["binance_spot"]["ips"].items()) {
    r429 += e["rejections"].value("429", 0);
    r418 += e["rejections"].value("418", 0);
  }
  int64_t compared = 0, own_sum = 0, exchange_sum = 0, header_short = 0;
  double max_abs = 0, sum_abs = 0, max_over = 0, max_under = 0;
  for (int i = 0; i < nodes; ++i) {
    std::string ip = c.egress_ip(i);
    const nlohmann::json& pool = (*stats)["exchanges"]["binance_spot"]["ips"][ip]["pools"]["REQUEST_WEIGHT"];
    if (pool.is_null()) continue;
    for (const nlohmann::json& w : pool["windows"]) {
      int64_t start = w["start_ms"], used = w["used"];
      if (start < first_ms || start + len_ms > end_ms || used == 0) continue;
      auto it = tallies.find({ip, start});
      if (it == tallies.end()) continue;
      double drift = 100.0 * static_cast<double>(it->second.own - used) / static_cast<double>(used);
      max_abs = std::max(max_abs, std::abs(drift));
      max_over = std::max(max_over, drift);
      max_under = std::min(max_under, drift);
      sum_abs += std::abs(drift);
      own_sum += it->second.own;
      exchange_sum += used;
      if (it->second.observed < used) ++header_short;
      ++compared;
    }
  }
  nlohmann::ordered_json j = {
      {"bench", "ledger_drift"}, {"nodes", nodes}, {"capacity", capacity}, {"window_s", window_seconds},
      {"demand_x_budget", demand}, {"windows_compared", compared},
      {"max_abs_drift_pct", Round2(max_abs)},
      {"mean_abs_drift_pct", compared ? Round2(sum_abs / static_cast<double>(compared)) : 0.0},
      {"max_over_pct", Round2(max_over)}, {"max_under_pct", Round2(max_under)},
      {"own_total", own_sum}, {"exchange_total", exchange_sum},
      // Windows whose highest header fell short of the exchange's final
      // count: replies the last header did not cover (e.g. a clock probe).
      {"windows_header_below_exchange", header_short},
      {"target_max_abs_drift_pct", 1.0}, {"met", compared > 0 && max_abs <= 1.0},
      {"rejections_429", r429}, {"rejections_418", r418}, {"max_in_flight", max_in_flight},
      {"calls_answered", load.stats().ok.load()}};
  std::printf("%s\n", j.dump().c_str());
  return compared > 0 ? 0 : 1;
}

}  // namespace marketprism::bench
