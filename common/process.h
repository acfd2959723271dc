// File: common/process.h
//
// What every binary sets first thing in main(), before any thread starts.
#pragma once

#include "absl/synchronization/mutex.h"

namespace marketprism::common {

// Abseil as Debian builds it (without NDEBUG) checks every Mutex
// acquisition for lock-order cycles, in a global graph under a global lock:
// a node spent several percent of its time there. The binaries turn it off;
// the tests keep it, so that a lock-order inversion still fails them.
inline void ConfigureProcess() { absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore); }

}  // namespace marketprism::common
