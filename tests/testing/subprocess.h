// File: tests/testing/subprocess.h
//
// A child process for integration tests: started from argv, stdout and
// stderr captured together, ended by pid (SIGTERM, then SIGKILL) when the
// object goes away, so a failing test leaves nothing behind.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace marketprism::testing {

class Subprocess {
 public:
  // Starts argv[0] (a path) with the rest as arguments.
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(std::vector<std::string> argv);
  ~Subprocess();

  pid_t pid() const { return pid_; }

  // Waits until the output has a line containing `text`; returns that line.
  absl::StatusOr<std::string> WaitForLine(const std::string& text, absl::Duration timeout);
  // Everything the process wrote so far.
  std::string Output();

  void Signal(int sig);
  // Waits for exit; the exit code (128+signal when killed). kDeadlineExceeded on timeout.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  bool Running();
  // SIGTERM, up to `grace` to exit, then SIGKILL.
  void Stop(absl::Duration grace = absl::Seconds(3));

 private:
  Subprocess() = default;
  void ReadLoop(int fd);

  pid_t pid_ = -1;
  bool reaped_ = false;
  int exit_code_ = -1;
  std::thread reader_;
  absl::Mutex mu_;
  std::string output_ ABSL_GUARDED_BY(mu_);
  bool output_ended_ ABSL_GUARDED_BY(mu_) = false;  // the child's stdout and stderr closed
};

// The directory holding our built executables (mp-exchange-sim, mp-node, ...).
std::string BinDir();

}  // namespace marketprism::testing
