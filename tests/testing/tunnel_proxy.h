// File: tests/testing/tunnel_proxy.h
//
// An HTTP proxy for integration tests, on 127.0.0.1: it answers a CONNECT
// with 200, connects to the target and pumps bytes both ways, a thread per
// tunnel; a plain request in absolute form (curl's for http:// URLs) goes on
// in origin form, one request per connection. It keeps each tunnel's target
// and the client's source address, so a test sees what went through it and
// from where. It speaks SOCKS5 (RFC 1928, CONNECT) as well, to a client
// whose first byte says so; with a login set it asks for RFC 1929's user
// name and password and refuses any other.
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
  // `socks_login` ("user:pass"): what SOCKS5 clients must give; "" for none.
  static absl::StatusOr<std::unique_ptr<TunnelProxy>> Start(std::string socks_login = "");
  ~TunnelProxy();  // closes the listener and every tunnel

  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  struct Tunnel {
    std::string source_ip;  // the client's address
    std::string target;     // host:port
    std::string method;     // "CONNECT", "GET", ..., "SOCKS5"
  };
  std::vector<Tunnel> tunnels();

 private:
  TunnelProxy() = default;
  void Accept();
  void Serve(int client, size_t index);
  // The SOCKS5 handshake; the connected upstream socket, or -1 (answered).
  int ServeSocks(int client, size_t index);
  // Moves bytes both ways until either side closes.
  void Pump(int client, int upstream);
  std::string socks_login_;
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
