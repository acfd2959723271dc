#include <map>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "node/node_options.h"
#include "node/proxy.h"
#include "tests/testing/status_matchers.h"

namespace marketprism::node {
namespace {

using ::marketprism::testing::StatusIs;
using ::testing::HasSubstr;

GetEnv EnvOf(std::map<std::string, std::string> env) {
  auto m = std::make_shared<std::map<std::string, std::string>>(std::move(env));
  return [m](const char* name) -> const char* {
    auto it = m->find(name);
    return it == m->end() ? nullptr : it->second.c_str();
  };
}

absl::Status ParseError(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
  std::string help;
  return ParseNodeOptions(args, &help, EnvOf(std::move(env))).status();
}

TEST(NodeOptionsTest, TheRequiredFlags) {
  std::string help;
  auto o = ParseNodeOptions({"--egress-ip", "127.0.0.11", "--coordinator", "127.0.0.1:7000",
                             "--exchange-url", "binance_spot=http://127.0.0.1:8400"},
                            &help, EnvOf({}));
  ASSERT_TRUE(o.ok()) << o.status();
  ASSERT_TRUE(o->has_value());
  const NodeOptions& options = (*o)->options;
  EXPECT_EQ(options.node_id, "node-127.0.0.11");
  ASSERT_EQ(options.coordinators.size(), 1u);
  EXPECT_EQ(options.coordinators[0].port, 7000);
  EXPECT_EQ(options.exchange_urls.at("binance_spot"), "http://127.0.0.1:8400");
  EXPECT_FALSE(options.trace_ledger);
  EXPECT_NE((*o)->rules.Find("binance_spot"), nullptr) << "the rules come with the options";
}

TEST(NodeOptionsTest, SinksAndTheirSpool) {
  std::string help;
  auto o = ParseNodeOptions({"--egress-ip", "127.0.0.11", "--coordinator", "c:7000", "--sink",
                             "clickhouse=http://127.0.0.1:8123/?database=md", "--sink", "jsonl=/tmp/x",
                             "--spool-max-mb", "0.5", "--spool-dir", "/tmp/spool"},
                            &help, EnvOf({}));
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ((*o)->options.sinks.size(), 2u);
  EXPECT_EQ((*o)->options.spool_max_bytes, 512 * 1024);
  EXPECT_EQ((*o)->options.spool_dir, "/tmp/spool");
  EXPECT_THAT(ParseError({"--egress-ip", "127.0.0.11", "--coordinator", "c:7000", "--sink",
                          "clickhouse=http://h:8123/?databse=md"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("databse")));
  EXPECT_THAT(ParseError({"--egress-ip", "127.0.0.11", "--coordinator", "c:7000", "--sink", "kafka=k:9092"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("kafka")));
  EXPECT_THAT(ParseError({"--egress-ip", "127.0.0.11", "--coordinator", "c:7000", "--spool-max-mb", "0"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--spool-max-mb")));
}

TEST(NodeOptionsTest, FromTheEnvironment) {
  std::string help;
  auto o = ParseNodeOptions({}, &help,
                            EnvOf({{"MP_EGRESS_IP", "10.0.0.5"}, {"MP_COORDINATOR", "c:7000"},
                                   {"MP_EXCHANGE_URL", "okx=http://a,deribit=https://b"}}));
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ((*o)->options.egress_ip, "10.0.0.5");
  EXPECT_EQ((*o)->options.exchange_urls.size(), 2u);
}

TEST(NodeOptionsTest, TheEnvironmentIsReadAtParseOnly) {
  std::string help;
  auto o = ParseNodeOptions({"--egress-ip", "10.0.0.5", "--coordinator", "c:7000", "--limit",
                             "binance_spot.REQUEST_WEIGHT=7"},
                            &help,
                            EnvOf({{"MP_TRACE_LEDGER", "1"}, {"https_proxy", "http://lower:1"},
                                   {"NO_PROXY", "localhost"}}));
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE((*o)->options.trace_ledger) << "MP_TRACE_LEDGER=1 still turns the trace on";
  EXPECT_EQ((*o)->options.proxy_env.https_proxy, "http://lower:1");
  EXPECT_EQ((*o)->options.proxy_env.no_proxy, "localhost");
  EXPECT_EQ((*o)->options.proxy_env.http_proxy, "");
  const common::ExchangeRules* binance = (*o)->rules.Find("binance_spot");
  ASSERT_NE(binance, nullptr);
  EXPECT_EQ(binance->pools()[binance->PoolIndex("REQUEST_WEIGHT")].capacity, 7) << "--limit applied once, here";
}

TEST(NodeOptionsTest, BadSettingsAreNamed) {
  const std::vector<std::string> base = {"--egress-ip", "127.0.0.11", "--coordinator", "127.0.0.1:7000"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = base;
    a.insert(a.end(), extra.begin(), extra.end());
    return ParseError(a);
  };
  EXPECT_THAT(ParseError({"--coordinator", "c:1"}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--egress-ip is required")));
  EXPECT_THAT(ParseError({"--egress-ip", "300.1.1.1", "--coordinator", "c:1"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--egress-ip \"300.1.1.1\": not an IP address")));
  EXPECT_THAT(ParseError({"--egress-ip", "127.0.0.11"}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--coordinator is required")));
  EXPECT_THAT(ParseError({"--egress-ip", "127.0.0.11", "--gossip", "0.0.0.0:7946"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not 0.0.0.0")));
  EXPECT_THAT(ParseError({"--egress-ip", "127.0.0.11", "--coordinator", "c:1", "--join", "127.0.0.1:7946"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--join needs --gossip")));
  EXPECT_THAT(ParseError({"--egress-ip", "127.0.0.11", "--gossip", "127.0.0.11:0", "--join", "127.0.0.1"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--join \"127.0.0.1\"")));
  EXPECT_THAT(ParseError({"--egress-ip", "127.0.0.11", "--gossip", "127.0.0.11:0", "--gossip-key-file", "/nonexistent/k"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--gossip-key-file")));
  EXPECT_THAT(with({"--exchange-url", "kraken=http://x"}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown exchange \"kraken\"")));
  EXPECT_THAT(with({"--exchange-url", "okx=ftp://x"}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must start with http:// or https://")));
  EXPECT_THAT(with({"--exchange-url", "okx"}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected EXCHANGE=VALUE")));
  EXPECT_THAT(with({"--ws-url", "okx=http://x"}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ws:// or wss://")));
  EXPECT_THAT(with({"--proxy", "proxy:8080"}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--proxy \"proxy:8080\"")));
  EXPECT_THAT(with({"--exchange-proxy", "okx=ftp://p"}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--exchange-proxy okx")));
  EXPECT_THAT(with({"--workers", "0"}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--workers")));
  EXPECT_THAT(with({"--report-interval", "0s"}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--report-interval must be positive")));
  EXPECT_THAT(with({"--limit", "okx.NOPE=1"}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown pool \"NOPE\"")));
  EXPECT_THAT(with({"--exchange", "kraken"}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--exchange \"kraken\"")));
  EXPECT_THAT(with({"--listen", "nowhere"}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--listen \"nowhere\"")));
  EXPECT_THAT(ParseError(base, {{"MP_WORKERS", "many"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("environment MP_WORKERS")));
}

TEST(ProxyTest, ExchangeThenNodeThenEnvironment) {
  ProxyEnvironment env =
      ProxyEnvironment::From(EnvOf({{"HTTPS_PROXY", "http://env-https:1"}, {"HTTP_PROXY", "http://env-http:1"},
                                    {"ALL_PROXY", "socks5h://env-all:1"}, {"NO_PROXY", "localhost,.internal"}}));
  EXPECT_EQ(ResolveProxy("socks5h://ex:1", "http://node:1", "https://api.binance.com", env), "socks5h://ex:1");
  EXPECT_EQ(ResolveProxy("", "http://node:1", "https://api.binance.com", env), "http://node:1");
  EXPECT_EQ(ResolveProxy("", "", "https://api.binance.com", env), "http://env-https:1");
  EXPECT_EQ(ResolveProxy("", "", "http://api.binance.com", env), "http://env-http:1");
  EXPECT_EQ(ResolveProxy("", "", "https://sim.internal:8400", env), "") << "NO_PROXY suffix";
  EXPECT_EQ(ResolveProxy("", "", "http://localhost:8400/x", env), "");
  EXPECT_EQ(ResolveProxy("socks5h://ex:1", "", "http://localhost:8400/x", env), "socks5h://ex:1")
      << "NO_PROXY does not override our own configuration";
  ProxyEnvironment only_all = ProxyEnvironment::From(EnvOf({{"all_proxy", "socks5://a:1"}}));
  EXPECT_EQ(ResolveProxy("", "", "https://www.okx.com", only_all), "socks5://a:1");
  EXPECT_EQ(ResolveProxy("", "", "https://www.okx.com", ProxyEnvironment{}), "");
  ProxyEnvironment empty_upper = ProxyEnvironment::From(EnvOf({{"HTTP_PROXY", ""}, {"http_proxy", "http://l:1"}}));
  EXPECT_EQ(empty_upper.http_proxy, "http://l:1") << "an empty upper-case variable counts as unset";
}

TEST(ProxyTest, NoProxyMatching) {
  EXPECT_TRUE(NoProxyMatches("*", "anything"));
  EXPECT_TRUE(NoProxyMatches("example.com", "api.example.com"));
  EXPECT_TRUE(NoProxyMatches(" .example.com ,x", "EXAMPLE.com"));
  EXPECT_FALSE(NoProxyMatches("example.com", "notexample.com"));
  EXPECT_FALSE(NoProxyMatches("", "a"));
}

}  // namespace
}  // namespace marketprism::node
