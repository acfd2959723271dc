// File: tests/testing/fake_clock.h
//
// A Clock that only moves when told to. Thread-safe. SleepFor() advances the
// clock instead of blocking (without running timers), so code that sleeps
// runs instantly in tests.
// Timers run inside AdvanceBy (and RunDue), on the calling thread, in order
// of their time, with the clock set to each one's time as it runs; a timer
// armed for a time already past runs at the next AdvanceBy or RunDue.
#pragma once

#include <functional>
#include <map>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/timer_queue.h"

namespace marketprism::testing {

class FakeClock final : public common::Clock {
 public:
  // Starts at `start` wall time; SteadyNow() starts at the Unix epoch + 1000 s.
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000));

  absl::Time Now() override;
  absl::Time SteadyNow() override;
  void SleepFor(absl::Duration d) override;
  TimerId RunAt(absl::Time steady_at, std::function<void()> fn) override;
  bool Cancel(TimerId id) override;

  void AdvanceBy(absl::Duration d);
  // Runs the timers already due.
  void RunDue() { AdvanceBy(absl::ZeroDuration()); }
  // Timers pending.
  size_t timers();
  // Sets the wall clock (steady time is unaffected, as with a real clock step).
  void SetNow(absl::Time t);

 private:
  absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  absl::Time steady_ ABSL_GUARDED_BY(mu_);
  common::TimerQueue timers_ ABSL_GUARDED_BY(mu_);
  absl::Mutex advance_mu_;  // one AdvanceBy at a time, so timers run in order
};

}  // namespace marketprism::testing
