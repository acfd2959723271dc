// File: node/feeds/json_fields.h
//
// Reading one field of an exchange's JSON message, for the feeds: each says
// whether the field is there with the type wanted, so that the feed can name
// what is missing.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"

namespace marketprism::node {

// An integer, or a string holding one (OKX writes its ids as strings).
inline bool IntField(const nlohmann::json& j, const char* field, int64_t* out) {
  if (!j.contains(field)) return false;
  if (j[field].is_number_integer()) {
    *out = j[field].get<int64_t>();
    return true;
  }
  return j[field].is_string() && absl::SimpleAtoi(j[field].get<std::string>(), out);
}

inline bool TextField(const nlohmann::json& j, const char* field, std::string* out) {
  if (!j.contains(field) || !j[field].is_string()) return false;
  *out = j[field].get<std::string>();
  return true;
}

// The text fields named into their outputs, in order; false at the first
// that is missing or not a string.
inline bool TextFields(const nlohmann::json& j,
                       std::initializer_list<std::pair<const char*, std::string*>> fields) {
  for (const auto& [name, out] : fields) {
    if (!TextField(j, name, out)) return false;
  }
  return true;
}

}  // namespace marketprism::node
