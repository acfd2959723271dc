#include "common/clock.h"

#include <chrono>
#include <map>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace marketprism::common {

// The real clock's timers: one thread, callbacks in order of their time.
// Never destroyed (the process-wide clock outlives every user).
class RealClock::Timers {
 public:
  Timers() : thread_([this] { Loop(); }) { thread_.detach(); }

  TimerId Add(absl::Time at, std::function<void()> fn) {
    absl::MutexLock lock(&mu_);
    TimerId id = ++next_id_;
    due_.emplace(std::make_pair(at, id), std::move(fn));
    ids_[id] = at;
    return id;
  }

  bool Cancel(TimerId id) {
    absl::MutexLock lock(&mu_);
    auto it = ids_.find(id);
    if (it == ids_.end()) return false;
    due_.erase(std::make_pair(it->second, id));
    ids_.erase(it);
    return true;
  }

 private:
  void Loop() {
    while (true) {
      std::function<void()> fn;
      {
        absl::MutexLock lock(&mu_);
        while (true) {
          absl::Time now = RealClock::Get().SteadyNow();
          if (!due_.empty() && due_.begin()->first.first <= now) break;
          absl::Duration wait = due_.empty() ? absl::Seconds(1) : due_.begin()->first.first - now;
          // Woken early by a new, earlier timer.
          first_ = due_.empty() ? absl::InfiniteFuture() : due_.begin()->first.first;
          mu_.AwaitWithTimeout(absl::Condition(+[](Timers* t) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                                 return !t->due_.empty() && t->due_.begin()->first.first < t->first_;
                                               }, this),
                               wait);
        }
        auto it = due_.begin();
        ids_.erase(it->first.second);
        fn = std::move(it->second);
        due_.erase(it);
      }
      fn();
    }
  }

  absl::Mutex mu_;
  TimerId next_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::pair<absl::Time, TimerId>, std::function<void()>> due_ ABSL_GUARDED_BY(mu_);
  std::map<TimerId, absl::Time> ids_ ABSL_GUARDED_BY(mu_);
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
