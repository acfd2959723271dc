// File: tests/bench/direct_client.h
//
// The reference for latency benchmarks: a WebSocket client straight to the
// simulator, noting when each trade and depth diff arrives.
#pragma once

#include <map>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace marketprism::bench {

// Arrival times of records at a direct WebSocket client, keyed like the
// Subscribe side's: (symbol, "t" trade id) or (symbol, "u" last update id).
class DirectClient {
 public:
  using Key = std::pair<std::string, std::string>;
  void OnText(const std::string& text) {
    absl::Time at = absl::Now();
    nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (!j.is_object() || !j.contains("data")) return;
    const nlohmann::json& d = j["data"];
    if (!d.is_object() || !d.contains("s")) return;
    Key key;
    if (d.value("e", "") == "trade") {
      key = {d["s"].get<std::string>(), absl::StrCat("t", d["t"].get<int64_t>())};
    } else if (d.value("e", "") == "depthUpdate") {
      key = {d["s"].get<std::string>(), absl::StrCat("u", d["u"].get<int64_t>())};
    } else {
      return;
    }
    absl::MutexLock lock(&mu_);
    at_.emplace(std::move(key), at);
  }
  std::map<Key, absl::Time> arrivals() {
    absl::MutexLock lock(&mu_);
    return at_;
  }

 private:
  absl::Mutex mu_;
  std::map<Key, absl::Time> at_ ABSL_GUARDED_BY(mu_);
};


}  // namespace marketprism::bench
