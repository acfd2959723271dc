// File: common/net/http_client.h
//
// The HTTP transport interface nodes (and tests, and benchmarks) send
// exchange requests through. The real one is CurlHttpClient
// (curl_http_client.h); unit tests use fakes.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace marketprism::common {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpRequestSpec {
  std::string method = "GET";
  std::string url;           // full URL including the query string
  HttpHeaders headers;
  std::string body;
  absl::Duration timeout = absl::Seconds(10);
};

struct HttpReply {
  int status = 0;
  HttpHeaders headers;       // in arrival order; names as the server wrote them
  std::string body;

  // The first header named `name` (case-insensitive), or nullptr.
  const std::string* Header(absl::string_view name) const;
};

// Sends one request. Thread-safe: many threads may call Send concurrently.
class HttpClient {
 public:
  virtual ~HttpClient() = default;

  // An HTTP reply of any status is OK (a 429 is a reply, not an error).
  // Errors: kUnavailable (could not connect, connection lost, TLS failure),
  // kDeadlineExceeded (timeout), kInvalidArgument (malformed URL),
  // kFailedPrecondition (cannot bind the source address). Whether the request
  // may have reached the server is carried on the status; see MaybeDelivered.
  virtual absl::StatusOr<HttpReply> Send(const HttpRequestSpec& request) = 0;
};

// For a failed Send: false only when the request certainly did not reach the
// server (nothing was written), so its cost can be refunded.
bool MaybeDelivered(const absl::Status& status);
// Marks a status as "nothing was sent".
absl::Status NotDelivered(absl::Status status);

// Builds "base + path + ?k=v&..." with the values URL-encoded.
std::string BuildUrl(absl::string_view base, absl::string_view path,
                     const std::vector<std::pair<std::string, std::string>>& query);
std::string UrlEncode(absl::string_view s);

}  // namespace marketprism::common
