// File: common/net/socks_relay.h
//
// WebSocket streams through a SOCKS5 proxy. Debian's libwebsockets (4.1.6)
// is built without LWS_WITH_SOCKS5, but it does tunnel through an HTTP
// CONNECT proxy; a SocksRelay is one, on 127.0.0.1, that carries each tunnel
// on through the SOCKS5 proxy it was made for:
//
//   lws ──CONNECT host:port──> SocksRelay (127.0.0.1:ephemeral)
//       ──SOCKS5 CONNECT──> the proxy ──> the exchange
//
// The tunnel to the proxy leaves from the address the client's connection
// came from (the node's egress IP, which lws binds; an unbound client's
// 127.0.0.1 is not bound), so the proxy sees each node's own address as it
// does for REST. TLS stays end to end: the relay
// only moves bytes. socks5:// resolves the exchange's host here,
// socks5h:// lets the proxy resolve it; user:pass@ is sent as RFC 1929
// username/password authentication. A tunnel the proxy refuses is answered
// "502" with the proxy's reason, which the connection's close reason shows.
//
// Thread-safe; a thread per tunnel (streams use few connections: Binance
// puts up to 1,024 streams on one).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace marketprism::common {

// A SOCKS5 proxy URL, split. kInvalidArgument names the problem (with any
// password redacted).
struct SocksProxy {
  bool remote_dns = false;  // socks5h://
  std::string host;
  int port = 0;
  std::string user = {};
  std::string password = {};
};
absl::StatusOr<SocksProxy> ParseSocksProxy(absl::string_view url);
bool IsSocksProxy(absl::string_view url);  // socks5:// or socks5h://

class SocksRelay {
 public:
  static absl::StatusOr<std::unique_ptr<SocksRelay>> Start(absl::string_view proxy_url);
  ~SocksRelay();  // closes the listener and every tunnel

  // host:port, as lws_set_proxy takes it.
  std::string address() const;

 private:
  explicit SocksRelay(SocksProxy proxy, std::string shown) : proxy_(std::move(proxy)), shown_(std::move(shown)) {}
  void Accept();
  void Serve(int client);
  // The SOCKS5 handshake on `fd` for host:port; "" when the tunnel is up,
  // else why not.
  std::string Handshake(int fd, const std::string& host, int port);
  void Forget(int fd);

  const SocksProxy proxy_;
  const std::string shown_;  // the proxy, redacted, for errors
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  absl::Mutex mu_;
  std::vector<int> fds_ ABSL_GUARDED_BY(mu_);  // open sockets, shut down on stop
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<Worker> workers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace marketprism::common
