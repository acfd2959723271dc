// File: node/sinks/sink_pipeline.h
//
// One sink's path from the collector to its destination:
//
//   Offer (the collector's thread, under its lock: only queues)
//     -> memory queue (bounded) -> RecordWriter::Write, a batch at a time
//     -> when the queue is full (the sink is down or slow): the on-disk
//        Spool, which is written out, in order, once the queue is empty
//     -> when the spool is full: the records are dropped, and the unit's
//        next record that fits is preceded by a Gap record ("spool full")
//        saying which sequence numbers went missing. Never silent loss.
//
// Order is kept: a record goes to memory only while the spool is empty, and
// the writer takes memory before the spool. A failed batch stays where it is
// and is tried again after a back-off (100 ms doubling to 5 s).
//
// Threads: Offer and Status from any thread; Start runs one writer thread
// (tests call RunOnce themselves instead, on a FakeClock).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "marketprism/v1/collector.pb.h"

#include "common/clock.h"
#include "node/sinks/record_writer.h"
#include "node/sinks/spool.h"

namespace marketprism::node {

struct SinkPipelineOptions {
  std::string spool_dir;                   // this sink's own folder
  int64_t spool_max_bytes = int64_t{1} << 30;
  size_t memory_records = 50000;           // queued in memory before the spool takes them
  size_t batch_records = 5000;             // per Write
  absl::Duration retry_min = absl::Milliseconds(100);
  absl::Duration retry_max = absl::Seconds(5);
  // A batch smaller than batch_records waits this long after the last write
  // for more (a destination such as ClickHouse wants few, large inserts).
  absl::Duration linger = absl::Milliseconds(100);
};

struct SinkStatus {
  std::string name;
  bool healthy = true;                 // the last write went through
  std::string last_error;
  int64_t written_total = 0;           // records
  int64_t failures_total = 0;          // writes that failed
  int64_t queued = 0;                  // in memory
  int64_t spool_records = 0;
  int64_t spool_bytes = 0;
  absl::Duration spool_age;            // of its oldest record (0 when empty)
  int64_t dropped_total = 0;           // records lost to a full spool (each in a gap record)
};

// The unit a record belongs to ("binance_spot/trades/BTCUSDT"; a kline's
// interval is part of it) and the number its sequence is checked by (the
// trade's sequence, the book's last update id, a poll's slot...).
std::string RecordUnit(const v1::MarketEvent& e);
int64_t RecordSequence(const v1::MarketEvent& e);

class SinkPipeline {
 public:
  // Opens the spool (records an earlier run left are written first).
  // `clock` must outlive the pipeline.
  static absl::StatusOr<std::unique_ptr<SinkPipeline>> Create(SinkPipelineOptions options,
                                                              std::unique_ptr<RecordWriter> writer,
                                                              common::Clock& clock);
  ~SinkPipeline();  // Stop()

  // Takes `records` (in the order the unit made them). Never blocks on the
  // destination.
  void Offer(const std::vector<v1::MarketEvent>& records) ABSL_LOCKS_EXCLUDED(mu_);
  // Writes one batch if one is due. Returns how long until it is worth
  // calling again: zero when more is waiting, the back-off after a failure,
  // InfiniteDuration when there is nothing to write.
  absl::Duration RunOnce() ABSL_LOCKS_EXCLUDED(mu_);
  SinkStatus Status() ABSL_LOCKS_EXCLUDED(mu_);

  void Start();
  // Writes out what is queued in memory while the destination takes it
  // (up to `drain`), then closes the writer. What is left stays in the spool.
  void Stop(absl::Duration drain = absl::Seconds(5)) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  SinkPipeline(SinkPipelineOptions options, std::unique_ptr<RecordWriter> writer, common::Clock& clock,
               std::unique_ptr<Spool> spool);
  // Where `records` go: memory while the spool is empty and memory has room,
  // else the spool; dropped (and noted for a gap) when the spool is full.
  void AcceptLocked(std::vector<v1::MarketEvent> records) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Loop();

  struct Lost {
    int64_t after = 0;  // the last sequence kept before the loss
    int64_t count = 0;
    v1::MarketEvent like;  // a dropped record: its exchange, symbol, channel
  };

  const SinkPipelineOptions options_;
  const std::unique_ptr<RecordWriter> writer_;  // the writer thread (or RunOnce's caller) only
  common::Clock& clock_;
  absl::Mutex write_mu_ ABSL_ACQUIRED_BEFORE(mu_);  // one RunOnce at a time
  absl::Mutex mu_;
  std::unique_ptr<Spool> spool_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::MarketEvent> memory_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> last_kept_ ABSL_GUARDED_BY(mu_);  // per unit
  std::map<std::string, Lost> lost_ ABSL_GUARDED_BY(mu_);          // per unit, awaiting its gap record
  absl::Time retry_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time last_write_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Duration backoff_ ABSL_GUARDED_BY(mu_);
  SinkStatus status_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool offered_ ABSL_GUARDED_BY(mu_) = false;  // wakes the writer thread
  std::thread thread_;
};

}  // namespace marketprism::node
