#include "tests/bench/throughput_bench.h"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/flags.h"
#include "tests/testing/cluster.h"

namespace marketprism::bench {

namespace {

// CPU seconds (user + system) a process has used: /proc/PID/stat fields 14, 15.
double CpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::vector<std::string> fields = absl::StrSplit(stat.substr(close + 2), ' ');
  int64_t utime = 0, stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) || !absl::SimpleAtoi(fields[12], &stime)) return 0;
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace

int RunThroughputBench(const std::vector<std::string>& args) {
  int64_t nodes = 3;
  std::string client_counts = "16,64,128";
  absl::Duration duration = absl::Seconds(10);
  common::FlagSet f("mp-bench throughput", "Execute calls per second one coordinator sustains, and where the CPU goes");
  f.Int("nodes", &nodes, "nodes (egress IPs)");
  f.String("clients", &client_counts, "comma-separated numbers of client threads (synchronous Execute calls)");
  f.Duration("duration", &duration, "how long each run offers load");
  auto rest = f.Parse(args);
  if (f.help_requested()) return std::fputs(f.Help().c_str(), stdout) < 0;
  if (!rest.ok()) return common::ExitCodeFor("mp-bench throughput", rest.status());
  testing::ClusterOptions o;
  o.nodes = static_cast<int>(nodes);
  o.exchanges = {"binance_spot"};
  o.node_flags = {"--exchange", "binance_spot", "--workers", "256"};
  // No budget limits the rate: the processes do.
  o.sim_flags = {"--limit", "binance_spot.REQUEST_WEIGHT=2000000000", "--limit", "binance_spot.RAW_REQUESTS=2000000000"};
  o.coordinator_flags = {"--limit", "binance_spot.REQUEST_WEIGHT=2000000000", "--limit",
                         "binance_spot.RAW_REQUESTS=2000000000"};
  auto cluster = testing::Cluster::Start(o);
  if (!cluster.ok()) return common::ExitCodeFor("mp-bench throughput", cluster.status());
  testing::Cluster& c = **cluster;
  for (absl::string_view cv : absl::StrSplit(client_counts, ',')) {
    int clients = 0;
    if (!absl::SimpleAtoi(cv, &clients) || clients < 1 || clients > 1024) {
      return common::ExitCodeFor("mp-bench throughput", absl::InvalidArgumentError("--clients: 1..1024 each"));
    }
    std::map<std::string, pid_t> pids = {{"coordinator", c.coordinator().pid()}, {"simulator", c.sim().process().pid()},
                                         {"clients", getpid()}};
    for (int i = 0; i < nodes; ++i) pids[absl::StrCat("node", i)] = c.node(i).pid();
    std::map<std::string, double> cpu_before;
    for (const auto& [name, pid] : pids) cpu_before[name] = CpuSeconds(pid);
    std::atomic<int64_t> ok{0}, failed{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    absl::Time start = absl::Now();
    for (int t = 0; t < clients; ++t) {
      threads.emplace_back([&] {
        v1::ExecuteRequest req = testing::MakeRequest("binance_spot", "/api/v3/ping");
        while (!stop.load(std::memory_order_relaxed)) {
          v1::ExecuteResponse resp;
          (c.Execute(req, &resp, absl::Seconds(5)).ok() ? ok : failed).fetch_add(1, std::memory_order_relaxed);
        }
      });
    }
    absl::SleepFor(duration);  // the measurement period
    stop.store(true);
    for (auto& t : threads) t.join();
    double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    nlohmann::ordered_json cpu = nlohmann::ordered_json::object();
    double nodes_cpu = 0;
    for (const auto& [name, pid] : pids) {
      double used = CpuSeconds(pid) - cpu_before[name];
      if (name.rfind("node", 0) == 0) {
        nodes_cpu += used;
        continue;
      }
      cpu[name] = std::round(used * 1e6 / std::max<double>(1, static_cast<double>(ok.load()))) / 1e3;
    }
    cpu["nodes"] = std::round(nodes_cpu * 1e6 / std::max<double>(1, static_cast<double>(ok.load()))) / 1e3;
    nlohmann::ordered_json j = {{"bench", "execute_throughput"}, {"nodes", nodes}, {"clients", clients},
                                {"seconds", std::round(seconds * 10) / 10},
                                {"calls_per_second", std::round(static_cast<double>(ok.load()) / seconds)},
                                {"failed", failed.load()}, {"cpu_ms_per_call", cpu}};
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace marketprism::bench
