#include "common/collect/exact_json.h"

#include <cctype>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace marketprism::common {

namespace {

using Json = nlohmann::json;

// Builds the document from nlohmann's SAX events, keeping number text.
class ExactBuilder final : public nlohmann::json_sax<Json> {
 public:
  bool null() override { return Put(nullptr); }
  bool boolean(bool v) override { return Put(v); }
  bool number_integer(number_integer_t v) override { return Put(v); }
  bool number_unsigned(number_unsigned_t v) override { return Put(v); }
  bool number_float(number_float_t, const string_t& text) override {
    std::optional<std::string> plain = PlainDecimal(text);
    if (!plain) {
      error_ = absl::StrCat("number ", text, " cannot be written as a decimal");
      return false;
    }
    return Put(*std::move(plain));
  }
  bool string(string_t& v) override { return Put(std::move(v)); }
  bool binary(binary_t& v) override { return Put(Json::binary(std::move(v))); }
  bool start_object(std::size_t) override { return Open(Json::object()); }
  bool key(string_t& k) override {
    key_ = std::move(k);
    return true;
  }
  bool end_object() override { return Close(); }
  bool start_array(std::size_t) override { return Open(Json::array()); }
  bool end_array() override { return Close(); }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) override {
    error_ = absl::StrCat("malformed JSON at byte ", position, ": ", e.what());
    return false;
  }

  Json& root() { return root_; }
  const std::string& error() const { return error_; }

 private:
  // Places `v` in the container being built (or as the root); returns it.
  Json* Place(Json v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    Json& top = *stack_.back();
    if (top.is_array()) {
      top.push_back(std::move(v));
      return &top.back();
    }
    Json& slot = top[key_];
    slot = std::move(v);
    return &slot;
  }
  bool Put(Json v) {
    Place(std::move(v));
    return true;
  }
  bool Open(Json container) {
    stack_.push_back(Place(std::move(container)));
    return true;
  }
  bool Close() {
    stack_.pop_back();
    return true;
  }

  Json root_;
  std::vector<Json*> stack_;  // pointers stay valid: a container is only appended to while it is on top
  std::string key_;
  std::string error_;
};

}  // namespace

std::optional<Json> ParseExactJson(absl::string_view text, std::string* error) {
  ExactBuilder b;
  bool ok = Json::sax_parse(text.begin(), text.end(), &b, Json::input_format_t::json, /*strict=*/true);
  if (!ok) {
    if (error != nullptr) *error = b.error().empty() ? "malformed JSON" : b.error();
    return std::nullopt;
  }
  return std::move(b.root());
}

std::optional<std::string> PlainDecimal(absl::string_view text) {
  bool negative = !text.empty() && text.front() == '-';
  if (negative) text.remove_prefix(1);
  size_t e = text.find_first_of("eE");
  absl::string_view mantissa = text.substr(0, e);
  int64_t exponent = 0;
  if (e != absl::string_view::npos) {
    absl::string_view exp = text.substr(e + 1);
    if (!exp.empty() && exp.front() == '+') exp.remove_prefix(1);
    if (!absl::SimpleAtoi(exp, &exponent) || exponent > 400 || exponent < -400) return std::nullopt;
  }
  size_t point = mantissa.find('.');
  std::string digits(mantissa.substr(0, point));
  if (point != absl::string_view::npos) absl::StrAppend(&digits, mantissa.substr(point + 1));
  if (digits.empty()) return std::nullopt;
  for (char c : digits) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
  }
  // The point sits after `whole` digits of `digits`.
  int64_t whole = static_cast<int64_t>(point == absl::string_view::npos ? mantissa.size() : point) + exponent;
  std::string out = negative ? "-" : "";
  if (whole <= 0) {
    absl::StrAppend(&out, "0.", std::string(static_cast<size_t>(-whole), '0'), digits);
  } else if (whole >= static_cast<int64_t>(digits.size())) {
    absl::StrAppend(&out, digits, std::string(static_cast<size_t>(whole) - digits.size(), '0'));
  } else {
    absl::StrAppend(&out, digits.substr(0, static_cast<size_t>(whole)), ".", digits.substr(static_cast<size_t>(whole)));
  }
  return out;
}

std::optional<std::string> NumberText(const Json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_number_unsigned()) return absl::StrCat(j.get<uint64_t>());
  if (j.is_number_integer()) return absl::StrCat(j.get<int64_t>());
  return std::nullopt;
}

}  // namespace marketprism::common
