#include "common/log.h"

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace marketprism::common {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

// What Log writes at `level` after SetLogLevelFrom(name).
std::string LoggedAfter(const char* name, LogLevel level) {
  SetLogLevel(LogLevel::kInfo);
  SetLogLevelFrom(name);
  ::testing::internal::CaptureStderr();
  Log(level, "test", "hello");
  std::string out = ::testing::internal::GetCapturedStderr();
  SetLogLevel(LogLevel::kInfo);
  return out;
}

TEST(LogLevelTest, NamesSetTheLevel) {
  EXPECT_THAT(LoggedAfter("debug", LogLevel::kDebug), HasSubstr(" D test: hello"));
  EXPECT_THAT(LoggedAfter("info", LogLevel::kDebug), IsEmpty());
  EXPECT_THAT(LoggedAfter("warning", LogLevel::kInfo), IsEmpty());
  EXPECT_THAT(LoggedAfter("warning", LogLevel::kWarning), HasSubstr(" W test: hello"));
  EXPECT_THAT(LoggedAfter("error", LogLevel::kWarning), IsEmpty());
}

TEST(LogLevelTest, UnsetKeepsTheLevelAndAnUnknownNameIsNamed) {
  EXPECT_THAT(LoggedAfter(nullptr, LogLevel::kInfo), HasSubstr(" I test: hello"));
  EXPECT_THAT(LoggedAfter("", LogLevel::kDebug), IsEmpty());
  ::testing::internal::CaptureStderr();
  SetLogLevelFrom("verbose");
  EXPECT_THAT(::testing::internal::GetCapturedStderr(), HasSubstr("unknown log level \"verbose\""));
  EXPECT_THAT(LoggedAfter("verbose", LogLevel::kInfo), HasSubstr(" I test: hello"));
}

}  // namespace
}  // namespace marketprism::common
