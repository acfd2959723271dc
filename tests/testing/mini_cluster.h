// File: tests/testing/mini_cluster.h
//
// A whole cluster in one process, after Kudu's mini-cluster: real
// Coordinators over in-process gRPC channels, a FakeClock that drives every
// timer, a FakeGossip that the test kills members in, and fake nodes that
// speak the node protocol (a NodeControl session and the Node.Dispatch
// service) and answer every dispatch as the exchange would, recording what
// reached them. No socket is opened and nothing sleeps.
//
// Addresses are names ("coord-a:1", "node-1:1"): the channel factory maps
// each to its server's in-process channel.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/coordinator.h"
#include "marketprism/v1/coordinator.grpc.pb.h"
#include "marketprism/v1/node.grpc.pb.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_membership.h"

namespace marketprism::testing {

class MiniCluster;

// A node as the coordinator sees one: registers, reports nothing, answers
// every Dispatch with HTTP 200 and the node's name as the body.
class FakeNode {
 public:
  struct Dispatched {
    std::string path;
    int64_t term = 0;
    std::string coordinator_id;
    std::string account;
  };
  FakeNode(MiniCluster& cluster, std::string name, std::string egress_ip);
  ~FakeNode();

  const std::string& name() const { return name_; }
  std::string address() const { return name_ + ":1"; }
  // Opens a session with the coordinator at `address`; returns its answer
  // (accepted or not). The session's messages are recorded until it ends.
  absl::StatusOr<v1::Registered> Register(const std::string& coordinator);
  // Registers with whoever leads, following a refusal that names the leader.
  absl::StatusOr<v1::Registered> RegisterWithLeader(const std::string& first_try);
  void EndSession();
  // Waits (up to 10 s real time) until the session ends.
  bool AwaitSessionEnd();

  std::vector<Dispatched> dispatched() ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<v1::Leases> leases() ABSL_LOCKS_EXCLUDED(mu_);
  int64_t highest_term() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  class Service;
  MiniCluster& cluster_;
  const std::string name_, egress_ip_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  absl::Mutex mu_;
  std::vector<Dispatched> dispatched_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::Leases> leases_ ABSL_GUARDED_BY(mu_);
  int64_t highest_term_ ABSL_GUARDED_BY(mu_) = 0;
  bool in_session_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<grpc::ClientContext> ctx_ ABSL_GUARDED_BY(mu_);
  std::thread reader_;
};

class MiniCluster {
 public:
  MiniCluster();
  ~MiniCluster();

  FakeClock& clock() { return clock_; }
  FakeGossip& gossip() { return gossip_; }

  // A coordinator named `name` at "<name>:1"; with `gossip`, a member of the
  // fake gossip (elected), else the only one (term 1).
  coordinator::Coordinator& AddCoordinator(const std::string& name, bool gossip,
                                           coordinator::CoordinatorOptions options = {});
  // A fake node; with `gossip` it also joins the fake gossip as a node.
  FakeNode& AddNode(const std::string& name, const std::string& egress_ip, bool gossip);
  coordinator::Coordinator& coordinator(const std::string& name) { return *coordinators_.at(name); }
  // Shuts the coordinator down (as a crash would end its sessions) and has gossip see it dead.
  void KillCoordinator(const std::string& name);

  std::unique_ptr<v1::Coordinator::Stub> Client(const std::string& coordinator);
  // Advances the clock in `step`s until `done` holds or `limit` has passed
  // on it; each step lets real gRPC threads answer (waits up to 2 s real
  // time for `done` between steps).
  bool AdvanceUntil(const std::function<bool()>& done, absl::Duration limit,
                    absl::Duration step = absl::Milliseconds(50));

  std::shared_ptr<grpc::Channel> Channel(const std::string& address) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  friend class FakeNode;
  void Serve(const std::string& address, std::function<std::shared_ptr<grpc::Channel>()> channel)
      ABSL_LOCKS_EXCLUDED(mu_);

  FakeClock clock_;
  FakeGossip gossip_;
  absl::Mutex mu_;
  std::map<std::string, std::function<std::shared_ptr<grpc::Channel>()>> servers_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<coordinator::Coordinator>> coordinators_;
  std::map<std::string, std::unique_ptr<FakeNode>> nodes_;
  std::vector<std::unique_ptr<common::gossip::Membership>> node_members_;
};

}  // namespace marketprism::testing
