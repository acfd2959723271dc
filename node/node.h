// File: node/node.h
//
// mp-node's composition root: one per egress IP. It builds its parts from
// NodeOptions, the rules and the transports it is handed, and starts them:
//
//   - one ExchangeLane per exchange (exchange_lane.h), each with an
//     HttpClient from the injected factory, bound to the egress IP;
//   - the Node.Dispatch service (dispatch_service.h) and grpc.health.v1 on
//     --listen, with a worker pool for the exchange round trips;
//   - the session with the coordinator (coordinator_session.h);
//   - the clock prober (clock_prober.h);
//   - with --gossip, a GossipAgent: the node publishes its role, address,
//     usage and term fence, and follows the leadership claims it sees.
//
// What the parts share is owned here: the lanes and the term fence. The
// node refuses whatever its own ledger says would exceed its IP's budget,
// whatever the coordinator says, and any work from a deposed leader.
//
// Called by node_main.cc (and tests): Create, Start, then Wait or Shutdown
// from any one thread. Threads it runs: the gRPC server's, the worker pool,
// the session's (plus a stream reader), the clock prober's and the gossip
// agent's.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/executor.h"
#include "common/gossip/agent.h"
#include "common/rules/rules.h"
#include "node/clock_prober.h"
#include "node/coordinator_session.h"
#include "node/dispatch_service.h"
#include "node/exchange_lane.h"
#include "node/http_client_factory.h"
#include "node/node_options.h"
#include "node/term_fence.h"

namespace grpc {
class Server;
}  // namespace grpc

namespace marketprism::node {

class Node {
 public:
  // Builds the lanes (those with a URL of their own get their HttpClient
  // from `http` now) and the parts; starts nothing. `rules` are the ones the
  // options were validated against (NodeConfig). `clock` must outlive the
  // node. `coordinator_channel` opens channels to coordinators (default:
  // InsecureChannelFactory()). kInvalidArgument if an exchange is unknown.
  static absl::StatusOr<std::unique_ptr<Node>> Create(NodeOptions options, common::RulesBook rules,
                                                      common::Clock& clock, HttpClientFactory http,
                                                      ChannelFactory coordinator_channel = nullptr);
  ~Node();  // Shutdown()
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Starts serving, gossiping, the session and the prober. kUnavailable if
  // the listen address cannot be bound; the gossip agent's error if it
  // cannot start.
  absl::Status Start();
  // Blocks until Shutdown().
  void Wait();
  // Leaves gossip, ends the session, stops serving (2 s grace) and joins
  // every thread. Idempotent.
  void Shutdown();

  int port() const { return port_; }
  std::string advertise() const { return advertise_; }
  // The gossip address bound ("" without gossip).
  std::string gossip_address() const { return gossip_ ? gossip_->addr() : ""; }

 private:
  Node(NodeOptions options, common::RulesBook rules, common::Clock& clock, HttpClientFactory http,
       ChannelFactory coordinator_channel);
  // Gives `exchange`'s lane a client for `url` (proxy resolved, egress IP
  // bound) and has its clock probed again.
  void ConfigureEndpoint(const std::string& exchange, const std::string& url);
  // Admits (term, coordinator) through the fence; publishes a raised fence.
  bool AdmitTerm(int64_t term, const std::string& coordinator);
  // What gossip shows of the leader now (nullopt without gossip). Pure read.
  std::optional<LeaderClaim> GossipLeaderClaim();
  absl::Status StartGossip();
  void PublishUsage();

  const NodeOptions options_;
  common::Clock& clock_;
  const common::RulesBook rules_;
  const HttpClientFactory http_;
  Lanes lanes_;  // fixed after the constructor
  TermFence fence_;
  std::atomic<int64_t> published_fence_{-1};
  std::unique_ptr<common::gossip::GossipAgent> gossip_;  // set in Start, before the session runs
  std::unique_ptr<common::ThreadPool> pool_;
  std::unique_ptr<DispatchService> service_;
  std::unique_ptr<CoordinatorSession> session_;
  std::unique_ptr<ClockProber> prober_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string advertise_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace marketprism::node
