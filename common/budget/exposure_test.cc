#include "common/budget/exposure.h"

#include <gtest/gtest.h>

#include "common/budget/pool_ledger.h"

namespace marketprism::common {
namespace {

constexpr int kAny = 1000;  // a budget that needs many in flight

TEST(ExposureBoundTest, StartsAtOneGrowsWithConfirmationsFallsToOneOnASurprise) {
  ExposureBound b({.enabled = true, .max = 4});
  EXPECT_EQ(b.Limit(kAny), 1);
  uint64_t e = b.Started();
  EXPECT_FALSE(b.MayStart(kAny)) << "one in flight until a reply confirms the ledger";
  b.Ended(ExposureVerdict::kConfirmed, e);
  EXPECT_EQ(b.Limit(kAny), 2);
  uint64_t e1 = b.Started(), e2 = b.Started();
  EXPECT_FALSE(b.MayStart(kAny));
  b.Ended(ExposureVerdict::kConfirmed, e1);
  b.Ended(ExposureVerdict::kConfirmed, e2);
  EXPECT_EQ(b.Limit(kAny), 4);
  e = b.Started();
  b.Ended(ExposureVerdict::kConfirmed, e);
  EXPECT_EQ(b.Limit(kAny), 4) << "never above max";
  e1 = b.Started();
  e2 = b.Started();
  uint64_t e3 = b.Started();
  b.Ended(ExposureVerdict::kSurprise, e1);
  EXPECT_EQ(b.Limit(kAny), 1);
  EXPECT_FALSE(b.MayStart(kAny)) << "the others are still out: nothing more starts";
  b.Ended(ExposureVerdict::kConfirmed, e2);
  EXPECT_EQ(b.Limit(kAny), 1) << "a request sent before the surprise confirms nothing";
  b.Ended(ExposureVerdict::kNeutral, e3);
  EXPECT_EQ(b.Limit(kAny), 1) << "nor does one that never reached the exchange";
  EXPECT_TRUE(b.MayStart(kAny));
  e = b.Started();
  b.Ended(ExposureVerdict::kConfirmed, e);
  EXPECT_EQ(b.Limit(kAny), 2) << "one sent after it does";
}

TEST(ExposureBoundTest, NeverMoreThanTheBudgetNeedsOrTheOtherPartyAllows) {
  ExposureBound b({.enabled = true, .max = 64});
  for (int i = 0; i < 20; ++i) b.Ended(ExposureVerdict::kConfirmed, b.Started());
  EXPECT_EQ(b.Limit(kAny), 21);
  EXPECT_EQ(b.Limit(3), 3);
  EXPECT_EQ(b.Limit(0), 1) << "at least one";
  b.SetExternal(2);
  EXPECT_EQ(b.Limit(kAny), 2);
  b.SetExternal(0);
  EXPECT_EQ(b.Limit(kAny), 21);
  uint64_t before = b.Started();
  b.Restart();
  EXPECT_EQ(b.Limit(kAny), 1) << "a new window starts over";
  b.Ended(ExposureVerdict::kConfirmed, before);
  EXPECT_EQ(b.Limit(kAny), 1) << "a request of the last window confirms nothing of this one";
}

TEST(ExposureBoundTest, DisabledBoundsNothing) {
  ExposureBound b({.enabled = false});
  for (int i = 0; i < 1000; ++i) b.Started();
  EXPECT_TRUE(b.MayStart(1));
}

TEST(NeededInFlightTest, RateTimesRoundTripRoundedUp) {
  EXPECT_EQ(NeededInFlight(10, absl::Milliseconds(1)), 1);
  EXPECT_EQ(NeededInFlight(10, absl::Milliseconds(200)), 2);
  EXPECT_EQ(NeededInFlight(100, absl::Milliseconds(205)), 21);
  EXPECT_EQ(NeededInFlight(0, absl::Seconds(1)), 1);
}

TEST(RttEstimateTest, FollowsTheSamples) {
  RttEstimate r;
  EXPECT_EQ(r.value(), absl::ZeroDuration());
  r.Add(absl::Milliseconds(100));
  EXPECT_EQ(r.value(), absl::Milliseconds(100));
  for (int i = 0; i < 30; ++i) r.Add(absl::Milliseconds(200));
  EXPECT_NEAR(absl::ToDoubleMilliseconds(r.value()), 200, 1);
}

PoolRule Fixed(int64_t cap) {
  PoolRule r;
  r.name = "W";
  r.window = WindowKind::kFixed;
  r.length = absl::Seconds(60);
  r.capacity = cap;
  return r;
}

const absl::Time kMinute = absl::FromUnixSeconds(1'700'000'000 - 1'700'000'000 % 60);

TEST(PoolLedgerSpendTest, RateIsWhatIsLeftOverTheTimeLeft) {
  PoolLedger l(Fixed(600), absl::Milliseconds(1));
  EXPECT_NEAR(l.SpendRate(kMinute, 1), 10, 0.01) << "600 units in 60 s";
  EXPECT_NEAR(l.SpendRate(kMinute, 5), 2, 0.01);
  l.Complete(l.Charge(kMinute, 300), kMinute + absl::Milliseconds(2), 300);
  EXPECT_NEAR(l.SpendRate(kMinute + absl::Seconds(30), 1), 10, 0.01) << "300 left in 30 s";
}

TEST(PoolLedgerSpendTest, MostExplainedCountsEverythingInFlightInEveryWindowItMayBeIn) {
  PoolLedger l(Fixed(600), absl::Milliseconds(1));
  absl::Time t = kMinute + absl::Seconds(10);
  l.Complete(l.Charge(t, 10), t + absl::Milliseconds(1), 10);
  LedgerTicket a = l.Charge(t, 5);
  LedgerTicket b = l.Charge(t, 5);
  EXPECT_EQ(l.MostExplained(t, t + absl::Milliseconds(1)), 20);
  l.Complete(a, t + absl::Milliseconds(1), 20);
  // The header (20) may or may not include b, still out: up to 25 is ours.
  EXPECT_EQ(l.MostExplained(t, t + absl::Milliseconds(1)), 25);
  l.Cancel(b);
}

}  // namespace
}  // namespace marketprism::common
