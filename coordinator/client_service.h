// File: coordinator/client_service.h
//
// The client-facing Coordinator service: Execute goes through the front door
// (route, forward or hold); GetStatus, GetHealth, ListNodes and DrainNode are
// answered by the leader — a follower forwards them — from the scheduler's
// snapshot (and, for ListNodes, gossip's members). Conversions to the wire
// are coordinator/client_wire.h's.
//
// Callback reactors on gRPC threads; nothing blocks. Everything borrowed
// must outlive the service.
#pragma once

#include <functional>
#include <string>

#include "common/clock.h"
#include "common/gossip/membership.h"
#include "coordinator/exchange_monitor.h"
#include "coordinator/front_door.h"
#include "coordinator/health.h"
#include "coordinator/node_sessions.h"
#include "coordinator/scheduler.h"
#include "marketprism/v1/coordinator.grpc.pb.h"

namespace marketprism::coordinator {

class ClientService final : public v1::Coordinator::CallbackService {
 public:
  struct Options {
    std::string name;
    absl::Duration default_deadline = absl::Seconds(30);  // a call without one
    HealthThresholds health;
  };
  ClientService(Options options, common::Clock& clock, FrontDoor& front_door, Scheduler& scheduler,
                NodeSessions& sessions);

  // Gossip's members for ListNodes (borrowed until the service stops; none without gossip).
  void set_membership(common::gossip::Membership* m) { membership_ = m; }
  // The exchange health monitor whose checks and probes GetHealth adds (borrowed; none: no monitor).
  void set_monitor(ExchangeMonitor* m) { monitor_ = m; }

  grpc::ServerUnaryReactor* Execute(grpc::CallbackServerContext* ctx, const v1::ExecuteRequest* req,
                                    v1::ExecuteResponse* resp) override;
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* ctx, const v1::GetStatusRequest* req,
                                      v1::GetStatusResponse* resp) override;
  grpc::ServerUnaryReactor* GetHealth(grpc::CallbackServerContext* ctx, const v1::GetHealthRequest* req,
                                      v1::GetHealthResponse* resp) override;
  grpc::ServerUnaryReactor* ListNodes(grpc::CallbackServerContext* ctx, const v1::ListNodesRequest* req,
                                      v1::ListNodesResponse* resp) override;
  grpc::ServerUnaryReactor* DrainNode(grpc::CallbackServerContext* ctx, const v1::DrainNodeRequest* req,
                                      v1::DrainNodeResponse* resp) override;

 private:
  // A follower passes the call to the leader (true: the reactor is taken
  // care of). False when this coordinator leads: the caller answers.
  template <typename Req, typename Resp, typename Call>
  bool ForwardToLeader(grpc::CallbackServerContext* ctx, grpc::ServerUnaryReactor* reactor, const Req* req,
                       Resp* resp, Call call);

  const Options options_;
  common::Clock& clock_;
  FrontDoor& front_door_;
  Scheduler& scheduler_;
  NodeSessions& sessions_;
  common::gossip::Membership* membership_ = nullptr;
  ExchangeMonitor* monitor_ = nullptr;
};

}  // namespace marketprism::coordinator
