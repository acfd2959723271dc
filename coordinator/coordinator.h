// File: coordinator/coordinator.h
//
// mp-coordinator's composition root. It builds the parts from Options and
// the injected transports, wires them and starts them; it holds no logic of
// its own. A request's path through the parts:
//
//   ClientService (client_service.h)      the client-facing gRPC service
//     -> FrontDoor (front_door.h)          leadership: route, forward, hold
//     -> Router (router.h)                 one Execute end to end
//     -> Scheduler (scheduler.h)           budget, placement, queue
//     -> GrpcNodeClient (node_transport.h) Node.Dispatch to the chosen node
//
// Beside it: NodeSessions (node_sessions.h) serves the nodes' sessions, and
// the Registrar (registration.h) turns registrations and reports into the
// scheduler's state; LeasePusher (lease_pusher.h) shares account pools out;
// LimitsRefresher (limits_refresher.h) reads published limits; MemberWatch
// (member_watch.h) acts on gossip and reruns the election. Time-driven work
// runs on the injected clock's timers.
//
// Without a membership this coordinator leads term 1. Thread-safe.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/executor.h"
#include "common/net/http_client.h"
#include "common/gossip/membership.h"
#include "common/net/grpc_channels.h"
#include "common/timer.h"
#include "coordinator/client_service.h"
#include "coordinator/collection.h"
#include "coordinator/collector_service.h"
#include "coordinator/coordinator_options.h"
#include "coordinator/exchange_monitor.h"
#include "coordinator/front_door.h"
#include "coordinator/lease_pusher.h"
#include "coordinator/limits_refresher.h"
#include "coordinator/member_watch.h"
#include "coordinator/node_sessions.h"
#include "coordinator/node_transport.h"
#include "coordinator/registration.h"
#include "coordinator/router.h"
#include "coordinator/scheduler.h"

namespace grpc {
class Channel;
class Server;
}  // namespace grpc

namespace marketprism::coordinator {

// How the coordinator reaches the world; the defaults are the real ones.
struct CoordinatorTransports {
  common::ChannelFactory channels;  // default: TCP without TLS
  // Default: a gossip agent when options.membership is enabled, else none.
  common::gossip::MembershipFactory membership;
  // Serve no port; callers use InProcessChannel() (options.advertise names it).
  bool in_process = false;
};

class Coordinator {
 public:
  // kInvalidArgument for bad options or rules. `clock` must outlive it.
  static absl::StatusOr<std::unique_ptr<Coordinator>> Create(CoordinatorOptions options, common::Clock& clock,
                                                             CoordinatorTransports transports = {});
  ~Coordinator();

  // kUnavailable if the listen address cannot be bound or gossip cannot start.
  absl::Status Start();
  // Blocks until Shutdown().
  void Wait();
  void Shutdown();

  int port() const { return port_; }
  // The gossip address bound ("" without gossip).
  std::string gossip_address() const;
  Leadership leadership() { return front_door_->leadership(); }
  std::shared_ptr<grpc::Channel> InProcessChannel();

 private:
  Coordinator(CoordinatorOptions options, common::Clock& clock, CoordinatorTransports transports,
              common::RulesBook rules);
  void OnLeadershipChange(const FrontDoor::Change& c);
  void PushLimits();
  std::string Advertise() const;
  void Tick();
  // Sends a payload to --alert-webhook on alert_pool_: three tries, 5 s each.
  void PostAlert(std::string payload);

  CoordinatorOptions options_;
  common::Clock& clock_;
  CoordinatorTransports transports_;
  const bool elected_;  // a membership runs the election
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<GrpcNodeClient> node_client_;
  std::unique_ptr<Router> router_;
  std::unique_ptr<FrontDoor> front_door_;
  std::unique_ptr<NodeSessions> sessions_;
  std::unique_ptr<LeasePusher> leases_;
  std::unique_ptr<Registrar> registrar_;
  std::unique_ptr<LimitsRefresher> refresher_;
  std::unique_ptr<MemberWatch> member_watch_;
  std::unique_ptr<ClientService> client_service_;
  std::unique_ptr<Collection> collection_;
  std::unique_ptr<common::HttpClient> alert_http_;
  std::unique_ptr<common::ThreadPool> alert_pool_;  // posts to --alert-webhook (joined before alert_http_ goes)
  std::unique_ptr<ExchangeMonitor> monitor_;
  std::unique_ptr<CollectorService> collector_service_;
  std::unique_ptr<JobReplicationService> job_replication_;
  std::unique_ptr<common::gossip::Membership> membership_;
  std::unique_ptr<grpc::Server> server_;
  common::Timer ticker_;  // the scheduler's window edges and deadlines
  int port_ = 0;
  std::string advertise_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace marketprism::coordinator
