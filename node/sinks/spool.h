// File: node/sinks/spool.h
//
// A bounded first-in first-out queue of records on disk: where a sink's
// records wait while the sink is down or slower than the streams. Records
// are appended to segment files (`<dir>/<number>.spool`, each record a
// 4-byte little-endian length and the serialized MarketEvent) and read back
// oldest first; a segment read to its end is deleted. Segments left by an
// earlier run are read first, so a restart loses nothing spooled (a record
// taken but not yet popped is read again: sinks collapse repeats by key).
// A record cut short by a crash ends its segment; one that does not parse is
// skipped and counted.
//
// Not thread-safe: SinkPipeline calls it under its lock.
#pragma once

#include <cstdint>
#include <cstdio>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "marketprism/v1/collector.pb.h"

namespace marketprism::node {

class Spool {
 public:
  // Opens `dir` (created if missing) holding at most `max_bytes` of records,
  // in segments of about `segment_bytes`. kInvalidArgument when `dir` cannot
  // be made or read, naming it.
  static absl::StatusOr<std::unique_ptr<Spool>> Open(std::string dir, int64_t max_bytes,
                                                     int64_t segment_bytes = int64_t{8} << 20);
  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // Appends all of `records` or none: kResourceExhausted when they would
  // pass max_bytes, kUnavailable when the disk refuses (naming the file).
  absl::Status Append(const std::vector<v1::MarketEvent>& records);
  // The oldest `max` records (fewer if the spool holds fewer), left in place.
  std::vector<v1::MarketEvent> Peek(size_t max);
  // Removes the `n` oldest records (at most as many as Peek last gave).
  void Pop(size_t n);

  bool empty() const { return records_ == 0; }
  int64_t bytes() const { return bytes_; }      // on disk, not yet popped
  int64_t records() const { return records_; }  // not yet popped
  int64_t skipped() const { return skipped_; }  // unreadable records passed over
  // received_time_us of the oldest record (0 when empty).
  int64_t oldest_received_us();

 private:
  struct Entry {
    v1::MarketEvent record;
    int64_t bytes = 0;    // on disk, with its length prefix
    int64_t segment = 0;  // its file's number
  };
  Spool(std::string dir, int64_t max_bytes, int64_t segment_bytes)
      : dir_(std::move(dir)), max_bytes_(max_bytes), segment_bytes_(segment_bytes) {}
  absl::Status Scan();  // counts what earlier runs left
  std::string SegmentPath(int64_t number) const;
  // Reads ahead until `cache_` holds `n` records or the spool is read.
  void Fill(size_t n);
  bool ReadOne(Entry* out);  // the next record on disk; false when all are read
  // Deletes the segments whose records are all popped.
  void DropPopped();

  std::string dir_;
  int64_t max_bytes_;
  int64_t segment_bytes_;
  std::deque<int64_t> segments_;   // numbers, oldest first; the last is written to
  FILE* write_ = nullptr;          // the last segment, open for appending
  int64_t write_bytes_ = 0;        // its size
  int64_t next_segment_ = 1;       // the number the next segment gets
  FILE* read_ = nullptr;           // the segment being read
  int64_t read_segment_ = -1;      // its number
  std::deque<Entry> cache_;        // read from disk, not yet popped
  int64_t bytes_ = 0;
  int64_t records_ = 0;
  int64_t skipped_ = 0;
};

}  // namespace marketprism::node
