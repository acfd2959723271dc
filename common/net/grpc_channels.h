// File: common/net/grpc_channels.h
//
// The seam every gRPC client of ours dials through: an address in, a channel
// out. Production dials TCP (InsecureChannels); the in-process mini-cluster
// maps each member's address to its server's in-process channel, so whole
// behaviours run without a socket.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace marketprism::common {

using ChannelFactory = std::function<std::shared_ptr<grpc::Channel>(const std::string& address)>;

inline ChannelFactory InsecureChannels() {
  return [](const std::string& address) {
    return grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  };
}

// One stub per address, made on first use through `channels`. Thread-safe.
template <typename Service>
class StubCache {
 public:
  explicit StubCache(ChannelFactory channels) : channels_(std::move(channels)) {}
  std::shared_ptr<typename Service::Stub> For(const std::string& address) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto& stub = stubs_[address];
    if (!stub) stub = std::shared_ptr<typename Service::Stub>(Service::NewStub(channels_(address)));
    return stub;
  }

 private:
  const ChannelFactory channels_;
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<typename Service::Stub>> stubs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace marketprism::common
