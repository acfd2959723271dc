#pragma once
#include <string>
#include <vector>

namespace marketprism::bench {
// `mp-bench drift [flags]`: how far the coordinator's ledger's own count of
// each IP's window (what it sent, before any usage header corrected it) is
// from the exchange's count of that window, under saturating load.
int RunDriftBench(const std::vector<std::string>& args);
}  // namespace marketprism::bench
