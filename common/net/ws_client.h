// File: common/net/ws_client.h
//
// WebSocket client interface (text messages), and LwsWsClient, its
// libwebsockets implementation. One LwsWsClient owns an lws context and one
// service thread; every lws call happens on that thread. Other threads call
// Connect/Send/Close, which queue work and wake the service thread with
// lws_cancel_service(). Callbacks run on the service thread and must not
// block.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace marketprism::common {

struct WsConnectSpec {
  std::string url;        // ws://host:port/path?query or wss://...
  std::string source_ip;  // bind the socket here ("" = any)
  // "" for none (the environment's http_proxy is not read here), or
  // http://[user:pass@]host:port: the connection is a CONNECT tunnel through
  // it (TLS stays end to end); or socks5://, socks5h://[user:pass@]host:port:
  // Debian's libwebsockets (4.1.6) has no SOCKS5, so the tunnel goes through
  // a local CONNECT relay that speaks SOCKS5 to the proxy (socks_relay.h).
  std::string proxy = {};
};

struct WsCallbacks {
  std::function<void()> on_open;
  std::function<void(std::string text)> on_text;
  // Once, when the connection ends or fails to open. `code` is the close code
  // the server sent (1000, 1008, ...), or -1 when there was none (connection
  // failed or was dropped); `reason` says why.
  std::function<void(int code, std::string reason)> on_closed;
};

class WsConnection {
 public:
  virtual ~WsConnection() = default;
  // Queues a text message. Thread-safe; ignored once closed.
  virtual void Send(std::string text) = 0;
  // Starts a normal close (1000). Thread-safe.
  virtual void Close() = 0;
};

class WsClient {
 public:
  virtual ~WsClient() = default;
  // Starts connecting. kInvalidArgument for a malformed URL; failures to
  // connect arrive later through on_closed.
  virtual absl::StatusOr<std::shared_ptr<WsConnection>> Connect(const WsConnectSpec& spec,
                                                                WsCallbacks callbacks) = 0;
};

struct LwsWsClientOptions {
  std::string ca_bundle;  // for wss://; "" = the system default
};

class LwsWsClient final : public WsClient {
 public:
  // Fails with kInternal if lws cannot create its context.
  static absl::StatusOr<std::unique_ptr<LwsWsClient>> Create(LwsWsClientOptions options = {});
  ~LwsWsClient() override;

  absl::StatusOr<std::shared_ptr<WsConnection>> Connect(const WsConnectSpec& spec,
                                                        WsCallbacks callbacks) override;

  struct Impl;

 private:
  explicit LwsWsClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A WsConnectSpec's proxy as lws_set_proxy takes it ("[user:pass@]host:port",
// "" for none): kInvalidArgument naming the problem for anything but
// http://host:port (LwsWsClient::Connect takes SOCKS5 to a SocksRelay first).
absl::StatusOr<std::string> LwsProxyOf(absl::string_view proxy);
// `proxy` with any user:password replaced by *** (for logs and errors).
std::string RedactProxy(absl::string_view proxy);

// Splits a ws:// or wss:// URL. kInvalidArgument names the problem.
struct WsUrl {
  bool tls = false;
  std::string host;
  int port = 0;
  std::string path;  // with the query, starting with '/'
};
absl::StatusOr<WsUrl> ParseWsUrl(const std::string& url);

}  // namespace marketprism::common
