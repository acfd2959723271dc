#pragma once
#include <string>
#include <vector>

namespace marketprism::bench {
// `mp-bench rebalance [flags]`: a demand step on one IP (another program
// spends most of what is left of its window) under a steady load through the
// cluster: how long until that IP's share of the load has moved to the
// others, what calls waited meanwhile, and whether anything was refused.
int RunRebalanceBench(const std::vector<std::string>& args);
}  // namespace marketprism::bench
