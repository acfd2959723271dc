// File: common/net/grpc_channels.h
//
// The seam every gRPC client of ours dials through: an address in, a channel
// out. Production dials TCP (InsecureChannels); the in-process mini-cluster
// maps each member's address to its server's in-process channel, so whole
// behaviours run without a socket.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

namespace marketprism::common {

using ChannelFactory = std::function<std::shared_ptr<grpc::Channel>(const std::string& address)>;

inline ChannelFactory InsecureChannels() {
  return [](const std::string& address) {
    return grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  };
}

}  // namespace marketprism::common
