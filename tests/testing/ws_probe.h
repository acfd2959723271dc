// File: tests/testing/ws_probe.h
//
// A WebSocket connection for integration tests: records every message and
// how the connection ended, and lets the test wait for either.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/net/ws_client.h"

namespace marketprism::testing {

class WsProbe {
 public:
  // Connects to `url` from `source_ip` through `client` (which must outlive
  // the probe), through `proxy` if given (WsConnectSpec::proxy).
  static absl::StatusOr<std::unique_ptr<WsProbe>> Connect(common::WsClient& client,
                                                          const std::string& url,
                                                          const std::string& source_ip,
                                                          const std::string& proxy = "");
  ~WsProbe();

  void Send(std::string text) { conn_->Send(std::move(text)); }
  void Close() { conn_->Close(); }

  // True once open; false if it closed (or failed) first or timed out.
  bool WaitOpen(absl::Duration timeout);
  // Waits until at least `n` messages have arrived.
  bool WaitMessages(size_t n, absl::Duration timeout);
  // Waits until the connection has ended; returns the close code (-1: none).
  std::optional<int> WaitClosed(absl::Duration timeout);

  std::vector<std::string> Messages();
  bool closed();
  std::string close_reason();

 private:
  struct State {
    absl::Mutex mu;
    bool open ABSL_GUARDED_BY(mu) = false;
    bool closed ABSL_GUARDED_BY(mu) = false;
    int close_code ABSL_GUARDED_BY(mu) = 0;
    std::string close_reason ABSL_GUARDED_BY(mu);
    std::vector<std::string> messages ABSL_GUARDED_BY(mu);
  };
  std::shared_ptr<State> state_;
  std::shared_ptr<common::WsConnection> conn_;
};

}  // namespace marketprism::testing
