#pragma once
#include <string>
#include <vector>

namespace marketprism::bench {
int RunLatencyBench(const std::vector<std::string>& args);
int RunAdmissionBench(const std::vector<std::string>& args);
int RunMemoryBench(const std::vector<std::string>& args);
// Keeps a value alive across the timed region.
inline void benchmark_sink(bool v) { asm volatile("" : : "r"(v) : "memory"); }
}  // namespace marketprism::bench
