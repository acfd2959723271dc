#pragma once
#include <string>
#include <vector>

namespace marketprism::bench {
// `mp-bench throughput [flags]`: the Execute calls per second one coordinator
// sustains with its clients on the same machine, and where the CPU goes
// (per process, per 1,000 calls).
int RunThroughputBench(const std::vector<std::string>& args);
}  // namespace marketprism::bench
