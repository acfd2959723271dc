// File: node/fake_http_client.h
//
// Test-only: an HttpClient that answers each Send with the next scripted
// reply (200 "{}" once the script runs out) and records every request.
// Thread-safe, so a lane may send from worker threads while the test reads.
#pragma once

#include <deque>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/net/http_client.h"

namespace marketprism::node {

class FakeHttpClient : public common::HttpClient {
 public:
  using Script = std::function<absl::StatusOr<common::HttpReply>(const common::HttpRequestSpec&)>;

  absl::StatusOr<common::HttpReply> Send(const common::HttpRequestSpec& request) override {
    Script s;
    {
      absl::MutexLock lock(&mu_);
      sent_.push_back(request);
      if (scripts_.empty()) return Reply(200, "{}");
      s = std::move(scripts_.front());
      scripts_.pop_front();
    }
    return s(request);  // outside the lock: a script may block (a request held in flight)
  }

  static common::HttpReply Reply(int status, std::string body, common::HttpHeaders headers = {}) {
    common::HttpReply r;
    r.status = status;
    r.body = std::move(body);
    r.headers = std::move(headers);
    return r;
  }

  // The answer to the next request not yet answered.
  void Then(absl::StatusOr<common::HttpReply> reply) {
    absl::MutexLock lock(&mu_);
    scripts_.push_back([reply](const common::HttpRequestSpec&) { return reply; });
  }

  // The next request not yet answered runs `script` (which may block).
  void ThenRun(Script script) {
    absl::MutexLock lock(&mu_);
    scripts_.push_back(std::move(script));
  }

  std::vector<common::HttpRequestSpec> sent() {
    absl::MutexLock lock(&mu_);
    return sent_;
  }

 private:
  absl::Mutex mu_;
  std::deque<Script> scripts_ ABSL_GUARDED_BY(mu_);
  std::vector<common::HttpRequestSpec> sent_ ABSL_GUARDED_BY(mu_);
};

}  // namespace marketprism::node
