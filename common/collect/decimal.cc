#include "common/collect/decimal.h"

#include "absl/strings/ascii.h"

namespace marketprism::common {

std::optional<std::string> CanonicalDecimal(absl::string_view text) {
  size_t point = text.find('.');
  absl::string_view whole = text.substr(0, point);
  absl::string_view frac = point == absl::string_view::npos ? absl::string_view() : text.substr(point + 1);
  if (whole.empty() && frac.empty()) return std::nullopt;
  for (absl::string_view part : {whole, frac}) {
    for (char c : part) {
      if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    }
  }
  while (!whole.empty() && whole.front() == '0') whole.remove_prefix(1);
  while (!frac.empty() && frac.back() == '0') frac.remove_suffix(1);
  std::string out(whole.empty() ? "0" : whole);
  if (!frac.empty()) {
    out.push_back('.');
    out.append(frac.data(), frac.size());
  }
  return out;
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

}  // namespace marketprism::common
