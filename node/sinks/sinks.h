// File: node/sinks/sinks.h
//
// The node's sinks, built from `--sink` specs:
//
//   nats=nats://HOST:PORT[,...][?stream=S&format=protobuf|json]   (nats_writer.h)
//   clickhouse=http://HOST:PORT/?database=DB[&depth=N]           (clickhouse_writer.h)
//   jsonl=DIR                                                    (jsonl_writer.h)
//
// each behind its own SinkPipeline (memory queue, spool under
// `<spool_dir>/<kind>-<hash of the spec>`, gap records when the spool is
// full). The node
// hands every record the collector makes to Offer; the coordinator is not on
// this path.
//
// Threads: Offer and Status from any thread; one writer thread per sink.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "common/clock.h"
#include "node/sinks/sink_pipeline.h"

namespace marketprism::node {

struct SinksOptions {
  std::vector<std::string> specs;  // KIND=TARGET
  std::string node_id;
  std::string spool_dir;           // each sink spools in a folder of its own under it
  int64_t spool_max_bytes = int64_t{1} << 30;  // per sink
  size_t memory_records = 50000;               // per sink, before its spool
};

// Checks a spec without connecting anywhere: kInvalidArgument naming it.
absl::Status ValidateSinkSpec(absl::string_view spec);

class Sinks {
 public:
  // Builds every sink and opens its spool; connects to nothing yet.
  static absl::StatusOr<std::unique_ptr<Sinks>> Create(const SinksOptions& options, common::Clock& clock);
  ~Sinks();  // Stop()

  bool empty() const { return pipelines_.empty(); }
  void Start();
  void Offer(const std::vector<v1::MarketEvent>& records);
  std::vector<SinkStatus> Status();
  void Stop();

 private:
  Sinks() = default;
  std::vector<std::unique_ptr<SinkPipeline>> pipelines_;
};

}  // namespace marketprism::node
