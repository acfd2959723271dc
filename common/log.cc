#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace marketprism::common {

namespace {
std::atomic<int> g_level = [] {
  const char* env = std::getenv("MP_LOG_LEVEL");
  std::string v = env != nullptr ? env : "";
  if (v == "debug") return static_cast<int>(LogLevel::kDebug);
  if (v == "warning") return static_cast<int>(LogLevel::kWarning);
  if (v == "error") return static_cast<int>(LogLevel::kError);
  return static_cast<int>(LogLevel::kInfo);
}();
}  // namespace

void SetLogLevel(LogLevel level) { g_level.store(static_cast<int>(level)); }

void Log(LogLevel level, absl::string_view component, absl::string_view message) {
  if (static_cast<int>(level) < g_level.load()) return;
  static const char kLetters[] = {'D', 'I', 'W', 'E'};
  std::string line = absl::StrCat(
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()), " ",
      std::string(1, kLetters[static_cast<int>(level)]), " ", component, ": ", message, "\n");
  (void)!write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace marketprism::common
