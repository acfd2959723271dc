// File: tests/testing/sim_process.h
//
// mp-exchange-sim as a child process on a free loopback port, with helpers
// for its admin endpoints and for clients bound to chosen source IPs.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/net/curl_http_client.h"
#include "tests/testing/subprocess.h"
#include <nlohmann/json.hpp>

namespace marketprism::testing {

class SimProcess {
 public:
  // Starts the simulator with `extra_flags` on 127.0.0.1, any free port.
  // Given --tls-cert, it serves TLS only, and this object's own requests
  // trust that certificate (a self-signed one is its own CA).
  static absl::StatusOr<std::unique_ptr<SimProcess>> Start(std::vector<std::string> extra_flags = {});

  int port() const { return port_; }
  std::string base_url() const { return (tls_cert_.empty() ? "http://" : "https://") + Host(); }
  std::string ws_url() const { return (tls_cert_.empty() ? "ws://" : "wss://") + Host(); }
  // The coordinator's flags pointing `exchanges` here: --exchange-url for
  // each, and --ws-url for Binance USD-M, whose streams the simulator serves
  // under /usdm (exchange_sim/ws_session.h).
  std::vector<std::string> CoordinatorFlags(const std::vector<std::string>& exchanges) const;
  Subprocess& process() { return *process_; }

  // GET path from `source_ip` (with the query already in `path`).
  absl::StatusOr<common::HttpReply> Get(const std::string& source_ip, const std::string& path);
  absl::StatusOr<common::HttpReply> Post(const std::string& source_ip, const std::string& path,
                                         const std::string& body);

  // GET /sim/stats, parsed.
  absl::StatusOr<nlohmann::json> Stats();
  // Every rejection (429, 418, 50011, 10028, ...) in a Stats() answer, over
  // every exchange and IP.
  static int64_t Rejections(const nlohmann::json& stats);
  // POST /sim/faults with `json`.
  absl::Status SetFaults(const std::string& json);
  // Sets the clock-offset fault so that the server's clock reads `into` past
  // the start of a minute right now (e.g. 58.5 s: 1.5 s before the next
  // minute edge). Returns the server time it aimed at.
  absl::StatusOr<absl::Time> AlignServerClock(absl::Duration into_minute);

 private:
  std::string Host() const { return "127.0.0.1:" + std::to_string(port_); }

  std::unique_ptr<Subprocess> process_;
  int port_ = 0;
  std::string tls_cert_;
  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<common::CurlHttpClient>> clients_;
  common::CurlHttpClient& Client(const std::string& source_ip);
};

}  // namespace marketprism::testing
