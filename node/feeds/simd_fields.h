// File: node/feeds/simd_fields.h
//
// The feeds' hot path: simdjson's On-Demand parser reading one message in a
// single pass, beside json_fields.h's nlohmann reading of the same fields.
// A feed's fast path takes only a message it reads completely (every value
// visited and well-formed, nothing after the root, no field twice) and
// leaves everything else to its nlohmann path, so results and errors stay
// exactly that path's.
//
// Thread-compatible: each thread has its own parser and padded buffer; a
// document read with Iterate is valid until that thread's next Iterate.
#pragma once

#include <simdjson.h>  // with SIMDJSON_EXCEPTIONS=0 (node/CMakeLists.txt): every result is checked

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

#include "common/collect/book_sync.h"

namespace marketprism::node::simd {

namespace od = simdjson::ondemand;

// Starts reading `text` with the calling thread's parser, from a copy with
// SIMDJSON_PADDING bytes after it; false when simdjson refuses it at once.
bool Iterate(absl::string_view text, od::document* doc);

// Whether nothing follows the root value just read.
bool AtEnd(od::document& doc);

// Calls `f(key, value)` for each field of `o` in order; false when the object
// is malformed or `f` returns false. A key is read as it stands, without
// unescaping: one with an escape in it is left to the nlohmann path.
template <typename F>
bool ForEachField(od::object o, F&& f) {
  for (auto result : o) {
    od::field field;
    if (std::move(result).get(field) != simdjson::SUCCESS) return false;
    const char* key = field.key().raw();
    const char* end = key;
    for (; *end != '"'; ++end) {
      if (*end == '\\') return false;
    }
    if (!f(std::string_view(key, static_cast<size_t>(end - key)), field.value())) return false;
  }
  return true;
}

// The same for the object `v` holds; false when it holds none.
template <typename F>
bool ForEachField(od::value v, F&& f) {
  od::object o;
  return v.get_object().get(o) == simdjson::SUCCESS && ForEachField(o, std::forward<F>(f));
}

// Starts reading `text` into `*doc` (Iterate) and calls `f` for each field
// of its root object; false when it is none.
template <typename F>
bool ForEachRootField(absl::string_view text, od::document* doc, F&& f) {
  od::object o;
  return Iterate(text, doc) && doc->get_object().get(o) == simdjson::SUCCESS &&
         ForEachField(o, std::forward<F>(f));
}

// A field of interest seen twice makes a message one for the nlohmann path
// (which keeps the last): bit `bit` of `*seen` marks it.
inline bool FirstTime(uint32_t* seen, int bit) {
  uint32_t mask = 1u << bit;
  if (*seen & mask) return false;
  *seen |= mask;
  return true;
}

// Whether every bit in `bits` is set in `seen`.
inline bool AllSeen(uint32_t seen, std::initializer_list<int> bits) {
  for (int bit : bits) {
    if (!(seen & (1u << bit))) return false;
  }
  return true;
}

// Visits all of `v`: true when it is well-formed JSON that nlohmann (and
// common::ParseExactJson) would read too.
bool Skip(od::value v);

// A JSON integer within int64 (json_fields' and the Binance feed's Int).
bool Int(od::value v, int64_t* out);
// json_fields.h's IntField: an integer, or a string holding one.
bool IntOrText(od::value v, int64_t* out);
// A JSON string, unescaped.
bool Text(od::value v, std::string* out);
bool Bool(od::value v, bool* out);
// common::NumberText of the value as common::ParseExactJson keeps it: a
// string as it is, a number as its own text (without an exponent), never
// through a double.
bool NumberText(od::value v, std::string* out);
// [["price", "quantity", ...], ...]: the first two of each level strings;
// appends them to `out`.
bool Levels(od::value v, std::vector<common::PriceLevel>* out);

}  // namespace marketprism::node::simd
