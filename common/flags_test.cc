#include "common/flags.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace marketprism::common {
namespace {

using ::marketprism::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct Settings {
  std::string name = "x";
  int64_t n = 1;
  bool on = false;
  absl::Duration d = absl::Seconds(1);
  std::vector<std::string> list;
  std::string config;
};

FlagSet Flags(Settings& s) {
  FlagSet f("prog", "test");
  f.String("config", &s.config, "config");
  f.String("name", &s.name, "a name");
  f.Int("n", &s.n, "a number");
  f.Bool("on", &s.on, "a switch");
  f.Duration("d", &s.d, "a duration");
  f.List("item", &s.list, "items");
  return f;
}

TEST(FlagsTest, FormsOfFlags) {
  Settings s;
  FlagSet f = Flags(s);
  auto rest = f.Parse({"--name=a", "--n", "7", "--on", "--d=250ms", "--item", "p", "--item=q", "pos", "--", "--n"});
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(s.name, "a");
  EXPECT_EQ(s.n, 7);
  EXPECT_TRUE(s.on);
  EXPECT_EQ(s.d, absl::Milliseconds(250));
  EXPECT_THAT(s.list, ElementsAre("p", "q"));
  EXPECT_THAT(*rest, ElementsAre("pos", "--n"));
  ASSERT_TRUE(f.Parse({"--no-on"}).ok());
  EXPECT_FALSE(s.on);
}

TEST(FlagsTest, ErrorsNameTheFlag) {
  Settings s;
  FlagSet f = Flags(s);
  EXPECT_THAT(f.Parse({"--bogus"}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown flag --bogus")));
  EXPECT_THAT(f.Parse({"--n"}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--n needs a value")));
  EXPECT_THAT(f.Parse({"--n=seven"}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--n=seven: not an integer")));
  EXPECT_THAT(f.Parse({"--d=soon"}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a duration")));
  EXPECT_THAT(f.Parse({"--on=maybe"}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not true or false")));
  ASSERT_TRUE(f.Parse({"--help"}).ok());
  EXPECT_TRUE(f.help_requested());
  EXPECT_THAT(f.Help(), HasSubstr("--item VALUE"));
}

class SourcesTest : public ::testing::Test {
 protected:
  std::string WriteConfig(const std::string& text) {
    std::string path = ::testing::TempDir() + "/flags_config.json";
    std::ofstream(path) << text;
    return path;
  }
  std::function<const char*(const char*)> Env() {
    return [this](const char* name) -> const char* {
      auto it = env_.find(name);
      return it == env_.end() ? nullptr : it->second.c_str();
    };
  }
  std::map<std::string, std::string> env_;
};

TEST_F(SourcesTest, FileThenEnvironmentThenFlags) {
  Settings s;
  FlagSet f = Flags(s);
  std::string path = WriteConfig(R"({"name": "file", "n": 2, "on": true, "item": ["f1", "f2"], "d": "3s"})");
  env_["T_N"] = "3";
  env_["T_ITEM"] = "e1,e2";
  ASSERT_TRUE(f.ParseWithSources({"--config", path, "--name", "flag"}, "T_", Env()).ok());
  EXPECT_EQ(s.name, "flag") << "flags win";
  EXPECT_EQ(s.n, 3) << "the environment beats the file";
  EXPECT_TRUE(s.on) << "the file beats the default";
  EXPECT_EQ(s.d, absl::Seconds(3));
  EXPECT_THAT(s.list, ElementsAre("e1", "e2")) << "a later list replaces an earlier one";
  Settings t;
  FlagSet g = Flags(t);
  ASSERT_TRUE(g.ParseWithSources({"--config", path, "--item", "x"}, "T_", Env()).ok());
  EXPECT_THAT(t.list, ElementsAre("x"));
}

TEST_F(SourcesTest, ConfigFromTheEnvironment) {
  Settings s;
  FlagSet f = Flags(s);
  env_["T_CONFIG"] = WriteConfig(R"({"n": 9})");
  ASSERT_TRUE(f.ParseWithSources({}, "T_", Env()).ok());
  EXPECT_EQ(s.n, 9);
}

TEST_F(SourcesTest, WithoutAnEnvironmentNoVariableIsRead) {
  // Null is no environment, not the process's: below main nothing reads it.
  ASSERT_EQ(setenv("T_N", "5", 1), 0);
  Settings s;
  FlagSet f = Flags(s);
  absl::StatusOr<std::vector<std::string>> rest = f.ParseWithSources({}, "T_", nullptr);
  unsetenv("T_N");
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(s.n, 1);
  env_["T_N"] = "5";
  ASSERT_TRUE(f.ParseWithSources({}, "T_", Env()).ok());
  EXPECT_EQ(s.n, 5);
}

TEST_F(SourcesTest, ErrorsNameTheSourceAndKey) {
  Settings s;
  FlagSet f = Flags(s);
  EXPECT_THAT(f.ParseWithSources({"--config", WriteConfig(R"({"bogus": 1})")}, "T_", Env()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("key \"bogus\": no such setting")));
  EXPECT_THAT(f.ParseWithSources({"--config", WriteConfig(R"({"n": "many"})")}, "T_", Env()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("key \"n\": --n=many: not an integer")));
  EXPECT_THAT(f.ParseWithSources({"--config", WriteConfig(R"({"n": [1]})")}, "T_", Env()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("takes one value, not a list")));
  EXPECT_THAT(f.ParseWithSources({"--config", WriteConfig("[1,2]")}, "T_", Env()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a JSON object")));
  EXPECT_THAT(f.ParseWithSources({"--config", "/nonexistent.json"}, "T_", Env()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent.json")));
  env_["T_N"] = "lots";
  EXPECT_THAT(f.ParseWithSources({}, "T_", Env()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("environment T_N: --n=lots")));
}

TEST(HostPortTest, Parses) {
  auto hp = ParseHostPort("127.0.0.1:7000", "--listen");
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->host, "127.0.0.1");
  EXPECT_EQ(hp->port, 7000);
  EXPECT_THAT(ParseHostPort("nope", "--listen"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--listen \"nope\"")));
  EXPECT_THAT(ParseHostPort("h:99999", "--listen"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("0..65535")));
}

}  // namespace
}  // namespace marketprism::common
