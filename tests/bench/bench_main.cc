// mp-bench: cluster-level benchmarks; each prints one JSON object per result.
#include <cstdio>
#include <string>
#include <vector>

#include "tests/bench/latency_bench.h"
#include "tests/bench/routing_bench.h"
#include "tests/bench/sim_bench.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string cmd = args.empty() ? "" : args.front();
  if (!args.empty()) args.erase(args.begin());
  if (cmd == "sim") return marketprism::bench::RunSimBench(args);
  if (cmd == "drive") return marketprism::bench::RunDrive(args);
  if (cmd == "routing") return marketprism::bench::RunRoutingBench(args);
  if (cmd == "latency") return marketprism::bench::RunLatencyBench(args);
  if (cmd == "admission") return marketprism::bench::RunAdmissionBench(args);
  if (cmd == "memory") return marketprism::bench::RunMemoryBench(args);
  std::fprintf(stderr,
               "usage: mp-bench COMMAND [flags]\n"
               "  sim       REST requests/s the exchange simulator serves (docs/benchmarks.md)\n"
               "  routing   utilisation of the combined budget, beside per-node token buckets\n"
               "  drive     offer a workload to a running cluster with a live per-IP view (the demo)\n"
               "  latency   Execute's overhead over a direct libcurl request (p50, p99)\n"
               "  admission percentiles of a node's admission decision\n"
               "  memory    resident size of an idle node and a coordinator with 100 nodes\n"
               "Run `mp-bench COMMAND --help` for the flags of each.\n");
  return cmd.empty() || cmd == "--help" ? 0 : 2;
}
