#include "tests/testing/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace marketprism::testing {

std::string BinDir() {
  const char* env = std::getenv("MP_BIN_DIR");
  if (env != nullptr && *env != '\0') return env;
  return MP_BIN_DIR;
}

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Start(std::vector<std::string> argv) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    // The child dies with the test process, whatever happens to the test.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    execv(args[0], args.data());
    std::fprintf(stderr, "exec %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
  close(fds[1]);
  auto p = std::unique_ptr<Subprocess>(new Subprocess());
  p->pid_ = pid;
  int fd = fds[0];
  Subprocess* raw = p.get();
  p->reader_ = std::thread([raw, fd] { raw->ReadLoop(fd); });
  return p;
}

void Subprocess::ReadLoop(int fd) {
  char buf[4096];
  while (true) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    absl::MutexLock lock(&mu_);
    output_.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  absl::MutexLock lock(&mu_);
  output_ended_ = true;
}

Subprocess::~Subprocess() {
  Stop();
  if (reader_.joinable()) reader_.join();
}

std::string Subprocess::Output() {
  absl::MutexLock lock(&mu_);
  return output_;
}

absl::StatusOr<std::string> Subprocess::WaitForLine(const std::string& text,
                                                    absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      size_t at = output_.find(text);
      if (at != std::string::npos) {
        size_t start = output_.rfind('\n', at);
        start = start == std::string::npos ? 0 : start + 1;
        size_t end = output_.find('\n', at);
        if (end != std::string::npos) return output_.substr(start, end - start);
      }
      if (output_ended_) {
        return absl::FailedPreconditionError(
            absl::StrCat("no line with \"", text, "\": the process closed its output (it exited?); output:\n",
                         output_));
      }
      if (absl::Now() >= deadline) {
        return absl::DeadlineExceededError(
            absl::StrCat("no line with \"", text, "\" within ", absl::FormatDuration(timeout),
                         "; output so far:\n", output_));
      }
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
}

void Subprocess::Signal(int sig) {
  if (!reaped_ && pid_ > 0) kill(pid_, sig);
}

bool Subprocess::Running() {
  if (reaped_) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return true;
}

absl::StatusOr<int> Subprocess::Wait(absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (Running()) {
    if (absl::Now() >= deadline) return absl::DeadlineExceededError("process still running");
    absl::SleepFor(absl::Milliseconds(10));
  }
  // The process is gone, but the reader may not have drained the pipe yet:
  // callers read Output() next. A child it left behind could hold the pipe
  // open, so this waits a bounded time.
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&output_ended_), absl::Seconds(2));
  return exit_code_;
}

void Subprocess::Stop(absl::Duration grace) {
  if (reaped_ || pid_ <= 0) return;
  Signal(SIGTERM);
  if (!Wait(grace).ok()) {
    Signal(SIGKILL);
    (void)Wait(absl::Seconds(5));
  }
}

}  // namespace marketprism::testing
