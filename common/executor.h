// File: common/executor.h
//
// A fixed pool of worker threads running queued closures in order of
// submission. Used where a gRPC callback handler must hand off blocking work
// (a libcurl request) instead of blocking the callback thread.
#pragma once

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace marketprism::common {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  // Runs what is queued, then joins.
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  void Schedule(std::function<void()> work);
  size_t queued();

 private:
  void Loop();

  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace marketprism::common
