#include "tests/testing/wait.h"

#include <algorithm>

#include "absl/time/clock.h"

namespace marketprism::testing {

bool WaitUntil(const std::function<bool()>& cond, absl::Duration timeout, absl::Duration poll) {
  absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (cond()) return true;
    absl::SleepFor(std::min(poll, deadline - absl::Now()));
  }
  return cond();
}

}  // namespace marketprism::testing
