// File: common/config.h
//
// Helpers for binaries' options: "EXCHANGE=VALUE" maps with validation, and
// IP literal checks. Errors name the setting and the problem.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/rules/rules.h"

namespace marketprism::common {

// Parses "EXCHANGE=VALUE" entries of setting `what` (e.g. "--exchange-url").
// Each exchange must be one `rules` knows; each value must start with one of
// `schemes` (when non-empty).
absl::StatusOr<std::map<std::string, std::string>> ParseExchangeMap(
    const std::vector<std::string>& entries, absl::string_view what, const RulesBook& rules,
    const std::vector<std::string>& schemes);

// True for an IPv4 or IPv6 literal.
bool IsIpLiteral(absl::string_view ip);

}  // namespace marketprism::common
