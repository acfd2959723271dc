#include "common/clock.h"

#include <chrono>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/timer_queue.h"

namespace marketprism::common {

// The real clock's timers: one thread, callbacks in order of their time.
// Never destroyed (the process-wide clock outlives every user).
class RealClock::Timers {
 public:
  Timers() : thread_([this] { Loop(); }) { thread_.detach(); }

  TimerId Add(absl::Time at, std::function<void()> fn) {
    absl::MutexLock lock(&mu_);
    return queue_.Add(at, std::move(fn));
  }

  bool Cancel(TimerId id) {
    absl::MutexLock lock(&mu_);
    return queue_.Cancel(id);
  }

 private:
  void Loop() {
    while (true) {
      std::function<void()> fn;
      {
        absl::MutexLock lock(&mu_);
        while (true) {
          absl::Time now = RealClock::Get().SteadyNow();
          if (auto due = queue_.PopDue(now)) {
            fn = std::move(due->second);
            break;
          }
          // Woken early by a new, earlier timer.
          first_ = queue_.next();
          absl::Duration wait = queue_.empty() ? absl::Seconds(1) : first_ - now;
          mu_.AwaitWithTimeout(absl::Condition(+[](Timers* t) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                                 return t->queue_.next() < t->first_;
                                               }, this),
                               wait);
        }
      }
      fn();
    }
  }

  absl::Mutex mu_;
  TimerQueue queue_ ABSL_GUARDED_BY(mu_);
  absl::Time first_ ABSL_GUARDED_BY(mu_);  // the earliest when the loop last looked
  std::thread thread_;
};

RealClock& RealClock::Get() {
  static RealClock* clock = new RealClock();
  return *clock;
}

absl::Time RealClock::Now() { return absl::Now(); }

absl::Time RealClock::SteadyNow() {
  auto since = std::chrono::steady_clock::now().time_since_epoch();
  return absl::UnixEpoch() + absl::FromChrono(since);
}

void RealClock::SleepFor(absl::Duration d) { absl::SleepFor(d); }

RealClock::Timers& RealClock::timers() {
  static Timers* timers = new Timers();
  return *timers;
}

Clock::TimerId RealClock::RunAt(absl::Time steady_at, std::function<void()> fn) {
  return timers().Add(steady_at, std::move(fn));
}

bool RealClock::Cancel(TimerId id) { return timers().Cancel(id); }

}  // namespace marketprism::common
