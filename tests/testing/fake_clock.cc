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

void FakeClock::SleepFor(absl::Duration d) { AdvanceBy(d); }

void FakeClock::AdvanceBy(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  now_ += d;
  steady_ += d;
}

void FakeClock::SetNow(absl::Time t) {
  absl::MutexLock lock(&mu_);
  now_ = t;
}

}  // namespace marketprism::testing
