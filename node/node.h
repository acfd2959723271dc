// File: node/node.h
//
// mp-node: one per egress IP. Serves Node.Dispatch (the coordinator's
// assignments) and grpc.health.v1, keeps one ExchangeLane per exchange, and
// holds a session with the coordinator: it registers, receives limits,
// exchange URLs and drain commands, and reports usage, bans (at once) and its
// clock estimates. It refuses whatever its own ledger says would exceed its
// IP's budget, whatever the coordinator says.
//
// Threads: the gRPC server's, a worker pool for exchange round trips, one
// for the coordinator session, one for clock probes.
#pragma once

#include <atomic>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/executor.h"
#include "common/gossip/agent.h"
#include "common/rules/rules.h"
#include "node/exchange_lane.h"
#include "node/node_options.h"
#include "node/proxy.h"
#include "node/term_fence.h"
#include "marketprism/v1/node.pb.h"

namespace grpc {
class Server;
}  // namespace grpc

namespace marketprism::node {

class Node {
 public:
  // Prepares lanes. `rules` are the ones the options were validated
  // against (NodeConfig). kInvalidArgument for bad options.
  static absl::StatusOr<std::unique_ptr<Node>> Create(NodeOptions options, common::RulesBook rules,
                                                      common::Clock& clock);
  ~Node();

  // Starts serving and connecting. kUnavailable if the listen address cannot be bound.
  absl::Status Start();
  // Blocks until Shutdown().
  void Wait();
  // Stops everything; safe from a signal handler's thread via a flag.
  void Shutdown();

  int port() const { return port_; }
  std::string advertise() const { return advertise_; }
  // The gossip address bound ("" without gossip).
  std::string gossip_address() const { return gossip_ ? gossip_->addr() : ""; }

  class Service;
  class Session;

 private:
  Node(NodeOptions options, common::Clock& clock, common::RulesBook rules);
  void ProbeLoop();
  void ConfigureEndpoint(const std::string& exchange, const std::string& url);
  ExchangeLane* Lane(const std::string& exchange);

  // The best leadership claim gossip shows (a live coordinator's term record),
  // if any. Seeing one raises the fence: the old leader is refused from now.
  struct LeaderClaim {
    int64_t term = 0;
    std::string name;
    std::string grpc;
  };
  std::optional<LeaderClaim> GossipLeader();
  // Admits (term, coordinator) through the fence; publishes a raised fence.
  bool AdmitTerm(int64_t term, const std::string& coordinator);
  void PublishUsage();
  // Account leases from the leader (fenced by term like any assignment).
  void ApplyLeases(const marketprism::v1::Leases& leases);

  NodeOptions options_;
  common::Clock& clock_;
  common::RulesBook rules_;
  std::map<std::string, std::unique_ptr<ExchangeLane>> lanes_;  // fixed after Create
  std::unique_ptr<common::ThreadPool> pool_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<Session> session_;
  std::unique_ptr<grpc::Server> server_;
  std::thread probe_thread_;
  int port_ = 0;
  std::string advertise_;
  TermFence fence_;
  std::atomic<int64_t> published_fence_{-1};
  std::unique_ptr<common::gossip::GossipAgent> gossip_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool reprobe_ ABSL_GUARDED_BY(mu_) = false;
  marketprism::v1::Leases leases_ ABSL_GUARDED_BY(mu_);  // the last admitted
  absl::Time leases_received_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time leases_expire_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace marketprism::node
