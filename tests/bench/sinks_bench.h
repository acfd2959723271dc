#pragma once
#include <string>
#include <vector>

namespace marketprism::bench {
// `mp-bench sinks [flags]`: against Debian's clickhouse-server and
// nats-server started on loopback, records written by one node's sink code
// — the writer alone and the whole pipeline (queue, batches, spool) — in
// rows/s into ClickHouse and msgs/s into JetStream, every record with its
// key (targets: >= 200,000 rows/s, >= 100,000 msgs/s); the same records
// written again to show that repeats collapse; and the lag from the
// simulator's send to the record being readable in each (p50, p99).
int RunSinksBench(const std::vector<std::string>& args);
}  // namespace marketprism::bench
