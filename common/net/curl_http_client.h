// File: common/net/curl_http_client.h
//
// HttpClient over libcurl. Every request leaves from `source_ip` when set
// (CURLOPT_INTERFACE), which is how a node owns its egress IP. Connections are
// reused: the client keeps a pool of easy handles, each with its own
// connection cache, and a request borrows one for its duration (a handle is
// never used by two threads at once; CURLOPT_NOSIGNAL is set). TLS is always
// verified; the CA bundle is configurable. An explicit proxy (HTTP, HTTPS or
// SOCKS5) may be given; with none, no proxy is used (callers resolve the
// environment's proxy variables themselves, see node/proxy.h).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/net/http_client.h"

namespace marketprism::common {

struct CurlHttpOptions {
  std::string source_ip;         // bind outgoing connections here ("" = any)
  std::string proxy;             // "http://h:p", "https://h:p", "socks5h://h:p" or ""
  std::string ca_bundle;         // PEM file; "" = the system default
  absl::Duration connect_timeout = absl::Seconds(5);
  int max_idle_handles = 64;     // handles kept for reuse
};

class CurlHttpClient final : public HttpClient {
 public:
  explicit CurlHttpClient(CurlHttpOptions options);
  ~CurlHttpClient() override;

  absl::StatusOr<HttpReply> Send(const HttpRequestSpec& request) override;

  const CurlHttpOptions& options() const { return options_; }

 private:
  void* Borrow();
  void Return(void* handle);

  const CurlHttpOptions options_;
  absl::Mutex mu_;
  std::vector<void*> idle_ ABSL_GUARDED_BY(mu_);
};

}  // namespace marketprism::common
