// File: tests/testing/mini_cluster.h
//
// A whole cluster in one process, after Kudu's mini-cluster: real
// Coordinators and real Nodes over in-process gRPC channels, a FakeClock
// that drives every timer, a FakeGossip the test kills members in, and a
// FakeExchange behind every node's HttpClient. No socket is opened.
//
// Addresses are names ("coord-a:1", "node-1:1"): the channel factory maps
// each to its server's in-process channel. The nodes' session and clock
// prober threads still wait on real time (short waits: reconnects, reports),
// so tests wait for conditions (AdvanceUntil), never for fixed times.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/coordinator.h"
#include "marketprism/v1/coordinator.grpc.pb.h"
#include "node/node.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_exchange.h"
#include "tests/testing/fake_membership.h"

namespace marketprism::testing {

class MiniCluster {
 public:
  MiniCluster();
  ~MiniCluster();

  FakeClock& clock() { return clock_; }
  FakeGossip& gossip() { return gossip_; }
  FakeExchange& exchange() { return exchange_; }

  // A coordinator named `name` at "<name>:1"; with `gossip`, a member of the
  // fake gossip (elected), else the only one (term 1).
  coordinator::Coordinator& AddCoordinator(const std::string& name, bool gossip,
                                           coordinator::CoordinatorOptions options = {});
  // A node at "<name>:1" owning `egress_ip`, serving binance_spot from the
  // fake exchange, registering with the coordinators added so far (with
  // `gossip`, with whoever gossip shows leading).
  node::Node& AddNode(const std::string& name, const std::string& egress_ip, bool gossip);
  coordinator::Coordinator& coordinator(const std::string& name) { return *coordinators_.at(name); }
  // A crash: gossip sees the member dead, then its process is gone.
  void KillCoordinator(const std::string& name);
  void KillNode(const std::string& name);

  std::unique_ptr<v1::Coordinator::Stub> Client(const std::string& coordinator);
  // The leader's view (GetStatus through `coordinator`).
  v1::GetStatusResponse Status(const std::string& coordinator);
  // Nodes the coordinator places work on (state "active", clock known).
  int ReadyNodes(const std::string& coordinator);
  // Advances the clock in `step`s until `done` holds or `limit` has passed
  // on it; after each step, real gRPC and node threads get up to 20 ms
  // (real time) to act.
  bool AdvanceUntil(const std::function<bool()>& done, absl::Duration limit,
                    absl::Duration step = absl::Milliseconds(50));

  std::shared_ptr<grpc::Channel> Channel(const std::string& address) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Serve(const std::string& address, std::function<std::shared_ptr<grpc::Channel>()> channel)
      ABSL_LOCKS_EXCLUDED(mu_);

  FakeClock clock_;
  FakeGossip gossip_;
  FakeExchange exchange_{clock_};
  absl::Mutex mu_;
  std::map<std::string, std::function<std::shared_ptr<grpc::Channel>()>> servers_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> coordinator_names_;
  std::map<std::string, std::unique_ptr<coordinator::Coordinator>> coordinators_;
  std::map<std::string, std::unique_ptr<node::Node>> nodes_;
};

}  // namespace marketprism::testing
