// File: common/log.h
//
// One line per event on stderr: "2026-11-21T10:00:00.123Z I node: message".
// Thread-safe (one write per line). Abseil 20220623 has no absl/log.
#pragma once

#include "absl/strings/string_view.h"

namespace marketprism::common {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

void Log(LogLevel level, absl::string_view component, absl::string_view message);
// Messages below this level are dropped (default kInfo).
void SetLogLevel(LogLevel level);
// Sets the level from its name ("debug", "info", "warning", "error"; a main
// passes $MP_LOG_LEVEL). Null or empty keeps the level; an unknown name
// keeps it and logs a warning naming the value.
void SetLogLevelFrom(const char* name);

}  // namespace marketprism::common
