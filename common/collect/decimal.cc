#include "common/collect/decimal.h"

#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace marketprism::common {

namespace {

constexpr size_t kFixedDigits = 19;  // 10^19 - 1 fits in uint64
constexpr uint64_t kPow10[kFixedDigits + 1] = {1,
                                               10,
                                               100,
                                               1'000,
                                               10'000,
                                               100'000,
                                               1'000'000,
                                               10'000'000,
                                               100'000'000,
                                               1'000'000'000,
                                               10'000'000'000,
                                               100'000'000'000,
                                               1'000'000'000'000,
                                               10'000'000'000'000,
                                               100'000'000'000'000,
                                               1'000'000'000'000'000,
                                               10'000'000'000'000'000,
                                               100'000'000'000'000'000,
                                               1'000'000'000'000'000'000,
                                               10'000'000'000'000'000'000u};

// Splits `text` into its whole and fraction digits without leading zeros
// (whole) or trailing zeros (fraction); false when it is not a decimal.
bool SplitDecimal(absl::string_view text, absl::string_view* whole, absl::string_view* frac) {
  size_t point = text.find('.');
  *whole = text.substr(0, point);
  *frac = point == absl::string_view::npos ? absl::string_view() : text.substr(point + 1);
  if (whole->empty() && frac->empty()) return false;
  for (absl::string_view part : {*whole, *frac}) {
    for (char c : part) {
      if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
    }
  }
  while (!whole->empty() && whole->front() == '0') whole->remove_prefix(1);
  while (!frac->empty() && frac->back() == '0') frac->remove_suffix(1);
  return true;
}

std::string Canonical(absl::string_view whole, absl::string_view frac) {
  std::string out(whole.empty() ? "0" : whole);
  if (!frac.empty()) absl::StrAppend(&out, ".", frac);
  return out;
}

// A narrow key's canonical text (for comparing it with a wide one).
std::string CanonicalOf(const DecimalKey& k) {
  if (k.wide) return k.canonical;
  std::string frac = absl::StrCat(k.frac);
  frac.insert(0, kFixedDigits - frac.size(), '0');
  while (!frac.empty() && frac.back() == '0') frac.pop_back();
  return Canonical(k.whole == 0 ? "" : absl::StrCat(k.whole), frac);
}

}  // namespace

std::optional<std::string> CanonicalDecimal(absl::string_view text) {
  absl::string_view whole, frac;
  if (!SplitDecimal(text, &whole, &frac)) return std::nullopt;
  return Canonical(whole, frac);
}

bool DecimalLess(absl::string_view a, absl::string_view b) {
  size_t pa = a.find('.'), pb = b.find('.');
  absl::string_view wa = a.substr(0, pa), wb = b.substr(0, pb);
  if (wa.size() != wb.size()) return wa.size() < wb.size();  // canonical: no leading zeros
  if (wa != wb) return wa < wb;
  absl::string_view fa = pa == absl::string_view::npos ? "" : a.substr(pa + 1);
  absl::string_view fb = pb == absl::string_view::npos ? "" : b.substr(pb + 1);
  return fa < fb;  // digit strings of a fraction compare by value lexicographically
}

bool ParseDecimalKey(absl::string_view text, DecimalKey* key) {
  // One pass for the usual narrow decimal; SplitDecimal's rules otherwise.
  uint64_t whole = 0, frac = 0;
  size_t whole_digits = 0, frac_digits = 0, i = 0;
  for (; i < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[i])); ++i) {
    whole = whole * 10 + static_cast<uint64_t>(text[i] - '0');
    whole_digits += whole != 0;
  }
  bool digits = i > 0;
  if (i < text.size() && text[i] == '.') {
    for (++i; i < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[i]));
         ++i, ++frac_digits) {
      // Past 19 digits, SplitDecimal decides below.
      if (frac_digits < kFixedDigits) frac = frac * 10 + static_cast<uint64_t>(text[i] - '0');
      digits = true;
    }
    if (frac_digits < kFixedDigits) frac *= kPow10[kFixedDigits - frac_digits];
  }
  if (i != text.size() || !digits) return false;
  if (whole_digits <= kFixedDigits && frac_digits <= kFixedDigits) {
    key->whole = whole;
    key->frac = frac;
    key->wide = false;
    return true;
  }
  absl::string_view w, f;
  if (!SplitDecimal(text, &w, &f)) return false;
  key->wide = w.size() > kFixedDigits || f.size() > kFixedDigits;
  if (!key->wide) return ParseDecimalKey(Canonical(w, f), key);  // zeros made it long
  key->canonical = Canonical(w, f);
  return true;
}

bool DecimalKeyLess(const DecimalKey& a, const DecimalKey& b) {
  if (!a.wide && !b.wide) return std::tie(a.whole, a.frac) < std::tie(b.whole, b.frac);
  return DecimalLess(CanonicalOf(a), CanonicalOf(b));
}

}  // namespace marketprism::common
