// File: common/collect/decimal.h
//
// Prices and quantities stay the exchange's decimal strings (never binary
// floating point). These helpers check such a string, put it in one canonical
// form so that "0.10" and "0.1" name the same price level, and order
// canonical strings by value without converting them. DecimalKey is the same
// value as fixed-point integers, for ordering a book's levels cheaply.
#pragma once

#include <cstdint>
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

// A non-negative decimal as two fixed-point integers: the whole part and the
// fraction in units of 1e-19. Exact for up to 19 significant digits on each
// side of the point; a longer decimal is `wide` and orders by its canonical
// text instead (DecimalKeyLess), so every decimal keeps its exact value.
struct DecimalKey {
  uint64_t whole = 0;
  uint64_t frac = 0;
  bool wide = false;
  std::string canonical;  // wide only: CanonicalDecimal's form
};

// Reads `text` into `*key`; false (leaving `*key` unspecified) when
// CanonicalDecimal would refuse it. Allocates only for a wide decimal.
bool ParseDecimalKey(absl::string_view text, DecimalKey* key);

// Whether `a` is less than `b`, by value.
bool DecimalKeyLess(const DecimalKey& a, const DecimalKey& b);

inline bool DecimalKeyIsZero(const DecimalKey& k) { return !k.wide && k.whole == 0 && k.frac == 0; }

}  // namespace marketprism::common
