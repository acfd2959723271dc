// File: tests/testing/data_servers.h
//
// The sinks' servers, from Debian's packages, for integration tests and
// benchmarks: nats-server with JetStream and clickhouse-server (18.16),
// each on 127.0.0.1 at a free port with its data under a folder of the
// test's own, started and ended by pid. Available() says whether the binary
// is installed (tests skip with a message naming the package otherwise).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

#include "tests/testing/subprocess.h"

namespace marketprism::testing {

// A free TCP port on 127.0.0.1 (bound and released: another process could
// take it in between, which loopback tests accept).
int FreeTcpPort();

class NatsServer {
 public:
  static bool Available();
  // Starts `nats-server -js` with its store under `dir`.
  static absl::StatusOr<std::unique_ptr<NatsServer>> Start(const std::string& dir);
  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
  Subprocess& process() { return *process_; }

 private:
  int port_ = 0;
  std::unique_ptr<Subprocess> process_;
};

class ClickHouseServer {
 public:
  static bool Available();
  // Writes a config under `dir` (HTTP on a free port, data in `dir`) and
  // starts the server; returns once it answers /ping.
  static absl::StatusOr<std::unique_ptr<ClickHouseServer>> Start(const std::string& dir);
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  // Ends the server (SIGTERM) and waits for it to exit.
  void Stop();
  // Starts it again on the same port and data.
  absl::Status Restart();
  // Runs `sql`; the reply's body (TabSeparated) or the server's error.
  absl::StatusOr<std::string> Query(const std::string& sql);

 private:
  absl::Status Launch();
  std::string dir_;
  int port_ = 0;
  std::unique_ptr<Subprocess> process_;
};

}  // namespace marketprism::testing
