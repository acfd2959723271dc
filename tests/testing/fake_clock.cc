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
      if (due_.empty() || due_.begin()->first.first > end) {
        now_ += end - steady_;
        steady_ = end;
        return;
      }
      auto it = due_.begin();
      if (it->first.first > steady_) {
        now_ += it->first.first - steady_;
        steady_ = it->first.first;
      }
      ids_.erase(it->first.second);
      fn = std::move(it->second);
      due_.erase(it);
    }
    fn();
  }
}

common::Clock::TimerId FakeClock::RunAt(absl::Time steady_at, std::function<void()> fn) {
  absl::MutexLock lock(&mu_);
  TimerId id = ++next_id_;
  due_.emplace(std::make_pair(steady_at, id), std::move(fn));
  ids_[id] = steady_at;
  return id;
}

bool FakeClock::Cancel(TimerId id) {
  absl::MutexLock lock(&mu_);
  auto it = ids_.find(id);
  if (it == ids_.end()) return false;
  due_.erase(std::make_pair(it->second, id));
  ids_.erase(it);
  return true;
}

size_t FakeClock::timers() {
  absl::MutexLock lock(&mu_);
  return due_.size();
}

void FakeClock::SetNow(absl::Time t) {
  absl::MutexLock lock(&mu_);
  now_ = t;
}

}  // namespace marketprism::testing
