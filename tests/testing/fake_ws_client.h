// File: tests/testing/fake_ws_client.h
//
// A WebSocket client a test (or a benchmark) drives: it keeps each
// connection's spec and callbacks and what was sent on it, and calls nothing
// by itself. Not thread-safe: the test's thread only.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/net/ws_client.h"

namespace marketprism::testing {

// A WebSocket client the test drives: it keeps each connection's callbacks
// and what the collector sent on it.
class FakeWsClient final : public common::WsClient {
 public:
  struct Conn final : common::WsConnection {
    common::WsConnectSpec spec;
    common::WsCallbacks cb;
    std::vector<std::string> sent;
    bool closed = false;
    void Send(std::string text) override { sent.push_back(std::move(text)); }
    void Close() override { closed = true; }
  };
  absl::StatusOr<std::shared_ptr<common::WsConnection>> Connect(const common::WsConnectSpec& spec,
                                                                common::WsCallbacks callbacks) override {
    auto c = std::make_shared<Conn>();
    c->spec = spec;
    c->cb = std::move(callbacks);
    conns.push_back(c);
    return std::shared_ptr<common::WsConnection>(c);
  }
  std::vector<std::shared_ptr<Conn>> conns;
};

}  // namespace marketprism::testing
