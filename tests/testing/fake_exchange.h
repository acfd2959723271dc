// File: tests/testing/fake_exchange.h
//
// The exchange for the in-process mini-cluster: an HttpClient factory whose
// clients answer Binance spot's public calls (server time from the injected
// clock, ping, and any other path with 200 "{}"), counting every request by
// the egress IP it left from. No socket. Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "node/http_client_factory.h"

namespace marketprism::testing {

class FakeExchange {
 public:
  // `clock` must outlive this object and every client it hands out.
  explicit FakeExchange(common::Clock& clock) : clock_(clock) {}

  node::HttpClientFactory Factory();
  // Requests that reached the exchange from `source_ip` for `path`
  // ("" for every path).
  int64_t Requests(const std::string& source_ip, const std::string& path = "") ABSL_LOCKS_EXCLUDED(mu_);

 private:
  class Client;
  common::HttpReply Answer(const std::string& source_ip, const common::HttpRequestSpec& request)
      ABSL_LOCKS_EXCLUDED(mu_);

  common::Clock& clock_;
  absl::Mutex mu_;
  std::map<std::pair<std::string, std::string>, int64_t> requests_ ABSL_GUARDED_BY(mu_);  // (ip, path)
};

}  // namespace marketprism::testing
