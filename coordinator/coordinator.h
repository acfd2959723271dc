// File: coordinator/coordinator.h
//
// mp-coordinator: serves the client-facing Coordinator service, the
// node-facing NodeControl service, grpc.health.v1 and server reflection on
// one port. Nodes register over NodeControl.Session; their IPs' budgets are
// the scheduler's; each Execute goes through the Router. A timer thread runs
// the scheduler's time-driven work (window edges, deadlines); another reads
// Binance's published limits at start, periodically and after a 429, and
// pushes any change to every node.
//
// With --gossip it is also a gossip member (coordinator/election.h): it
// learns nodes' suspicion and death from gossip (a suspect node gets no new
// work; a dead one's in-flight calls are cancelled so idempotent requests are
// retried elsewhere), and only the leader of the highest term places work. A
// follower refuses node sessions (naming the leader) and forwards client
// calls to the leader; calls that find no leader, or whose leader died under
// them, are held until one is elected or their deadline passes.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/gossip/agent.h"
#include "coordinator/coordinator_options.h"
#include "coordinator/election.h"
#include "coordinator/leases.h"
#include "coordinator/router.h"
#include "coordinator/scheduler.h"
#include "marketprism/v1/coordinator.grpc.pb.h"

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
  // The gossip address bound ("" without gossip).
  std::string gossip_address() const;
  Leadership leadership();

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

  // ---- gossip and leadership ----
  void GossipLoop();
  void OnMemberEvent(const common::gossip::MemberEvent& e);
  // Re-runs the election on gossip's view; acts on a change of leader.
  void Reelect();
  // Routes a client request: placed here when leading, forwarded to the
  // leader otherwise, held while there is none.
  using ExecuteDone = std::function<void(absl::StatusOr<v1::ExecuteResponse>)>;
  void Route(const v1::ExecuteRequest& req, absl::Time deadline, ExecuteDone done,
             std::function<bool()> cancelled);
  void Forward(const v1::ExecuteRequest& req, absl::Time deadline, const std::string& leader,
               ExecuteDone done, std::function<bool()> cancelled);
  // Keeps a call until leadership changes (or a node registers), then runs
  // `retry`; at `deadline` answers it UNAVAILABLE instead.
  void Hold(absl::Time deadline, std::function<void()> retry, ExecuteDone done);
  void ReleaseHeld();
  void ExpireHeld();
  std::shared_ptr<v1::Coordinator::Stub> StubFor(const std::string& address);
  // Account leases: reshares and renews (leader only), tells the scheduler
  // the shares and sends each node in view its leases.
  void LeaseTick();

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
  std::string advertise_;
  std::unique_ptr<common::gossip::GossipAgent> gossip_;
  std::thread gossip_thread_;

  struct Held {
    absl::Time deadline;
    std::function<void()> retry;
    ExecuteDone done;
    absl::Time retry_at;  // tried again then even if nothing changed
  };

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool refresh_now_ ABSL_GUARDED_BY(mu_) = false;
  bool wakeup_moved_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_refresh_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::map<std::string, std::shared_ptr<NodeConn>> sessions_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Election> election_ ABSL_GUARDED_BY(mu_);
  Leadership lead_ ABSL_GUARDED_BY(mu_);
  absl::Time led_since_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::deque<common::gossip::MemberEvent> events_ ABSL_GUARDED_BY(mu_);
  std::vector<Held> held_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<v1::Coordinator::Stub>> stubs_ ABSL_GUARDED_BY(mu_);
  // Taken before mu_ when both are needed.
  absl::Mutex leases_mu_;
  std::unique_ptr<AccountLeases> leases_ ABSL_GUARDED_BY(leases_mu_);
};

}  // namespace marketprism::coordinator
