// mp-bench: cluster-level benchmarks; each prints one JSON object per result.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/process.h"
#include "common/log.h"
#include "tests/bench/collect_bench.h"
#include "tests/bench/collect_cluster_bench.h"
#include "tests/bench/drift_bench.h"
#include "tests/bench/failover_bench.h"
#include "tests/bench/latency_bench.h"
#include "tests/bench/priority_bench.h"
#include "tests/bench/rebalance_bench.h"
#include "tests/bench/routing_bench.h"
#include "tests/bench/sim_bench.h"
#include "tests/bench/sinks_bench.h"
#include "tests/bench/surprise_bench.h"
#include "tests/bench/throughput_bench.h"

int main(int argc, char** argv) {
  marketprism::common::ConfigureProcess();
  marketprism::common::SetLogLevelFrom(std::getenv("MP_LOG_LEVEL"));
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string cmd = args.empty() ? "" : args.front();
  if (!args.empty()) args.erase(args.begin());
  if (cmd == "sim") return marketprism::bench::RunSimBench(args);
  if (cmd == "drive") return marketprism::bench::RunDrive(args);
  if (cmd == "routing") return marketprism::bench::RunRoutingBench(args);
  if (cmd == "latency") return marketprism::bench::RunLatencyBench(args);
  if (cmd == "admission") return marketprism::bench::RunAdmissionBench(args);
  if (cmd == "memory") return marketprism::bench::RunMemoryBench(args);
  if (cmd == "failover") return marketprism::bench::RunFailoverBench(args);
  if (cmd == "surprise") return marketprism::bench::RunSurpriseBench(args);
  if (cmd == "throughput") return marketprism::bench::RunThroughputBench(args);
  if (cmd == "priority") return marketprism::bench::RunPriorityBench(args);
  if (cmd == "collect") return marketprism::bench::RunCollectBench(args);
  if (cmd == "collect-failover") return marketprism::bench::RunCollectFailoverBench(args);
  if (cmd == "collect-latency") return marketprism::bench::RunCollectLatencyBench(args);
  if (cmd == "collect-scale") return marketprism::bench::RunCollectScaleBench(args);
  if (cmd == "sinks") return marketprism::bench::RunSinksBench(args);
  if (cmd == "drift") return marketprism::bench::RunDriftBench(args);
  if (cmd == "rebalance") return marketprism::bench::RunRebalanceBench(args);
  if (cmd == "gossip") {
    // The gossip scenarios drive processes in network namespaces with
    // nftables, beside Debian's serf: a harness script does that.
    std::string exe(4096, '\0');
    ssize_t n = readlink("/proc/self/exe", exe.data(), exe.size());
    std::string bin_dir = n > 0 ? exe.substr(0, exe.rfind('/', static_cast<size_t>(n))) : ".";
    std::vector<std::string> argv_s = {"python3", MP_SOURCE_DIR "/tests/bench/gossip_bench.py", bin_dir};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> cargv;
    for (auto& a : argv_s) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    execvp("python3", cargv.data());
    std::perror("mp-bench gossip: python3");
    return 1;
  }
  std::fprintf(stderr,
               "usage: mp-bench COMMAND [flags]\n"
               "  sim       REST requests/s the exchange simulator serves (docs/benchmarks.md)\n"
               "  routing   utilisation of the combined budget, beside per-node token buckets\n"
               "  drive     offer a workload to a running cluster with a live per-IP view (the demo)\n"
               "  latency   Execute's overhead over a direct libcurl request (p50, p99)\n"
               "  admission percentiles of a node's admission decision\n"
               "  memory    resident size of an idle node and a coordinator with 100 nodes\n"
               "  gossip    our gossip beside Debian's serf: join, crash, loss, freezes, traffic, partition\n"
               "  failover  kill -9 the leader coordinator under a saturating load\n"
               "  surprise  a limit lowered without notice, a foreign client: refusals and 418s, bound on and off\n"
               "  throughput Execute calls per second one coordinator sustains, and the CPU per call by process\n"
               "  priority  the top priority's goodput at twice the budget, and requests served after their deadline\n"
               "  collect   feed handling on one core: trade messages/s and depth diffs/s through the collector,\n"
               "            simdjson (ours) beside nlohmann-json\n"
               "  collect-failover  a node with a book of redundancy 1 dies, ten times: gap and resume (p50, p99),\n"
               "            records the redundancy-2 units lost\n"
               "  collect-latency   latency added from the simulator's send to a Subscribe client (p50, p99)\n"
               "  collect-scale     books and trades of 500-2,000 symbols on 1, 3 and 8 nodes: sync, rejections, CPU, RSS\n"
               "  sinks     rows/s into ClickHouse, msgs/s into JetStream, repeats collapsing, and the lag to a\n"
               "            readable record, against Debian's servers on loopback\n"
               "  drift     the ledger's own count of each IP's window beside the exchange's count\n"
               "  rebalance a demand step on one IP: how fast its share of the load moves to the others\n"
               "Run `mp-bench COMMAND --help` for the flags of each.\n");
  return cmd.empty() || cmd == "--help" ? 0 : 2;
}
