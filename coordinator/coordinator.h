// File: coordinator/coordinator.h
//
// mp-coordinator: serves the client-facing Coordinator service, the
// node-facing NodeControl service, grpc.health.v1 and server reflection on
// one port. Nodes register over NodeControl.Session; their IPs' budgets are
// the scheduler's; each Execute goes through the Router. A timer thread runs
// the scheduler's time-driven work (window edges, deadlines); another reads
// Binance's published limits at start, periodically and after a 429, and
// pushes any change to every node.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "coordinator/coordinator_options.h"
#include "coordinator/router.h"
#include "coordinator/scheduler.h"

namespace grpc {
class Server;
}  // namespace grpc

namespace marketprism::coordinator {

class Coordinator {
 public:
  static absl::StatusOr<std::unique_ptr<Coordinator>> Create(CoordinatorOptions options,
                                                             common::Clock& clock);
  ~Coordinator();

  // kUnavailable if the listen address cannot be bound.
  absl::Status Start();
  void Wait();
  void Shutdown();
  int port() const { return port_; }

  class ClientService;
  class ControlService;
  class GrpcNodeClient;
  struct NodeConn;

 private:
  Coordinator(CoordinatorOptions options, common::Clock& clock, common::RulesBook rules);
  void TimerLoop();
  void RefreshLoop();
  void RequestRefresh(const std::string& exchange);
  void PushLimits();
  void PushDrain(const std::string& node_id, bool draining);
  // Registration and reports from a node's session.
  void OnRegister(const std::shared_ptr<NodeConn>& conn, const v1::Register& r);
  void OnReport(const std::string& node_id, const v1::UsageReport& r);
  void OnSessionEnd(const std::shared_ptr<NodeConn>& conn);
  void ApplyEvents(const std::string& node_id,
                   const google::protobuf::RepeatedPtrField<v1::UsageEvent>& events);

  CoordinatorOptions options_;
  common::Clock& clock_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<GrpcNodeClient> node_client_;
  std::unique_ptr<Router> router_;
  std::unique_ptr<ClientService> client_service_;
  std::unique_ptr<ControlService> control_service_;
  std::unique_ptr<grpc::Server> server_;
  std::thread timer_thread_;
  std::thread refresh_thread_;
  int port_ = 0;
  int64_t term_ = 1;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool refresh_now_ ABSL_GUARDED_BY(mu_) = false;
  bool wakeup_moved_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_refresh_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::map<std::string, std::shared_ptr<NodeConn>> sessions_ ABSL_GUARDED_BY(mu_);
};

}  // namespace marketprism::coordinator
