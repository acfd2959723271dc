// File: exchange_sim/sim_server.h
//
// Puts a Simulator on a libwebsockets listener: one port for REST (HTTP/1.1
// keep-alive) and WebSocket on every exchange's paths, plus /sim/ admin.
// The source IP each request is charged to is the TCP peer address.
//
// Threading: Start() and Run() on one thread (the lws service thread); every
// Simulator call happens there. Stop() may be called from any thread or a
// signal handler.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "exchange_sim/simulator.h"

struct lws_context;

namespace marketprism::sim {

class SimServer {
 public:
  explicit SimServer(Simulator& sim);
  ~SimServer();
  SimServer(const SimServer&) = delete;
  SimServer& operator=(const SimServer&) = delete;

  // Binds `host:port` (port 0: any free port; see port()). kUnavailable if the
  // address cannot be bound.
  // With `tls_cert` and `tls_key` (PEM files), REST and WebSocket are
  // served over TLS only (https://, wss://) on the same port.
  absl::Status Start(const std::string& host, int port, const std::string& tls_cert = "",
                     const std::string& tls_key = "");
  int port() const { return port_; }

  // Serves until Stop().
  void Run();
  // Async-signal-safe.
  void Stop();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  lws_context* context_ = nullptr;
  int port_ = 0;
  std::atomic<bool> stop_{false};
};

}  // namespace marketprism::sim
