#include "tests/testing/wait.h"

#include "absl/time/clock.h"
#include <gtest/gtest.h>

namespace marketprism::testing {
namespace {

TEST(WaitUntil, ReturnsAsSoonAsTheConditionHolds) {
  int calls = 0;
  absl::Time start = absl::Now();
  EXPECT_TRUE(WaitUntil([&] { return ++calls == 3; }, absl::Seconds(10), absl::Milliseconds(1)));
  EXPECT_EQ(calls, 3);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST(WaitUntil, FailsAfterTheTimeoutWhenItNeverHolds) {
  int calls = 0;
  absl::Time start = absl::Now();
  EXPECT_FALSE(
      WaitUntil([&] { return ++calls < 0; }, absl::Milliseconds(100), absl::Milliseconds(10)));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(100));
  EXPECT_GE(calls, 2) << "asked while waiting and once more at the deadline";
}

TEST(WaitUntil, AsksOnceMoreAtTheDeadline) {
  absl::Time flip = absl::Now() + absl::Milliseconds(50);
  // Polls less often than the timeout: only the last call can see it true.
  EXPECT_TRUE(
      WaitUntil([&] { return absl::Now() >= flip; }, absl::Milliseconds(60), absl::Seconds(1)));
}

}  // namespace
}  // namespace marketprism::testing
