#include "common/clock.h"

#include <chrono>

namespace marketprism::common {

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

}  // namespace marketprism::common
