// File: common/budget/exchange_window.h
//
// A limit pool exactly as an exchange accounts it: units are counted at the
// moment a request arrives, and a request that would take the pool past its
// capacity is refused and not counted. This is the simulator's ground truth;
// clients use the conservative mirror in pool_ledger.h.
//
//  kFixed:   windows [k*L, (k+1)*L) of exchange (Unix) time; the count resets
//            to zero at each edge.
//  kRolling: a unit spent at t counts while now - t < L.
//  kBucket:  `capacity` credits refilling continuously at `refill_per_second`,
//            full at creation; a request needs its whole cost available.
//
// Not thread-safe; the owner serialises access.
#pragma once

#include <cstdint>
#include <deque>
#include <utility>

#include "absl/time/time.h"
#include "common/rules/rules.h"

namespace marketprism::common {

class ExchangeWindow {
 public:
  explicit ExchangeWindow(const PoolRule& rule);

  // Spends `units` at time `t` if they fit; returns whether they did. `t`
  // must not go backwards by more than a window between calls.
  bool TrySpend(absl::Time t, int64_t units);

  // Units counted at `t` (for a bucket: capacity minus the credits left,
  // rounded down).
  int64_t Used(absl::Time t);

  // How long from `t` until `units` would fit. Zero if they fit now; for a
  // request larger than the whole capacity, the time to the next reset (fixed)
  // or to a full bucket / empty window.
  absl::Duration RetryAfter(absl::Time t, int64_t units);

  // Start of the fixed window holding `t` (only for kFixed).
  absl::Time WindowStart(absl::Time t) const;

  int64_t capacity() const { return capacity_; }
  void set_capacity(int64_t capacity) { capacity_ = capacity; }
  WindowKind kind() const { return kind_; }
  absl::Duration length() const { return absl::Microseconds(length_us_); }

 private:
  void Advance(int64_t now_us);

  WindowKind kind_;
  int64_t length_us_;
  int64_t capacity_;
  int64_t refill_per_second_;

  // kFixed
  int64_t window_index_ = INT64_MIN;
  int64_t used_ = 0;
  // kRolling: (time, units), oldest first.
  std::deque<std::pair<int64_t, int64_t>> spent_;
  // kBucket: credits in micro-credits (credits * 1e6) at `bucket_time_us_`.
  int64_t level_ucredits_ = 0;
  int64_t bucket_time_us_ = INT64_MIN;
};

}  // namespace marketprism::common
