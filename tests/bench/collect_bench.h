#pragma once
#include <string>
#include <vector>

namespace marketprism::bench {
// `mp-bench collect [flags]`: feed handling on one core, the node's own path
// (node/collector.h: parse, normalize to MarketEvent, apply to the book) fed
// from memory: trade messages/s and depth diffs/s, and the parse alone.
int RunCollectBench(const std::vector<std::string>& args);
}  // namespace marketprism::bench
