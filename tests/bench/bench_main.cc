// mp-bench: cluster-level benchmarks; each prints one JSON object per result.
#include <cstdio>
#include <string>
#include <vector>

#include "tests/bench/sim_bench.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string cmd = args.empty() ? "" : args.front();
  if (!args.empty()) args.erase(args.begin());
  if (cmd == "sim") return marketprism::bench::RunSimBench(args);
  std::fprintf(stderr,
               "usage: mp-bench COMMAND [flags]\n"
               "  sim       REST requests/s the exchange simulator serves (docs/benchmarks.md)\n"
               "Run `mp-bench COMMAND --help` for the flags of each.\n");
  return cmd.empty() || cmd == "--help" ? 0 : 2;
}
