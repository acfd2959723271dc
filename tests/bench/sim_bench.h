#pragma once
#include <string>
#include <vector>

namespace marketprism::bench {
// `mp-bench sim [flags]`; returns the exit code.
int RunSimBench(const std::vector<std::string>& args);
}  // namespace marketprism::bench
