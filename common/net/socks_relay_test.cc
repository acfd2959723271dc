#include "common/net/socks_relay.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace marketprism::common {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(SocksProxyTest, SplitsTheUrlAndDecodesTheLogin) {
  auto p = ParseSocksProxy("socks5h://us%40er:p%3Ass@proxy.example:1080/");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->remote_dns);
  EXPECT_EQ(p->host, "proxy.example");
  EXPECT_EQ(p->port, 1080);
  EXPECT_EQ(p->user, "us@er");
  EXPECT_EQ(p->password, "p:ss");
  auto local = ParseSocksProxy("socks5://10.0.0.1:9050");
  ASSERT_TRUE(local.ok());
  EXPECT_FALSE(local->remote_dns);
  EXPECT_TRUE(local->user.empty());
  EXPECT_TRUE(IsSocksProxy("socks5h://x:1"));
  EXPECT_FALSE(IsSocksProxy("socks4://x:1"));
  EXPECT_FALSE(IsSocksProxy("http://x:1"));
}

TEST(SocksProxyTest, BadUrlsAreRefusedNamingTheProblemButNotThePassword) {
  for (const char* url : {"socks5://host", "socks5://host:0", "socks5://host:70000", "socks5://:1080",
                          "socks5://:secret@host:1080", "http://host:1080"}) {
    auto p = ParseSocksProxy(url);
    ASSERT_FALSE(p.ok()) << url;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << url;
    EXPECT_THAT(p.status().message(), Not(HasSubstr("secret"))) << url;
  }
  EXPECT_THAT(ParseSocksProxy("socks5://u:secret@host").status().message(), HasSubstr("needs host:port"));
  EXPECT_THAT(ParseSocksProxy(std::string("socks5://") + std::string(300, 'u') + ":p@h:1").status().message(),
              HasSubstr("1 to 255 bytes"));
}

}  // namespace
}  // namespace marketprism::common
