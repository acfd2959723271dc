#include "common/timer.h"

#include <gtest/gtest.h>

#include <vector>

#include "tests/testing/fake_clock.h"

namespace marketprism::common {
namespace {

using marketprism::testing::FakeClock;

TEST(TimerTest, RunsAtItsTimeOnTheFakeClockAndNotBefore) {
  FakeClock clock;
  std::vector<absl::Time> ran;
  Timer timer(clock, [&] { ran.push_back(clock.SteadyNow()); });
  absl::Time start = clock.SteadyNow();
  timer.ArmIn(absl::Milliseconds(250));
  clock.AdvanceBy(absl::Milliseconds(249));
  EXPECT_TRUE(ran.empty());
  clock.AdvanceBy(absl::Seconds(1));
  ASSERT_EQ(ran.size(), 1u);
  EXPECT_EQ(ran[0], start + absl::Milliseconds(250));  // the clock reads the timer's time
  EXPECT_EQ(clock.SteadyNow(), start + absl::Milliseconds(1249));
}

TEST(TimerTest, ArmingAgainReplacesAndArmByOnlyMovesEarlier) {
  FakeClock clock;
  int runs = 0;
  Timer timer(clock, [&] { ++runs; });
  timer.ArmIn(absl::Seconds(1));
  timer.ArmIn(absl::Seconds(3));  // replaces
  clock.AdvanceBy(absl::Seconds(2));
  EXPECT_EQ(runs, 0);
  timer.ArmBy(clock.SteadyNow() + absl::Seconds(5));  // later: no change
  clock.AdvanceBy(absl::Seconds(1));
  EXPECT_EQ(runs, 1);
  timer.ArmIn(absl::Seconds(5));
  timer.ArmBy(clock.SteadyNow() + absl::Seconds(1));  // earlier: moves it
  clock.AdvanceBy(absl::Seconds(1));
  EXPECT_EQ(runs, 2);
  EXPECT_EQ(clock.timers(), 0u);  // the replaced armings were cancelled
}

TEST(TimerTest, ACallbackMayRearmItself) {
  FakeClock clock;
  int runs = 0;
  Timer* self = nullptr;
  Timer timer(clock, [&] {
    if (++runs < 4) self->ArmIn(absl::Milliseconds(100));
  });
  self = &timer;
  timer.ArmIn(absl::Milliseconds(100));
  clock.AdvanceBy(absl::Seconds(10));
  EXPECT_EQ(runs, 4);
}

TEST(TimerTest, StoppedTimersNeverRun) {
  FakeClock clock;
  int runs = 0;
  Timer timer(clock, [&] { ++runs; });
  timer.ArmIn(absl::Seconds(1));
  timer.Stop();
  timer.ArmIn(absl::Seconds(1));
  clock.AdvanceBy(absl::Seconds(5));
  EXPECT_EQ(runs, 0);
}

TEST(TimerTest, RealClockTimersRunInOrder) {
  Clock& clock = RealClock::Get();
  absl::Mutex mu;
  std::vector<int> order;
  absl::Time now = clock.SteadyNow();
  clock.RunAt(now + absl::Milliseconds(30), [&] { absl::MutexLock l(&mu); order.push_back(2); });
  clock.RunAt(now + absl::Milliseconds(10), [&] { absl::MutexLock l(&mu); order.push_back(1); });
  Clock::TimerId cancelled =
      clock.RunAt(now + absl::Milliseconds(20), [&] { absl::MutexLock l(&mu); order.push_back(9); });
  EXPECT_TRUE(clock.Cancel(cancelled));
  absl::MutexLock l(&mu);
  ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(+[](std::vector<int>* o) { return o->size() >= 2; }, &order),
                                  absl::Seconds(10)));
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

}  // namespace
}  // namespace marketprism::common
