#include "common/int_math.h"

#include <cstdint>
#include <limits>

#include <gtest/gtest.h>

namespace marketprism::common {
namespace {

static_assert(FloorDiv(-1, 60) == -1, "usable in constant expressions");

TEST(FloorDiv, NegativeNumeratorsRoundDown) {
  EXPECT_EQ(FloorDiv(-1, 60), -1);
  EXPECT_EQ(FloorDiv(-59, 60), -1);
  EXPECT_EQ(FloorDiv(-60, 60), -1);
  EXPECT_EQ(FloorDiv(-61, 60), -2);
  EXPECT_EQ(FloorDiv(-7, 1), -7);
}

TEST(FloorDiv, ZeroIsZero) {
  EXPECT_EQ(FloorDiv(0, 1), 0);
  EXPECT_EQ(FloorDiv(0, 60), 0);
}

TEST(FloorDiv, PositiveNumeratorsTruncate) {
  EXPECT_EQ(FloorDiv(1, 60), 0);
  EXPECT_EQ(FloorDiv(59, 60), 0);
  EXPECT_EQ(FloorDiv(60, 60), 1);
  EXPECT_EQ(FloorDiv(121, 60), 2);
}

TEST(FloorDiv, ExtremesDoNotOverflow) {
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(FloorDiv(kMin, 1), kMin);
  EXPECT_EQ(FloorDiv(kMin, 2), kMin / 2);
  EXPECT_EQ(FloorDiv(kMin + 1, 2), kMin / 2);
  EXPECT_EQ(FloorDiv(kMax, 2), kMax / 2);
  EXPECT_EQ(FloorDiv(kMin, kMax), -2);
}

}  // namespace
}  // namespace marketprism::common
