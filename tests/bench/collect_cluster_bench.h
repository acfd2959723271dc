#pragma once
#include <string>
#include <vector>

namespace marketprism::bench {
// `mp-bench collect-failover [flags]`: kill -9 (or SIGSTOP) of the node that
// holds a book of redundancy 1, in a fresh gossip cluster per kill: how soon
// the book resumes after one gap (p50, p99) and what the redundancy-2 units
// lost (target 0).
int RunCollectFailoverBench(const std::vector<std::string>& args);
// `mp-bench collect-latency [flags]`: the latency the cluster adds from the
// simulator's send to a Subscribe client, over a direct WebSocket client to
// the simulator receiving the same records (p50, p99; target p99 <= 2 ms).
int RunCollectLatencyBench(const std::vector<std::string>& args);
// `mp-bench collect-scale [flags]`: books and trades of 500, 1,000 and 2,000
// Binance symbols on 1, 3 and 8 nodes in one run: symbols in sync, time to
// full sync, rejections at the simulator, CPU and RSS per node.
int RunCollectScaleBench(const std::vector<std::string>& args);
}  // namespace marketprism::bench
