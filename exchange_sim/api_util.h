// File: exchange_sim/api_util.h
//
// Small helpers the simulator's REST handlers share: query parameters,
// interval names and time alignment.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "exchange_sim/simulator.h"
#include <nlohmann/json.hpp>

namespace marketprism::sim {

// Every JSON the simulator sends is dumped with this: strings that came from
// a client (query values, stream names) may hold invalid UTF-8, which
// nlohmann would otherwise throw on.
inline constexpr auto kDumpReplacingBadUtf8 = nlohmann::json::error_handler_t::replace;

inline const std::string* Param(const HttpRequest& req, absl::string_view key) {
  for (const auto& [k, v] : req.query) {
    if (k == key) return &v;
  }
  return nullptr;
}

// The integer parameter `key`: its value, `fallback` when absent, or nullopt
// when present but not an integer.
inline std::optional<int64_t> IntParam(const HttpRequest& req, absl::string_view key,
                                       int64_t fallback) {
  const std::string* raw = Param(req, key);
  if (raw == nullptr) return fallback;
  int64_t v = 0;
  if (!absl::SimpleAtoi(*raw, &v)) return std::nullopt;
  return v;
}

inline int64_t FloorTo(int64_t ms, int64_t step) {
  int64_t q = ms / step;
  if (ms % step != 0 && ms < 0) --q;
  return q * step;
}

}  // namespace marketprism::sim
