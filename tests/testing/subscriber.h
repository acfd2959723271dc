// File: tests/testing/subscriber.h
//
// A Collector.Subscribe client for integration tests and benchmarks: keeps
// every record with the time it arrived (read on its own thread), and how
// the stream ended.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "marketprism/v1/collector.grpc.pb.h"

namespace marketprism::testing {

class Subscriber {
 public:
  // Subscribes to `req` at the coordinator at `address` (host:port).
  Subscriber(const std::string& address, v1::SubscribeRequest req);
  ~Subscriber();  // cancels the stream

  struct Got {
    absl::Time at;  // when the reader thread had it
    v1::MarketEvent event;
  };
  std::vector<Got> events();
  size_t size();
  // How the stream ended; nullopt while it runs.
  std::optional<grpc::Status> status();

 private:
  std::unique_ptr<v1::Collector::Stub> stub_;
  grpc::ClientContext ctx_;
  absl::Mutex mu_;
  std::vector<Got> events_ ABSL_GUARDED_BY(mu_);
  std::optional<grpc::Status> status_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;  // last: it starts once the rest is built
};

}  // namespace marketprism::testing
