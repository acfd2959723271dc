#include "common/net/curl_http_client.h"

#include <curl/curl.h>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace marketprism::common {

namespace {

constexpr char kDeliveryPayload[] = "type.marketprism.dev/delivery";

struct GlobalInit {
  GlobalInit() { curl_global_init(CURL_GLOBAL_DEFAULT); }
};

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* headers = static_cast<HttpHeaders*>(user);
  absl::string_view line(data, size * n);
  if (absl::StartsWith(line, "HTTP/")) {
    headers->clear();  // a new response (after 100-continue or a redirect)
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon == absl::string_view::npos) return size * n;
  absl::string_view name = line.substr(0, colon);
  absl::string_view value = absl::StripAsciiWhitespace(line.substr(colon + 1));
  headers->emplace_back(std::string(name), std::string(value));
  return size * n;
}

absl::Status FromCurl(CURLcode code, const char* detail, bool delivered) {
  std::string msg = absl::StrCat(curl_easy_strerror(code), detail[0] ? ": " : "", detail);
  absl::Status st;
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      st = absl::DeadlineExceededError(msg);
      break;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      st = absl::InvalidArgumentError(msg);
      break;
    case CURLE_INTERFACE_FAILED:
      st = absl::FailedPreconditionError(msg);
      break;
    default:
      st = absl::UnavailableError(msg);
      break;
  }
  return delivered ? st : NotDelivered(st);
}

}  // namespace

const std::string* HttpReply::Header(absl::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (absl::EqualsIgnoreCase(k, name)) return &v;
  }
  return nullptr;
}

bool MaybeDelivered(const absl::Status& status) {
  return !status.GetPayload(kDeliveryPayload).has_value();
}

absl::Status NotDelivered(absl::Status status) {
  status.SetPayload(kDeliveryPayload, absl::Cord("not-delivered"));
  return status;
}

std::string UrlEncode(absl::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string BuildUrl(absl::string_view base, absl::string_view path,
                     const std::vector<std::pair<std::string, std::string>>& query) {
  std::string url(absl::StripSuffix(base, "/"));
  absl::StrAppend(&url, path);
  char sep = '?';
  for (const auto& [k, v] : query) {
    url.push_back(sep);
    sep = '&';
    absl::StrAppend(&url, UrlEncode(k), "=", UrlEncode(v));
  }
  return url;
}

CurlHttpClient::CurlHttpClient(CurlHttpOptions options) : options_(std::move(options)) {
  static GlobalInit init;
}

CurlHttpClient::~CurlHttpClient() {
  absl::MutexLock lock(&mu_);
  for (void* h : idle_) curl_easy_cleanup(static_cast<CURL*>(h));
}

void* CurlHttpClient::Borrow() {
  {
    absl::MutexLock lock(&mu_);
    if (!idle_.empty()) {
      void* h = idle_.back();
      idle_.pop_back();
      return h;
    }
  }
  return curl_easy_init();
}

void CurlHttpClient::Return(void* handle) {
  absl::MutexLock lock(&mu_);
  if (static_cast<int>(idle_.size()) < options_.max_idle_handles) {
    idle_.push_back(handle);
  } else {
    curl_easy_cleanup(static_cast<CURL*>(handle));
  }
}

absl::StatusOr<HttpReply> CurlHttpClient::Send(const HttpRequestSpec& request) {
  CURL* curl = static_cast<CURL*>(Borrow());
  if (curl == nullptr) return NotDelivered(absl::ResourceExhaustedError("curl_easy_init failed"));
  // Keep the connection cache, drop the previous request's options.
  curl_easy_reset(curl);
  HttpReply reply;
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!options_.ca_bundle.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, options_.ca_bundle.c_str());
  if (!options_.source_ip.empty()) {
    curl_easy_setopt(curl, CURLOPT_INTERFACE, options_.source_ip.c_str());
  }
  // Only an explicit proxy; "" also stops libcurl reading the environment.
  curl_easy_setopt(curl, CURLOPT_PROXY, options_.proxy.c_str());
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(options_.connect_timeout)));
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(std::max<int64_t>(1, absl::ToInt64Milliseconds(request.timeout))));
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &OnBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &reply.body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &OnHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &reply.headers);
  curl_slist* headers = nullptr;
  for (const auto& [k, v] : request.headers) {
    headers = curl_slist_append(headers, absl::StrCat(k, ": ", v).c_str());
  }
  if (headers != nullptr) curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  if (request.method == "GET") {
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    if (!request.body.empty() || request.method == "POST") {
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.body.c_str());
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(request.body.size()));
    }
  }
  CURLcode code = curl_easy_perform(curl);
  long status = 0;
  long request_size = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(curl, CURLINFO_REQUEST_SIZE, &request_size);
  curl_slist_free_all(headers);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, nullptr);
  Return(curl);
  if (code != CURLE_OK) return FromCurl(code, errbuf, request_size > 0);
  reply.status = static_cast<int>(status);
  return reply;
}

}  // namespace marketprism::common
