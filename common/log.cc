#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace marketprism::common {

namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
}  // namespace

void SetLogLevel(LogLevel level) { g_level.store(static_cast<int>(level)); }

void SetLogLevelFrom(const char* name) {
  if (name == nullptr || *name == '\0') return;
  static constexpr std::pair<absl::string_view, LogLevel> kNames[] = {
      {"debug", LogLevel::kDebug}, {"info", LogLevel::kInfo}, {"warning", LogLevel::kWarning}, {"error", LogLevel::kError}};
  for (const auto& [n, level] : kNames) {
    if (n == name) return SetLogLevel(level);
  }
  Log(LogLevel::kWarning, "log", absl::StrCat("unknown log level \"", name, "\" (debug, info, warning, error): keeping ",
                                              "the current level"));
}

void Log(LogLevel level, absl::string_view component, absl::string_view message) {
  if (static_cast<int>(level) < g_level.load()) return;
  static const char kLetters[] = {'D', 'I', 'W', 'E'};
  std::string line = absl::StrCat(
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()), " ",
      std::string(1, kLetters[static_cast<int>(level)]), " ", component, ": ", message, "\n");
  (void)!write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace marketprism::common
