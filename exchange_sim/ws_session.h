// File: exchange_sim/ws_session.h
//
// WebSocket sessions of the simulator, free of sockets: the server feeds a
// session the client's messages and a 100 ms tick; the session says what to
// send and whether to close. One class per exchange family:
//
//  * Binance (/ws, /ws/<stream>, /stream?streams=a/b): trade and depth diff
//    streams with gap-free U/u, SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS,
//    at most 5 incoming messages per second (pongs count), at most 1024
//    streams, server pings and a pong timeout.
//  * OKX (/ws/v5/public): tickers, books (400-level snapshot, then updates
//    with seqId/prevSeqId and a CRC32 checksum), trades; text ping/pong;
//    480 subscribe operations an hour; idle close after 30 s without pushes.
//  * Deribit (/ws/api/v2): JSON-RPC for every public method, charged to the
//    IP's credit bucket (10028 then the session ends), public/subscribe to
//    book.*, ticker.*, trades.* with change_id/prev_change_id, heartbeats
//    with test_request, inactivity close.
//
// Sessions run on the server's service thread only.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/rules/rules.h"
#include "exchange_sim/simulator.h"

namespace marketprism::sim {

// What a session asks the transport to do after an event.
struct WsOut {
  std::vector<std::string> texts;
  bool ping = false;
  bool close = false;
  int close_code = 1000;
  std::string close_reason;

  void Close(int code, std::string reason) {
    close = true;
    close_code = code;
    close_reason = std::move(reason);
  }
};

class WsSession {
 public:
  virtual ~WsSession() = default;

  // A text message from the client.
  virtual void OnText(absl::string_view text, absl::Time now, WsOut& out) = 0;
  // A pong frame from the client.
  virtual void OnPong(absl::Time now, WsOut& out) {}
  // Every 100 ms: pushes, pings and timeouts.
  virtual void OnTick(absl::Time now, WsOut& out) = 0;

  const std::string& exchange() const { return exchange_; }
  const std::string& peer_ip() const { return peer_ip_; }

 protected:
  WsSession(Simulator& sim, std::string exchange, std::string peer_ip)
      : sim_(sim), exchange_(std::move(exchange)), peer_ip_(std::move(peer_ip)) {}

  // Counts, in /sim/stats, a WebSocket limit the client broke.
  void Violation(const char* limit);

  Simulator& sim_;
  std::string exchange_;
  std::string peer_ip_;
};

// Which exchange serves WebSocket path `path`, or "".
std::string WsExchangeForPath(absl::string_view path);

// Binance USD-M streams live at their own host (fstream.binance.com); the
// simulator serves one host, so they sit under this path prefix instead
// (ws://SIM/usdm/stream?streams=..., ws://SIM/usdm/ws/...).
inline constexpr absl::string_view kUsdmPrefix = "/usdm";

// Opens a session for a connection to `path` (with its query) from `peer_ip`
// that the simulator has already admitted. Returns nullptr with *error set
// for a path or stream list it does not serve.
std::unique_ptr<WsSession> OpenWsSession(Simulator& sim, absl::string_view path,
                                         const common::QueryParams& query,
                                         const std::string& peer_ip, absl::Time now,
                                         std::string* error);

// OKX's order-book checksum: CRC32 of "bid1px:bid1sz:ask1px:ask1sz:..." over
// the top 25 levels, as a signed 32-bit integer.
int32_t OkxChecksum(const std::vector<std::pair<std::string, std::string>>& bids,
                    const std::vector<std::pair<std::string, std::string>>& asks);

}  // namespace marketprism::sim
