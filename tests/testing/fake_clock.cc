#include "tests/testing/fake_clock.h"

namespace marketprism::testing {

FakeClock::FakeClock(absl::Time start)
    : now_(start), steady_(absl::UnixEpoch() + absl::Seconds(1000)) {}

absl::Time FakeClock::Now() {
  absl::MutexLock lock(&mu_);
  return now_;
}

absl::Time FakeClock::SteadyNow() {
  absl::MutexLock lock(&mu_);
  return steady_;
}

// Moves time without running timers (a sleeper may be a timer callback).
void FakeClock::SleepFor(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  now_ += d;
  steady_ += d;
}

void FakeClock::AdvanceBy(absl::Duration d) {
  absl::MutexLock advancing(&advance_mu_);
  absl::Time end;
  {
    absl::MutexLock lock(&mu_);
    end = steady_ + d;
  }
  while (true) {
    std::function<void()> fn;
    {
      absl::MutexLock lock(&mu_);
      auto due = timers_.PopDue(end);
      absl::Time to = due ? std::max(due->first, steady_) : end;
      now_ += to - steady_;
      steady_ = to;
      if (!due) return;
      fn = std::move(due->second);
    }
    fn();
  }
}

common::Clock::TimerId FakeClock::RunAt(absl::Time steady_at, std::function<void()> fn) {
  absl::MutexLock lock(&mu_);
  return timers_.Add(steady_at, std::move(fn));
}

bool FakeClock::Cancel(TimerId id) {
  absl::MutexLock lock(&mu_);
  return timers_.Cancel(id);
}

void FakeClock::SetNow(absl::Time t) {
  absl::MutexLock lock(&mu_);
  now_ = t;
}

size_t FakeClock::timers() {
  absl::MutexLock lock(&mu_);
  return timers_.size();
}

}  // namespace marketprism::testing
