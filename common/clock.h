// File: common/clock.h
//
// The time seam. Node and coordinator logic never read the system clock
// directly; they are handed a `Clock&` so tests can drive time with
// `FakeClock::AdvanceBy()` (tests/testing/fake_clock.h). The shape follows
// absl::Clock: wall time for anything the exchanges see (window edges, server
// time), a monotonic time for durations and timeouts.
#pragma once

#include <cstdint>
#include <functional>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace marketprism::common {

class Clock {
 public:
  virtual ~Clock() = default;

  // Wall-clock time (UTC). May jump when the system clock is adjusted.
  virtual absl::Time Now() = 0;

  // Monotonic time with an arbitrary epoch; only differences are meaningful.
  virtual absl::Time SteadyNow() = 0;

  // Blocks the calling thread for `d` of this clock's time.
  virtual void SleepFor(absl::Duration d) = 0;

  // Timers: the hook time-driven work runs on (common/timer.h wraps it).
  // RunAt runs `fn` once, on a thread of the clock's, when SteadyNow()
  // reaches `steady_at` (soon, if it has already). Callbacks run one at a
  // time, so they must not block. Thread-safe.
  using TimerId = uint64_t;
  virtual TimerId RunAt(absl::Time steady_at, std::function<void()> fn) = 0;
  // True if `id` was still pending: it then never runs. A callback already
  // under way is not waited for (Timer::Stop does that).
  virtual bool Cancel(TimerId id) = 0;
};

// The production clock. Thread-safe; one process-wide instance.
class RealClock final : public Clock {
 public:
  static RealClock& Get();

  absl::Time Now() override;
  absl::Time SteadyNow() override;
  void SleepFor(absl::Duration d) override;
  // One timer thread for the process, started on first use.
  TimerId RunAt(absl::Time steady_at, std::function<void()> fn) override;
  bool Cancel(TimerId id) override;

 private:
  RealClock() = default;
  class Timers;
  Timers& timers();
};

// Milliseconds and microseconds since the Unix epoch, the units exchanges use.
inline int64_t ToUnixMillis(absl::Time t) { return absl::ToUnixMillis(t); }
inline int64_t ToUnixMicros(absl::Time t) { return absl::ToUnixMicros(t); }

}  // namespace marketprism::common
