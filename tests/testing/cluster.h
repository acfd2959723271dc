// File: tests/testing/cluster.h
//
// A whole cluster as child processes on loopback for integration tests and
// benchmarks: the exchange simulator, a coordinator and N nodes owning
// egress IPs 127.0.0.<first>, 127.0.0.<first+1>, ... Started on free ports;
// Start() returns once every node has registered. Everything is ended by pid.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "marketprism/v1/coordinator.grpc.pb.h"
#include "tests/testing/sim_process.h"
#include "tests/testing/subprocess.h"

namespace marketprism::testing {

struct ClusterOptions {
  int nodes = 3;
  std::string ip_prefix = "127.0.0.";
  int first_ip = 11;
  std::vector<std::string> sim_flags;
  std::vector<std::string> coordinator_flags;
  std::vector<std::string> node_flags;
  // Exchanges pointed at the simulator (by the coordinator's --exchange-url).
  std::vector<std::string> exchanges = {"binance_spot", "binance_usdm", "okx", "deribit"};
};

class Cluster {
 public:
  static absl::StatusOr<std::unique_ptr<Cluster>> Start(ClusterOptions options);

  SimProcess& sim() { return *sim_; }
  Subprocess& coordinator() { return *coordinator_; }
  Subprocess& node(int i) { return *nodes_[static_cast<size_t>(i)]; }
  int coordinator_port() const { return coordinator_port_; }
  std::string coordinator_address() const { return "127.0.0.1:" + std::to_string(coordinator_port_); }
  std::string egress_ip(int i) const;
  v1::Coordinator::Stub& stub() { return *stub_; }

  // Starts one more node (index nodes()+...); waits until it registers.
  absl::Status AddNode(int index);
  // Waits until ListNodes shows `active` nodes active with every exchange ready.
  absl::Status WaitForActive(int active, absl::Duration timeout);

  // One Execute with a deadline.
  grpc::Status Execute(const v1::ExecuteRequest& req, v1::ExecuteResponse* resp,
                       absl::Duration timeout = absl::Seconds(5));

 private:
  ClusterOptions options_;
  std::unique_ptr<SimProcess> sim_;
  std::unique_ptr<Subprocess> coordinator_;
  std::vector<std::unique_ptr<Subprocess>> nodes_;
  int coordinator_port_ = 0;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
};

v1::ExecuteRequest MakeRequest(const std::string& exchange, const std::string& path,
                               std::vector<std::pair<std::string, std::string>> query = {},
                               int priority = 0);

}  // namespace marketprism::testing
