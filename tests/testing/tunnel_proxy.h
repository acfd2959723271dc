// File: tests/testing/tunnel_proxy.h
//
// An HTTP proxy for integration tests, on 127.0.0.1: it answers a CONNECT
// with 200, connects to the target and pumps bytes both ways, a thread per
// tunnel; a plain request in absolute form (curl's for http:// URLs) goes on
// in origin form, one request per connection. It keeps each tunnel's target
// and the client's source address, so a test sees what went through it and
// from where.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace marketprism::testing {

class TunnelProxy {
 public:
  static absl::StatusOr<std::unique_ptr<TunnelProxy>> Start();
  ~TunnelProxy();  // closes the listener and every tunnel

  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  struct Tunnel {
    std::string source_ip;  // the client's address
    std::string target;     // host:port
    std::string method;     // "CONNECT", "GET", ...
  };
  std::vector<Tunnel> tunnels();

 private:
  TunnelProxy() = default;
  void Accept();
  void Serve(int client, size_t index);
  // Closes `fd` (a tunnel's end) and stops tracking it.
  void Forget(int fd);

  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  absl::Mutex mu_;
  std::vector<Tunnel> tunnels_ ABSL_GUARDED_BY(mu_);
  std::vector<int> fds_ ABSL_GUARDED_BY(mu_);  // tunnels' open sockets, shut down at the end
  std::vector<std::thread> workers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace marketprism::testing
