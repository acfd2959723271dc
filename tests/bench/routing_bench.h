#pragma once
#include <string>
#include <vector>

namespace marketprism::bench {
// `mp-bench drive [flags]`: the demo's workload and live view.
int RunDrive(const std::vector<std::string>& args);
// `mp-bench routing [flags]`: utilisation, ours beside the baselines.
int RunRoutingBench(const std::vector<std::string>& args);
}  // namespace marketprism::bench
