#include "tests/testing/fake_exchange.h"

#include "absl/strings/str_cat.h"

namespace marketprism::testing {

class FakeExchange::Client final : public common::HttpClient {
 public:
  Client(FakeExchange& exchange, std::string source_ip) : exchange_(exchange), source_ip_(std::move(source_ip)) {}
  absl::StatusOr<common::HttpReply> Send(const common::HttpRequestSpec& request) override {
    return exchange_.Answer(source_ip_, request);
  }

 private:
  FakeExchange& exchange_;
  const std::string source_ip_;
};

node::HttpClientFactory FakeExchange::Factory() {
  return [this](const node::HttpEndpoint& e) { return std::make_shared<Client>(*this, e.source_ip); };
}

common::HttpReply FakeExchange::Answer(const std::string& source_ip, const common::HttpRequestSpec& request) {
  // The path: after the scheme and host, before the query.
  std::string path = request.url;
  if (size_t scheme = path.find("://"); scheme != std::string::npos) {
    size_t slash = path.find('/', scheme + 3);
    path = slash == std::string::npos ? "/" : path.substr(slash);
  }
  if (size_t q = path.find('?'); q != std::string::npos) path.resize(q);
  {
    absl::MutexLock lock(&mu_);
    ++requests_[{source_ip, path}];
  }
  common::HttpReply r;
  r.status = 200;
  r.body = path == "/api/v3/time" ? absl::StrCat("{\"serverTime\":", absl::ToUnixMillis(clock_.Now()), "}") : "{}";
  return r;
}

int64_t FakeExchange::Requests(const std::string& source_ip, const std::string& path) {
  absl::MutexLock lock(&mu_);
  int64_t n = 0;
  for (const auto& [key, count] : requests_) {
    if (key.first == source_ip && (path.empty() || key.second == path)) n += count;
  }
  return n;
}

}  // namespace marketprism::testing
