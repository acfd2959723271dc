// File: common/timer.h
//
// A re-armable one-shot timer on a Clock's timers: the way time-driven work
// (a scheduler's window edges, lease renewals, a refresh every few seconds)
// runs, so that a FakeClock drives it in tests and nothing waits on real
// time. The owner arms it; the callback runs on the clock's timer thread and
// may re-arm it.
//
// Thread-safe. `clock` must outlive the timer. Stop() (and the destructor)
// waits for a callback under way, so it must not be called from the callback.
#pragma once

#include <cstdint>
#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace marketprism::common {

class Timer {
 public:
  Timer(Clock& clock, std::function<void()> fn) : clock_(clock), fn_(std::move(fn)) {}
  ~Timer() { Stop(); }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Runs the callback at steady time `at`, replacing any earlier arming.
  void ArmAt(absl::Time at) ABSL_LOCKS_EXCLUDED(mu_);
  void ArmIn(absl::Duration d) { ArmAt(clock_.SteadyNow() + d); }
  // Arms for `at` unless it is already armed for no later than that.
  void ArmBy(absl::Time at) ABSL_LOCKS_EXCLUDED(mu_);
  // No run from now on; waits for one under way. Arming afterwards does nothing.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void ArmLocked(absl::Time at) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Fire(uint64_t generation) ABSL_LOCKS_EXCLUDED(mu_);

  Clock& clock_;
  const std::function<void()> fn_;
  absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  bool armed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time at_ ABSL_GUARDED_BY(mu_);
  Clock::TimerId id_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
};

inline void Timer::ArmLocked(absl::Time at) {
  if (stopped_) return;
  if (armed_) clock_.Cancel(id_);
  armed_ = true;
  at_ = at;
  uint64_t generation = ++generation_;
  id_ = clock_.RunAt(at, [this, generation] { Fire(generation); });
}

inline void Timer::ArmAt(absl::Time at) {
  absl::MutexLock lock(&mu_);
  ArmLocked(at);
}

inline void Timer::ArmBy(absl::Time at) {
  absl::MutexLock lock(&mu_);
  if (armed_ && at_ <= at) return;
  ArmLocked(at);
}

inline void Timer::Stop() {
  absl::MutexLock lock(&mu_);
  stopped_ = true;
  if (armed_) clock_.Cancel(id_);
  armed_ = false;
  mu_.Await(absl::Condition(+[](bool* running) { return !*running; }, &running_));
}

inline void Timer::Fire(uint64_t generation) {
  {
    absl::MutexLock lock(&mu_);
    if (stopped_ || generation != generation_) return;
    armed_ = false;
    running_ = true;
  }
  fn_();
  absl::MutexLock lock(&mu_);
  running_ = false;
}

}  // namespace marketprism::common
