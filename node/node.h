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
#include "common/gossip/membership.h"
#include "common/net/grpc_channels.h"
#include "common/rules/rules.h"
#include "common/net/ws_client.h"
#include "node/clock_prober.h"
#include "node/collector.h"
#include "node/coordinator_session.h"
#include "node/dispatch_service.h"
#include "node/exchange_lane.h"
#include "node/http_client_factory.h"
#include "node/node_options.h"
#include "node/sinks/sinks.h"
#include "node/term_fence.h"

namespace grpc {
class Channel;
class Server;
}  // namespace grpc

namespace marketprism::node {

// How the node reaches the world; Create fills in the real ones left unset.
struct NodeTransports {
  HttpClientFactory http;           // the exchanges (required)
  common::ChannelFactory channels;  // coordinators; default InsecureChannelFactory()
  // Default: a gossip agent when options.membership is enabled, else none.
  common::gossip::MembershipFactory membership;
  // The exchanges' WebSocket streams; default: an LwsWsClient made at Start.
  std::function<absl::StatusOr<std::unique_ptr<common::WsClient>>()> ws;
  // Serve Node.Dispatch on no port; callers use InProcessChannel()
  // (options.advertise is what the node tells coordinators).
  bool in_process = false;
};

class Node {
 public:
  // Builds the lanes (those with a URL of their own get their HttpClient
  // from `transports.http` now) and the parts; starts nothing. `rules` are
  // the ones the options were validated against (NodeConfig). `clock` must
  // outlive the node. kInvalidArgument if an exchange is unknown, the HTTP
  // factory is missing, or an in-process node has no advertise address.
  static absl::StatusOr<std::unique_ptr<Node>> Create(NodeOptions options, common::RulesBook rules,
                                                      common::Clock& clock, NodeTransports transports);
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
  // An in-process channel to Node.Dispatch (after Start).
  std::shared_ptr<grpc::Channel> InProcessChannel();

 private:
  Node(NodeOptions options, common::RulesBook rules, common::Clock& clock, NodeTransports transports);
  // Gives `exchange`'s lane a client for `url` (proxy resolved, egress IP
  // bound) and has its clock probed again.
  void ConfigureEndpoint(const std::string& exchange, const std::string& url);
  // Admits (term, coordinator) through the fence; publishes a raised fence.
  bool AdmitTerm(int64_t term, const std::string& coordinator);
  // What gossip shows of the leader now (nullopt without gossip). Pure read.
  std::optional<LeaderClaim> GossipLeaderClaim();
  absl::Status StartGossip();
  void PublishUsage();
  // The WebSocket base for `exchange`: --ws-url, else the coordinator's
  // offer, else the REST URL's host (ws:// for http://: the simulator serves
  // both), else the rules'.
  std::string WsBase(const std::string& exchange) ABSL_LOCKS_EXCLUDED(mu_);
  // A book's snapshot: Coordinator.Execute at the session's coordinator, so
  // the scheduler prices and places it like any request (priority above
  // clients': a book without its snapshot collects nothing).
  void FetchSnapshot(const std::string& exchange, const std::string& path, const common::QueryParams& query,
                     std::function<void(absl::StatusOr<std::string>)> done);
  // Writes records to `specs` from now on (nothing to do if they are the
  // ones in use): the new sinks start before the old stop, each spool in a
  // folder of its own spec. Not on the collector's thread: stopping drains.
  absl::Status UseSinks(const std::vector<std::string>& specs) ABSL_LOCKS_EXCLUDED(sinks_mu_);
  std::vector<v1::SinkState> SinkStates() ABSL_LOCKS_EXCLUDED(sinks_mu_);

  const NodeOptions options_;
  common::Clock& clock_;
  const common::RulesBook rules_;
  const NodeTransports transports_;
  Lanes lanes_;  // fixed after the constructor
  TermFence fence_;
  std::atomic<int64_t> published_fence_{-1};
  std::unique_ptr<common::gossip::Membership> gossip_;  // set in Start, before the session runs
  std::unique_ptr<common::ThreadPool> pool_;
  std::unique_ptr<DispatchService> service_;
  std::unique_ptr<CoordinatorSession> session_;
  std::unique_ptr<ClockProber> prober_;
  std::unique_ptr<common::WsClient> ws_;
  std::unique_ptr<Collector> collector_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string advertise_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, std::string> offered_ws_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> rest_urls_ ABSL_GUARDED_BY(mu_);

  // The collector offers every record to the sinks under its own lock.
  absl::Mutex sinks_mu_;
  std::unique_ptr<Sinks> sinks_ ABSL_GUARDED_BY(sinks_mu_);
  std::vector<std::string> sink_specs_ ABSL_GUARDED_BY(sinks_mu_);
};

}  // namespace marketprism::node
