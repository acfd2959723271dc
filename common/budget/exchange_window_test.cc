#include "common/budget/exchange_window.h"

#include <gtest/gtest.h>

namespace marketprism::common {
namespace {

PoolRule Fixed(int64_t cap, int seconds) {
  PoolRule r;
  r.name = "W";
  r.window = WindowKind::kFixed;
  r.length = absl::Seconds(seconds);
  r.capacity = cap;
  return r;
}

PoolRule Rolling(int64_t cap, int seconds) {
  PoolRule r = Fixed(cap, seconds);
  r.window = WindowKind::kRolling;
  return r;
}

PoolRule Bucket(int64_t cap, int64_t refill) {
  PoolRule r;
  r.name = "B";
  r.window = WindowKind::kBucket;
  r.capacity = cap;
  r.refill_per_second = refill;
  return r;
}

// 2023-11-14T22:13:00Z, a minute boundary.
const absl::Time kMinute = absl::FromUnixSeconds(1'700'000'000 - 1'700'000'000 % 60);

TEST(ExchangeWindowTest, FixedRefusesExactlyPastCapacity) {
  ExchangeWindow w(Fixed(10, 60));
  absl::Time t = kMinute + absl::Seconds(5);
  EXPECT_TRUE(w.TrySpend(t, 9));
  EXPECT_TRUE(w.TrySpend(t, 1)) << "10 of 10 fits";
  EXPECT_FALSE(w.TrySpend(t, 1)) << "11 of 10 does not";
  EXPECT_EQ(w.Used(t), 10) << "a refused request is not counted";
}

TEST(ExchangeWindowTest, FixedResetsOnTheClockEdge) {
  ExchangeWindow w(Fixed(10, 60));
  EXPECT_TRUE(w.TrySpend(kMinute + absl::Seconds(59), 10));
  absl::Time last_us = kMinute + absl::Seconds(60) - absl::Microseconds(1);
  EXPECT_FALSE(w.TrySpend(last_us, 1));
  EXPECT_EQ(w.RetryAfter(last_us, 1), absl::Microseconds(1));
  EXPECT_TRUE(w.TrySpend(kMinute + absl::Seconds(60), 1)) << "new window at :00";
  EXPECT_EQ(w.Used(kMinute + absl::Seconds(60)), 1);
}

TEST(ExchangeWindowTest, FixedIsAlignedToTheClockNotToTheFirstRequest) {
  ExchangeWindow w(Fixed(10, 60));
  EXPECT_TRUE(w.TrySpend(kMinute + absl::Seconds(50), 10));
  // Only 10 s later, but a new clock minute.
  EXPECT_TRUE(w.TrySpend(kMinute + absl::Seconds(60), 10));
  EXPECT_EQ(w.WindowStart(kMinute + absl::Seconds(61)), kMinute + absl::Seconds(60));
  EXPECT_EQ(w.RetryAfter(kMinute + absl::Seconds(61), 1), absl::Seconds(59));
}

TEST(ExchangeWindowTest, RollingCountsUntilExactlyOneLengthLater) {
  ExchangeWindow w(Rolling(3, 2));
  absl::Time t0 = kMinute;
  EXPECT_TRUE(w.TrySpend(t0, 1));
  EXPECT_TRUE(w.TrySpend(t0 + absl::Milliseconds(500), 1));
  EXPECT_TRUE(w.TrySpend(t0 + absl::Milliseconds(1000), 1));
  EXPECT_FALSE(w.TrySpend(t0 + absl::Milliseconds(1999), 1));
  EXPECT_EQ(w.RetryAfter(t0 + absl::Milliseconds(1999), 1), absl::Milliseconds(1));
  EXPECT_TRUE(w.TrySpend(t0 + absl::Milliseconds(2000), 1)) << "t0's unit expired at t0+2s";
  EXPECT_FALSE(w.TrySpend(t0 + absl::Milliseconds(2000), 1));
  EXPECT_EQ(w.RetryAfter(t0 + absl::Milliseconds(2000), 2), absl::Milliseconds(1000))
      << "two units free up when t0+0.5s and t0+1s expire";
}

TEST(ExchangeWindowTest, RollingHasNoEdgeBurst) {
  // A fixed window would allow 3 at 1.9 s and 3 more at 2.0 s; rolling does not.
  ExchangeWindow w(Rolling(3, 2));
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(w.TrySpend(kMinute + absl::Milliseconds(1900), 1));
  EXPECT_FALSE(w.TrySpend(kMinute + absl::Milliseconds(2000), 1));
  EXPECT_TRUE(w.TrySpend(kMinute + absl::Milliseconds(3900), 1));
}

TEST(ExchangeWindowTest, BucketBurstThenRefillRate) {
  ExchangeWindow w(Bucket(50000, 10000));
  absl::Time t = kMinute;
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(w.TrySpend(t, 500)) << i;
  EXPECT_FALSE(w.TrySpend(t, 500)) << "burst of 100 requests";
  EXPECT_EQ(w.Used(t), 50000);
  EXPECT_EQ(w.RetryAfter(t, 500), absl::Milliseconds(50)) << "500 credits at 10 credits/ms";
  EXPECT_FALSE(w.TrySpend(t + absl::Microseconds(49999), 500));
  EXPECT_TRUE(w.TrySpend(t + absl::Milliseconds(50), 500));
  // Sustained: one request per 50 ms is exactly the refill.
  for (int i = 2; i < 20; ++i) {
    EXPECT_TRUE(w.TrySpend(t + absl::Milliseconds(50 * i), 500)) << i;
  }
  EXPECT_FALSE(w.TrySpend(t + absl::Milliseconds(50 * 19), 1));
}

TEST(ExchangeWindowTest, BucketNeverOverfills) {
  ExchangeWindow w(Bucket(1000, 100));
  EXPECT_TRUE(w.TrySpend(kMinute, 1000));
  // An hour idle refills to capacity, not beyond.
  EXPECT_TRUE(w.TrySpend(kMinute + absl::Hours(1), 1000));
  EXPECT_FALSE(w.TrySpend(kMinute + absl::Hours(1), 1));
}

TEST(ExchangeWindowTest, CapacityChangeAppliesAtOnce) {
  ExchangeWindow w(Fixed(10, 60));
  EXPECT_TRUE(w.TrySpend(kMinute, 5));
  w.set_capacity(5);
  EXPECT_FALSE(w.TrySpend(kMinute, 1));
}

}  // namespace
}  // namespace marketprism::common
