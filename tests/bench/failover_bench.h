#pragma once
#include <string>
#include <vector>

namespace marketprism::bench {
// `mp-bench failover [flags]`: kill -9 the leader coordinator under a
// saturating load; rejections, errors and how long throughput was reduced.
int RunFailoverBench(const std::vector<std::string>& args);
}  // namespace marketprism::bench
