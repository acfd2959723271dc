// File: common/collect/exact_json.h
//
// JSON parsed so that no number loses its text. Exchanges that send prices
// and amounts as JSON numbers (Deribit) must not have them pass through a
// double: every number with a fraction or an exponent is kept as a string
// holding its plain decimal text ("1.5e-3" becomes "0.0015", which is the
// same value written out); integers stay integers (they are exact).
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/strings/string_view.h"

namespace marketprism::common {

// The document, or nullopt with *error naming where it is malformed.
std::optional<nlohmann::json> ParseExactJson(absl::string_view text, std::string* error);

// A JSON number's text written without an exponent ("-2.5E+2" -> "-250"),
// or nullopt when `text` is not a JSON number.
std::optional<std::string> PlainDecimal(absl::string_view text);

// The decimal text of `j`: a kept number string, or an integer; nullopt for
// anything else.
std::optional<std::string> NumberText(const nlohmann::json& j);

}  // namespace marketprism::common
