// File: coordinator/lease_pusher.h
//
// Account leases in motion: the leader's AccountLeases (coordinator/leases.h,
// sans-I/O) driven by time and events, its grants sent to the nodes in view,
// its shares handed to the scheduler for placement. It ticks four times a
// second on the clock's timer (renewals, lapsed shares), and at once when a
// node registers or a request names a new account.
//
// Thread-safe. Never blocks: grants go out through NodeSessions::Send,
// which queues.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/timer.h"
#include "coordinator/election.h"
#include "coordinator/leases.h"
#include "coordinator/node_sessions.h"
#include "coordinator/scheduler.h"

namespace marketprism::coordinator {

class LeasePusher {
 public:
  struct Options {
    LeaseOptions leases;
    // "" without gossip: nodes then accept any coordinator at the term.
    std::string coordinator_id;
    // With gossip, only the leader shares accounts out.
    bool elected = false;
  };
  // Everything borrowed must outlive this object.
  LeasePusher(Options options, common::Clock& clock, Scheduler& scheduler, NodeSessions& sessions,
              std::function<Leadership()> leadership);
  ~LeasePusher();

  // Starts the timer.
  void Start();
  void Stop();

  // A request names `account`: leases its pools out now if it is new.
  void AddAccount(const std::string& exchange, const std::string& account) ABSL_LOCKS_EXCLUDED(mu_);
  // A node registered reporting the leases it still holds.
  void Registered(const std::string& node_id, const google::protobuf::RepeatedPtrField<v1::AccountLease>& held)
      ABSL_LOCKS_EXCLUDED(mu_);
  // This coordinator took the lead; `fresh`: the cluster's first term.
  void TakeLead(bool fresh) ABSL_LOCKS_EXCLUDED(mu_);
  // Reshares, renews and sends what changed.
  void Tick() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const Options options_;
  common::Clock& clock_;
  Scheduler& scheduler_;
  NodeSessions& sessions_;
  const std::function<Leadership()> leadership_;
  absl::Mutex mu_;
  std::unique_ptr<AccountLeases> leases_ ABSL_GUARDED_BY(mu_);
  common::Timer timer_;
};

}  // namespace marketprism::coordinator
