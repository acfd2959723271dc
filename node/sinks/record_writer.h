// File: node/sinks/record_writer.h
//
// A destination for the node's records: NATS JetStream, ClickHouse, files.
// SinkPipeline (sink_pipeline.h) owns one per configured sink and calls it
// from its own thread only, one batch at a time, oldest first.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "marketprism/v1/collector.pb.h"

namespace marketprism::node {

class RecordWriter {
 public:
  virtual ~RecordWriter() = default;
  // "nats", "clickhouse", "jsonl": names the sink in logs, status and the
  // spool's folder.
  virtual std::string name() const = 0;
  // Writes all of `batch` durably, or fails (kUnavailable when the
  // destination is down, naming it). A failed batch is offered again, whole:
  // a writer may have written part of it, and every destination collapses
  // repeats by the record's key (or, for files, takes the part back).
  virtual absl::Status Write(const std::vector<v1::MarketEvent>& batch) = 0;
  // Flushes and closes what is open (files at their hour's end). Called once,
  // last.
  virtual void Close() {}
};

}  // namespace marketprism::node
