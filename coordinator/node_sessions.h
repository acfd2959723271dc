// File: coordinator/node_sessions.h
//
// The node-facing NodeControl service: one long-lived session per node. A
// node's first message registers it (checked here: id, egress IP, dispatch
// address); a coordinator that does not lead refuses, naming the leader. The
// rest of the session carries the node's usage reports in and limits, drain
// commands and leases out.
//
// What registration and reports *mean* is not this file's: the hooks (the
// registrar, coordinator/registration.h) seed the scheduler and build the
// welcome. This file owns the sessions: which node has one, sending to it,
// ending it.
//
// Thread-safe. Nothing blocks: sessions are callback reactors; Send queues
// the message on the session and returns (so a timer or a gRPC reactor may
// call it). Hooks run on gRPC threads, without this object's lock.
#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/election.h"
#include "marketprism/v1/node.grpc.pb.h"

namespace marketprism::coordinator {

class NodeSessions final : public v1::NodeControl::CallbackService {
 public:
  struct Hooks {
    // Whether registrations are taken now. `node_highest_term` is the
    // highest term the node has seen: one above ours deposes us.
    std::function<Leadership(int64_t node_highest_term)> admit;
    // Seeds what the registration brings; returns the welcome (accepted).
    std::function<v1::Registered(const v1::Register&)> on_register;
    // After the welcome is queued and the session is the node's current one.
    std::function<void(const std::string& node_id)> after_register;
    std::function<void(const std::string& node_id, const v1::UsageReport&)> on_report;
    // Records the node's collection units made.
    std::function<void(const std::string& node_id, const v1::RecordBatch&)> on_records;
    // The node's current session ended (not one a newer session replaced).
    std::function<void(const std::string& node_id)> on_end;
  };

  // `name` is this coordinator's, for refusals.
  NodeSessions(std::string name, Hooks hooks);
  ~NodeSessions() override;

  grpc::ServerBidiReactor<v1::NodeMessage, v1::CoordinatorMessage>* Session(
      grpc::CallbackServerContext* ctx) override;

  // Queues `m` on the node's current session; false if it has none.
  bool Send(const std::string& node_id, const v1::CoordinatorMessage& m) ABSL_LOCKS_EXCLUDED(mu_);
  void SendAll(const v1::CoordinatorMessage& m) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends the node's session (it reconnects and finds the leader).
  void End(const std::string& node_id) ABSL_LOCKS_EXCLUDED(mu_);
  void EndAll() ABSL_LOCKS_EXCLUDED(mu_);
  // Nodes with a current session.
  std::set<std::string> Connected() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  class Reactor;
  // Checks the first message; "" when it is fine.
  static std::string Invalid(const v1::Register& r);
  void Registered(Reactor* r, const std::string& node_id) ABSL_LOCKS_EXCLUDED(mu_);
  void Done(Reactor* r, const std::string& node_id) ABSL_LOCKS_EXCLUDED(mu_);

  const std::string name_;
  const Hooks hooks_;
  absl::Mutex mu_;
  // A reactor stays valid while it is listed: it unlists itself (under mu_)
  // before it is deleted.
  std::map<std::string, Reactor*> current_ ABSL_GUARDED_BY(mu_);
  std::set<Reactor*> all_ ABSL_GUARDED_BY(mu_);
};

}  // namespace marketprism::coordinator
