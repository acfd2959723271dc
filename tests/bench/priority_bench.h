#pragma once
#include <string>
#include <vector>

namespace marketprism::bench {
// `mp-bench priority [flags]`: the top priority's goodput with the cluster
// offered twice its budget (the rest at a lower priority), and requests the
// exchange served that no client got an answer to (sent too late).
int RunPriorityBench(const std::vector<std::string>& args);
}  // namespace marketprism::bench
