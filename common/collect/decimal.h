// File: common/collect/decimal.h
//
// Prices and quantities stay the exchange's decimal strings (never binary
// floating point). These helpers check such a string, put it in one canonical
// form so that "0.10" and "0.1" name the same price level, and order
// canonical strings by value without converting them.
#pragma once

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace marketprism::common {

// The canonical form of a non-negative decimal ("00123.4500" -> "123.45",
// "0.000" -> "0", "5." -> "5"), or nullopt when `text` is not one (a sign,
// an exponent, a second point, no digits, other characters).
std::optional<std::string> CanonicalDecimal(absl::string_view text);

// Whether canonical `a` is less than canonical `b`, by value.
bool DecimalLess(absl::string_view a, absl::string_view b);

// Whether canonical `d` is zero.
inline bool DecimalIsZero(absl::string_view d) { return d == "0"; }

}  // namespace marketprism::common
