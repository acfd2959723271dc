// File: common/int_math.h
//
// Integer helpers that C++'s truncating `/` gets wrong for negative values,
// shared by the budget windows, the gossip slots and the simulator's market
// clock (all of which index time, which may be before the epoch).
#pragma once

#include <cassert>
#include <cstdint>

namespace marketprism::common {

// a / b rounded toward negative infinity (FloorDiv(-1, 60) == -1); b must be > 0.
constexpr int64_t FloorDiv(int64_t a, int64_t b) {
  assert(b > 0);
  int64_t q = a / b;
  return a % b < 0 ? q - 1 : q;
}

}  // namespace marketprism::common
