// File: coordinator/member_watch.h
//
// What gossip tells the coordinator, acted on: a suspect node gets no new
// work until it answers; a dead (or departed) node's session ends, its calls
// in flight are cancelled (the router retries idempotent ones elsewhere) and
// it is disconnected; and every 50 ms the election is rerun on gossip's view
// of the coordinators and the nodes' fences (FrontDoor::Reelect), with
// `on_change` told when leadership changed.
//
// Thread-safe. Gossip's events are queued (OnEvent, on gossip's thread) and
// handled on the clock's timer, never on gossip's thread.
#pragma once

#include <deque>
#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/gossip/membership.h"
#include "common/timer.h"
#include "coordinator/front_door.h"
#include "coordinator/node_sessions.h"
#include "coordinator/node_transport.h"
#include "coordinator/scheduler.h"

namespace marketprism::coordinator {

class MemberWatch {
 public:
  // Everything borrowed must outlive this object.
  MemberWatch(common::Clock& clock, Scheduler& scheduler, GrpcNodeClient& nodes, NodeSessions& sessions,
              FrontDoor& front_door, std::function<void(const FrontDoor::Change&)> on_change);
  ~MemberWatch();

  // Watches `membership` (borrowed until Stop) from now on.
  void Start(common::gossip::Membership& membership) ABSL_LOCKS_EXCLUDED(mu_);
  void Stop();
  // From gossip's thread.
  void OnEvent(const common::gossip::MemberEvent& e) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Handle(const common::gossip::MemberEvent& e);
  void Reelect();
  void Tick() ABSL_LOCKS_EXCLUDED(mu_);

  common::Clock& clock_;
  Scheduler& scheduler_;
  GrpcNodeClient& nodes_;
  NodeSessions& sessions_;
  FrontDoor& front_door_;
  const std::function<void(const FrontDoor::Change&)> on_change_;
  common::gossip::Membership* membership_ = nullptr;  // set once by Start
  absl::Mutex mu_;
  std::deque<common::gossip::MemberEvent> events_ ABSL_GUARDED_BY(mu_);
  common::Timer timer_;
};

}  // namespace marketprism::coordinator
