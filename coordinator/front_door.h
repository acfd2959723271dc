// File: coordinator/front_door.h
//
// Leadership at the client's door. Every client call passes here first: the
// leader routes it (Router), a follower forwards it to the leader, and with
// no leader — or right after a takeover, while nodes re-register — it is
// held until one appears or its deadline passes. The front door also owns
// the election's state: gossip's view goes in (Reelect), a node's word that
// a newer term exists goes in (ObserveTerm), and who leads comes out.
//
// Thread-safe; nothing blocks. Held calls are expired (or retried, every
// 250 ms) on the clock's timer; forwarded calls are asynchronous gRPC calls
// through the injected ChannelFactory.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/net/grpc_channels.h"
#include "common/timer.h"
#include "coordinator/election.h"
#include "coordinator/router.h"
#include "marketprism/v1/coordinator.grpc.pb.h"

namespace marketprism::coordinator {

class FrontDoor {
 public:
  struct Options {
    std::string name;
    absl::Duration dispatch_margin = absl::Milliseconds(20);
    absl::Duration takeover_grace = absl::Seconds(3);
    absl::Duration leader_hold_down = absl::Milliseconds(500);
  };
  using Done = std::function<void(absl::StatusOr<v1::ExecuteResponse>)>;

  // Everything borrowed must outlive this object.
  FrontDoor(Options options, common::Clock& clock, Router& router, common::ChannelFactory channels);
  ~FrontDoor();

  // Without gossip: this coordinator leads term 1 for good.
  void LeadAlone(const std::string& advertise) ABSL_LOCKS_EXCLUDED(mu_);
  // With gossip: an election from term 0, this coordinator reachable at `advertise`.
  void StartElection(const std::string& advertise) ABSL_LOCKS_EXCLUDED(mu_);

  Leadership leadership() ABSL_LOCKS_EXCLUDED(mu_);
  // What changed in one Reelect.
  struct Change {
    Leadership before, now;
    bool gained() const { return now.claimed_now; }
    bool lost() const { return before.leading && !now.leading; }
    bool changed() const {
      return before.leader != now.leader || before.term != now.term || before.leading != now.leading;
    }
  };
  // Gossip's view of the other coordinators and the nodes' highest fence.
  // The caller acts on the change, then releases held calls (ReleaseHeld).
  Change Reelect(const std::vector<CoordinatorSeen>& others, int64_t floor) ABSL_LOCKS_EXCLUDED(mu_);
  // A node has seen `term`: a leader at or below it steps down.
  void ObserveTerm(int64_t term) ABSL_LOCKS_EXCLUDED(mu_);

  // One client call (`deadline` on the local clock; `cancelled` may be null).
  void Route(const v1::ExecuteRequest& req, absl::Time deadline, Done done, std::function<bool()> cancelled);
  // A stub for the coordinator at `address` (the leader, for forwarding).
  std::shared_ptr<v1::Coordinator::Stub> StubFor(const std::string& address) ABSL_LOCKS_EXCLUDED(mu_);
  // Held calls are tried again now (a node registered, the leader changed).
  void ReleaseHeld() ABSL_LOCKS_EXCLUDED(mu_);
  // Fails every held call; no more are held.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Held {
    absl::Time deadline;
    std::function<void()> retry;
    Done done;
    absl::Time retry_at;  // tried again then even if nothing changed
  };
  void Forward(const v1::ExecuteRequest& req, absl::Time deadline, const std::string& leader, Done done,
               std::function<bool()> cancelled);
  // Keeps a call until leadership changes (or a node registers), then runs
  // `retry`; at `deadline` answers it UNAVAILABLE instead.
  void Hold(absl::Time deadline, std::function<void()> retry, Done done) ABSL_LOCKS_EXCLUDED(mu_);
  void ExpireHeld() ABSL_LOCKS_EXCLUDED(mu_);

  const Options options_;
  common::Clock& clock_;
  Router& router_;
  const common::ChannelFactory channels_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<Election> election_ ABSL_GUARDED_BY(mu_);
  Leadership lead_ ABSL_GUARDED_BY(mu_);
  absl::Time led_since_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::vector<Held> held_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<v1::Coordinator::Stub>> stubs_ ABSL_GUARDED_BY(mu_);
  common::Timer expiry_;
};

}  // namespace marketprism::coordinator
