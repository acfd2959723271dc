// File: tests/testing/gossip_cluster.h
//
// A cluster whose members find each other by gossip, as child processes on
// loopback: the exchange simulator, K coordinators ("coord-a", "coord-b",
// ...; each on its own 127.0.<subnet>.<1+i>) and N nodes (egress
// 127.0.<subnet>.<11+i>), every one with --gossip on its own address (port
// 0) and the first coordinator as seed. Nodes are given no coordinator
// address: they find the leader through gossip. Everything ends by pid.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "marketprism/v1/coordinator.grpc.pb.h"
#include "tests/testing/sim_process.h"
#include "tests/testing/subprocess.h"

namespace marketprism::testing {

struct GossipClusterOptions {
  int coordinators = 2;
  int nodes = 3;
  int subnet = 70;  // 127.0.<subnet>.x
  std::vector<std::string> sim_flags;
  std::vector<std::string> coordinator_flags;
  std::vector<std::string> node_flags;
  std::vector<std::string> exchanges = {"okx"};
};

class GossipCluster {
 public:
  static absl::StatusOr<std::unique_ptr<GossipCluster>> Start(GossipClusterOptions options);

  SimProcess& sim() { return *sim_; }
  Subprocess& coordinator(int i) { return *coordinators_[static_cast<size_t>(i)]; }
  Subprocess& node(int i) { return *nodes_[static_cast<size_t>(i)]; }
  std::string coordinator_name(int i) const { return std::string("coord-") + static_cast<char>('a' + i); }
  const std::string& coordinator_address(int i) const { return addresses_[static_cast<size_t>(i)]; }
  std::string node_id(int i) const;
  std::unique_ptr<v1::Coordinator::Stub> Stub(int coordinator) const;

  // Polls ListNodes at `via` until it names a leader of term >= `min_term`
  // with `active` nodes active and ready; returns that answer.
  absl::StatusOr<v1::ListNodesResponse> WaitForLeader(int via, int64_t min_term, int active,
                                                      absl::Duration timeout);
  // Polls ListNodes at `via` until `node_id` shows `field` (state or
  // gossip_state) equal to `value`.
  absl::Status WaitForNode(int via, const std::string& node_id, const std::string& field,
                           const std::string& value, absl::Duration timeout);

 private:
  GossipClusterOptions options_;
  std::unique_ptr<SimProcess> sim_;
  std::vector<std::unique_ptr<Subprocess>> coordinators_;
  std::vector<std::unique_ptr<Subprocess>> nodes_;
  std::vector<std::string> addresses_;
};

// What a closed-loop load saw.
struct LoadRecord {
  std::vector<absl::Time> completions;  // each exchange reply, in order
  std::map<int, int64_t> http;
  int64_t exhausted = 0;                  // RESOURCE_EXHAUSTED: no budget in time (not an error)
  std::map<std::string, int64_t> errors;  // any other failure, by code and message
  int64_t error_count() const {
    int64_t n = 0;
    for (const auto& [what, k] : errors) n += k;
    return n;
  }
};

// `threads` callers each sending `request` to `coordinator` back to back
// (each with `deadline`) until `until`.
LoadRecord RunClosedLoop(const std::string& coordinator, int threads, absl::Time until,
                         const v1::ExecuteRequest& request, absl::Duration deadline);

}  // namespace marketprism::testing
