// File: coordinator/router.h
//
// One Execute, end to end: the scheduler places the request, the router
// dispatches each placement to its node through a NodeClient, hands the
// node's answer back to the scheduler, and answers the caller once — with
// the exchange's reply, or with the scheduler's final error.
//
// Thread-safe. Nothing blocks: Dispatch is asynchronous and every callback
// runs on whichever thread delivered the event.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/scheduler.h"
#include "marketprism/v1/coordinator.pb.h"
#include "marketprism/v1/node.pb.h"

namespace marketprism::coordinator {

// How the coordinator reaches its nodes.
class NodeClient {
 public:
  using DispatchDone = std::function<void(absl::Status, v1::DispatchResponse)>;
  virtual ~NodeClient() = default;
  // Sends `request` to the node; `done` runs once with the node's answer, or
  // with the transport error (then the response is empty). `deadline` is the
  // local-clock time after which the node must not send it.
  virtual void Dispatch(const std::string& node_id, v1::DispatchRequest request,
                        absl::Time deadline, DispatchDone done) = 0;
};

struct RouterOptions {
  // The scheduler's deadline is the caller's minus this, leaving time for
  // the exchange round trip, so RESOURCE_EXHAUSTED reaches the caller before
  // its own deadline does.
  absl::Duration dispatch_margin = absl::Milliseconds(20);
  int64_t term = 1;
  std::string coordinator_id;  // with the term, the fencing token nodes check
  // Called when a node refused work as from an old term (it has seen `highest`).
  std::function<void(int64_t highest)> on_stale_term;
  // Called when an exchange refused a request for load (429, 418, ...).
  std::function<void(const std::string& exchange)> on_rejection;
  // A request names an account (it spends the account's pools): called
  // before it is submitted, so the account's pools get leased out.
  std::function<void(const std::string& exchange, const std::string& account)> on_account;
};

class Router {
 public:
  using Done = std::function<void(absl::StatusOr<v1::ExecuteResponse>)>;

  // `scheduler` and `nodes` must outlive the router.
  Router(Scheduler& scheduler, NodeClient& nodes, RouterOptions options = {});

  // `deadline` is the caller's (local clock). `cancelled`, if set, is asked
  // before each dispatch; a cancelled call is dropped and its budget refunded.
  // `record`, when it has a key, asks the node that sends the request to
  // write the reply to its sinks as that record (the leader's polls and
  // health probes).
  void Execute(const v1::ExecuteRequest& request, absl::Time deadline, Done done,
               std::function<bool()> cancelled = nullptr, bool limits_probe = false, v1::RecordAs record = {});

  void set_term(int64_t term) { term_.store(term); }
  int64_t term() const { return term_.load(); }

 private:
  struct Call;
  void OnPlaced(const std::shared_ptr<Call>& call, absl::StatusOr<Placement> placement);
  void OnDispatched(const std::shared_ptr<Call>& call, const Placement& placement,
                    absl::Status status, v1::DispatchResponse response);

  Scheduler& scheduler_;
  NodeClient& nodes_;
  RouterOptions options_;
  std::atomic<int64_t> term_;
};

// The scheduler's view of a node's answer.
DispatchOutcome ToOutcome(const absl::Status& status, const v1::DispatchResponse& response);

}  // namespace marketprism::coordinator
