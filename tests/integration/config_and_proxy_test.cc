// Bad configuration exits non-zero naming the setting; the HTTP client goes
// through HTTP and SOCKS5 proxies from its bound source address.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "common/net/curl_http_client.h"
#include "tests/testing/subprocess.h"

namespace marketprism::testing {
namespace {

using ::testing::HasSubstr;

std::pair<int, std::string> RunBinary(std::vector<std::string> argv, std::vector<std::string> env = {}) {
  if (!env.empty()) {
    std::vector<std::string> with = {"/usr/bin/env"};
    with.insert(with.end(), env.begin(), env.end());
    with.insert(with.end(), argv.begin(), argv.end());
    argv = with;
  }
  auto p = Subprocess::Start(argv);
  if (!p.ok()) return {-1, ""};
  auto code = (*p)->Wait(absl::Seconds(10));
  return {code.ok() ? *code : -1, (*p)->Output()};
}

TEST(ConfigTest, BadSettingsExitNonZeroNamingThem) {
  const std::string node = BinDir() + "/mp-node", coord = BinDir() + "/mp-coordinator",
                    sim = BinDir() + "/mp-exchange-sim";
  struct Case {
    std::vector<std::string> argv;
    std::vector<std::string> env;
    std::string expect;
  };
  std::string config = ::testing::TempDir() + "/node.json";
  std::ofstream(config) << R"({"egress-ip": "127.0.0.11", "coordinator": "127.0.0.1:7000", "wokers": 4})";
  const std::vector<Case> cases = {
      {{node}, {}, "--egress-ip is required"},
      {{node, "--egress-ip", "not-an-ip", "--coordinator", "x:1"}, {}, "--egress-ip \"not-an-ip\": not an IP address"},
      {{node, "--egress-ip", "127.0.0.11", "--coordinator", "127.0.0.1:7000", "--exchange-url", "nasdaq=http://x"}, {}, "unknown exchange \"nasdaq\""},
      {{node, "--config", config}, {}, "key \"wokers\": no such setting"},
      {{node, "--egress-ip", "127.0.0.11", "--coordinator", "127.0.0.1:7000"}, {"MP_WORKERS=lots"}, "environment MP_WORKERS"},
      {{node, "--frobnicate"}, {}, "unknown flag --frobnicate"},
      {{coord, "--listen", "nowhere"}, {}, "--listen \"nowhere\""},
      {{coord, "--health-ip-availability", "1.5"}, {}, "--health-ip-availability must be within [0, 1]"},
      {{coord, "--limit", "okx.market/books=zero"}, {}, "capacity \"zero\" is not an integer"},
      {{sim, "--limit", "binance_spot.NOPE=1"}, {}, "unknown pool \"NOPE\""},
      {{sim, "--ban-schedule", "2m,soon"}, {}, "\"soon\" is not a duration"},
      {{sim, "--rules", "/nonexistent/rules.json"}, {}, "/nonexistent/rules.json"},
  };
  for (const Case& c : cases) {
    auto [code, out] = RunBinary(c.argv, c.env);
    EXPECT_EQ(code, 2) << out;
    EXPECT_THAT(out, HasSubstr(c.expect)) << c.argv[0];
  }
  auto [code, out] = RunBinary({node, "--help"});
  EXPECT_EQ(code, 0);
  EXPECT_THAT(out, HasSubstr("--egress-ip VALUE"));
}

TEST(ConfigTest, AMalformedRulesFileIsRefusedWithItsPath) {
  std::string rules = ::testing::TempDir() + "/bad_rules.json";
  std::ofstream(rules) << R"({"schema_version": 1, "sources": {}, "exchanges": {"x": {"family": "nyse"}}})";
  auto [code, out] = RunBinary({BinDir() + "/mp-coordinator", "--rules", rules});
  EXPECT_EQ(code, 2);
  EXPECT_THAT(out, HasSubstr(rules + ": exchanges.x.family: must be binance, okx or deribit"));
}

// A one-connection fake proxy: records what it receives and answers with a
// fixed HTTP reply. For SOCKS5 it first performs the handshake.
class FakeProxy {
 public:
  explicit FakeProxy(bool socks5) : socks5_(socks5) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    socklen_t len = sizeof(a);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    listen(fd_, 1);
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeProxy() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  int port() const { return port_; }
  std::string received;
  std::string peer;
  std::string socks_target;

 private:
  void Serve() {
    sockaddr_in from{};
    socklen_t len = sizeof(from);
    int c = accept(fd_, reinterpret_cast<sockaddr*>(&from), &len);
    if (c < 0) return;
    char ip[64];
    inet_ntop(AF_INET, &from.sin_addr, ip, sizeof(ip));
    peer = ip;
    unsigned char buf[4096];
    if (socks5_) {
      ssize_t n = read(c, buf, sizeof(buf));  // 05 nmethods methods...
      if (n < 3) return close(c), void();
      const unsigned char ok[] = {5, 0};
      (void)!write(c, ok, 2);
      n = read(c, buf, sizeof(buf));  // 05 01 00 03 len host port
      if (n < 7) return close(c), void();
      socks_target = std::string(reinterpret_cast<char*>(buf + 5), buf[4]);
      const unsigned char granted[] = {5, 0, 0, 1, 0, 0, 0, 0, 0, 0};
      (void)!write(c, granted, sizeof(granted));
    }
    while (received.find("\r\n\r\n") == std::string::npos) {
      ssize_t n = read(c, buf, sizeof(buf));
      if (n <= 0) break;
      received.append(reinterpret_cast<char*>(buf), static_cast<size_t>(n));
    }
    const char reply[] = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nproxied";
    (void)!write(c, reply, sizeof(reply) - 1);
    close(c);
  }
  bool socks5_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

TEST(ProxyTest, HttpProxyFromTheEgressIp) {
  FakeProxy proxy(/*socks5=*/false);
  common::CurlHttpClient http(common::CurlHttpOptions{
      .source_ip = "127.0.0.41", .proxy = absl::StrCat("http://127.0.0.1:", proxy.port())});
  common::HttpRequestSpec req;
  req.url = "http://api.exchange.invalid/api/v3/ping";
  auto r = http.Send(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "proxied");
  EXPECT_THAT(proxy.received, HasSubstr("GET http://api.exchange.invalid/api/v3/ping HTTP/1.1"));
  EXPECT_EQ(proxy.peer, "127.0.0.41");
}

TEST(ProxyTest, Socks5hProxyResolvesTheHostItself) {
  FakeProxy proxy(/*socks5=*/true);
  common::CurlHttpClient http(common::CurlHttpOptions{
      .source_ip = "127.0.0.42", .proxy = absl::StrCat("socks5h://127.0.0.1:", proxy.port())});
  common::HttpRequestSpec req;
  req.url = "http://www.exchange.invalid/api/v5/public/time";
  auto r = http.Send(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "proxied");
  EXPECT_EQ(proxy.socks_target, "www.exchange.invalid");
  EXPECT_THAT(proxy.received, HasSubstr("GET /api/v5/public/time HTTP/1.1"));
  EXPECT_EQ(proxy.peer, "127.0.0.42");
}

TEST(ProxyTest, NothingSentWhenTheSourceCannotBeBound) {
  common::CurlHttpClient http(common::CurlHttpOptions{.source_ip = "192.0.2.77"});
  common::HttpRequestSpec req;
  req.url = "http://127.0.0.1:9/";
  auto r = http.Send(req);
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(common::MaybeDelivered(r.status())) << r.status();
}

}  // namespace
}  // namespace marketprism::testing
