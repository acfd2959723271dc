#include "node/feeds/simd_fields.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"

#include "common/collect/exact_json.h"

namespace marketprism::node::simd {

namespace {

// The calling thread's parser and the padded buffer it reads from. A
// WebSocket message arrives as a std::string whose spare capacity is not
// known, so it is copied: measured 4-6 ns for a 190-byte trade against
// parsing it in place from a string with the capacity (72 ns for the
// parse and one field), about 1% of the feed's whole parse of it.
struct ThreadParser {
  od::parser parser;
  std::unique_ptr<char[]> buffer;
  size_t capacity = 0;
};

ThreadParser& Local() {
  thread_local ThreadParser p;
  return p;
}

absl::string_view TrimRight(std::string_view token) {
  while (!token.empty() && absl::ascii_isspace(static_cast<unsigned char>(token.back()))) {
    token.remove_suffix(1);
  }
  return absl::string_view(token.data(), token.size());
}

bool IsIntegerToken(absl::string_view token) {
  return token.find_first_of(".eE") == absl::string_view::npos;
}

// JSON's integer grammar: -?(0|[1-9][0-9]*), of any length.
bool IsJsonInteger(absl::string_view token) {
  if (!token.empty() && token.front() == '-') token.remove_prefix(1);
  if (token.empty() || (token.front() == '0' && token.size() > 1)) return false;
  for (char c : token) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

bool Iterate(absl::string_view text, od::document* doc) {
  ThreadParser& p = Local();
  size_t need = text.size() + simdjson::SIMDJSON_PADDING;
  if (p.capacity < need) {
    p.capacity = std::max(need, 2 * p.capacity);
    p.buffer = std::make_unique<char[]>(p.capacity);
  }
  std::memcpy(p.buffer.get(), text.data(), text.size());
  std::memset(p.buffer.get() + text.size(), 0, simdjson::SIMDJSON_PADDING);
  return p.parser.iterate(simdjson::padded_string_view(p.buffer.get(), text.size(), p.capacity))
             .get(*doc) == simdjson::SUCCESS;
}

bool AtEnd(od::document& doc) { return doc.current_location().error() == simdjson::OUT_OF_BOUNDS; }

bool Skip(od::value v) {
  od::json_type type;
  if (v.type().get(type) != simdjson::SUCCESS) return false;
  switch (type) {
    case od::json_type::object:
      return ForEachField(v, [](std::string_view, od::value x) { return Skip(x); });
    case od::json_type::array: {
      od::array a;
      if (v.get_array().get(a) != simdjson::SUCCESS) return false;
      for (auto e : a) {
        od::value x;
        if (e.get(x) != simdjson::SUCCESS || !Skip(x)) return false;
      }
      return true;
    }
    case od::json_type::number: {
      // The exact parser refuses what it cannot write as a decimal.
      std::string text;
      return NumberText(v, &text);
    }
    case od::json_type::string:
      return v.get_string().error() == simdjson::SUCCESS;
    case od::json_type::boolean:
      return v.get_bool().error() == simdjson::SUCCESS;
    case od::json_type::null: {
      bool null = false;
      return v.is_null().get(null) == simdjson::SUCCESS && null;
    }
  }
  return false;
}

// simdjson reads no fraction or exponent as an int64: "1.0" is not one.
bool Int(od::value v, int64_t* out) { return v.get_int64().get(*out) == simdjson::SUCCESS; }

bool IntOrText(od::value v, int64_t* out) {
  od::json_type type;
  if (v.type().get(type) != simdjson::SUCCESS) return false;
  if (type == od::json_type::number) return Int(v, out);
  std::string_view s;
  return type == od::json_type::string && v.get_string().get(s) == simdjson::SUCCESS &&
         absl::SimpleAtoi(absl::string_view(s.data(), s.size()), out);
}

bool Text(od::value v, std::string* out) {
  std::string_view s;
  if (v.get_string().get(s) != simdjson::SUCCESS) return false;
  out->assign(s.data(), s.size());
  return true;
}

bool Bool(od::value v, bool* out) { return v.get_bool().get(*out) == simdjson::SUCCESS; }

bool NumberText(od::value v, std::string* out) {
  od::json_type type;
  if (v.type().get(type) != simdjson::SUCCESS) return false;
  if (type == od::json_type::string) return Text(v, out);
  if (type != od::json_type::number) return false;
  absl::string_view token = TrimRight(v.raw_json_token());
  if (!IsIntegerToken(token)) {
    // ParseExactJson keeps a fraction or an exponent as its plain decimal.
    std::optional<std::string> plain = common::PlainDecimal(token);
    if (!plain || v.get_number().error() != simdjson::SUCCESS) return false;
    *out = *std::move(plain);
    return true;
  }
  // An integer's digits are its text, beyond uint64 too (nlohmann reads it
  // as a float then, which the exact parser keeps as text); "-0" reads as 0.
  if (!IsJsonInteger(token)) return false;
  if (token == "-0") token = "0";
  out->assign(token.data(), token.size());
  return true;
}

bool Levels(od::value v, std::vector<common::PriceLevel>* out) {
  od::array levels;
  if (v.get_array().get(levels) != simdjson::SUCCESS) return false;
  out->reserve(out->size() + 16);  // a diff's usual count: no regrowing on the way
  for (auto level : levels) {
    od::array fields;
    if (level.get_array().get(fields) != simdjson::SUCCESS) return false;
    common::PriceLevel& l = out->emplace_back();
    int i = 0;
    for (auto field : fields) {
      od::value x;
      if (field.get(x) != simdjson::SUCCESS) return false;
      if (!(i == 0 ? Text(x, &l.price) : i == 1 ? Text(x, &l.quantity) : Skip(x))) return false;
      ++i;
    }
    if (i < 2) return false;
  }
  return true;
}

}  // namespace marketprism::node::simd
