// File: node/coordinator_session.h
//
// A node's session with the coordinator (NodeControl.Session, one stream at
// a time). Its life:
//
//   pick a target: a leader a refusing follower named, else the leader
//   gossip shows, else the configured coordinators in turn
//   -> Register (node id, egress IP, exchanges, highest term seen, the
//   ledger, leases still running, the rolling windows' recent sends)
//   -> Registered: accepted only under the term fence; apply its limits and
//   exchange URLs -> then apply Limits, Leases (fenced) and Drain as they
//   come, and report usage every `report_interval` or when nudged
//   -> leave when the stream breaks or a newer term is admitted, and start
//   over (backing off up to `reconnect_max`).
//
// Threads: the session runs on a thread of its own between Start() and
// Stop(), with a reader thread per stream; Nudge() and CheckLeader() may be
// called from any thread. Its waits (the reconnect back-off, the report
// interval) end on the injected clock's timer, so a FakeClock drives them.
// Everything it touches of the node is what it is handed in SessionParts.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/timer.h"
#include "common/net/grpc_channels.h"
#include "common/flags.h"
#include "marketprism/v1/node.pb.h"
#include "node/exchange_lane.h"
#include "node/gossip_records.h"
#include "node/term_fence.h"

namespace grpc {
class Channel;
class ClientContext;
}  // namespace grpc

namespace marketprism::node {

// Opens a channel to a coordinator's NodeControl at `target` (ADDR:PORT).
using common::ChannelFactory;
// Insecure TCP channels with keepalive (10 s, 5 s timeout): what mp-node uses.
ChannelFactory InsecureChannelFactory();

// Admits work under (term, coordinator): TermFence::Admit plus whatever the
// owner does when the fence moves (the node publishes it in gossip).
using AdmitTermFn = std::function<bool(int64_t term, const std::string& coordinator)>;

struct SessionOptions {
  std::string node_id;
  std::string egress_ip;
  // Tried in turn when no follower or gossip names the leader.
  std::vector<common::HostPort> coordinators;
  // Exchanges whose URL the node's own configuration sets: the coordinator's
  // offer is ignored for them.
  std::set<std::string> own_urls;
  absl::Duration report_interval = absl::Seconds(1);
  absl::Duration reconnect_max = absl::Seconds(2);
};

// What the session works with, borrowed from the node: everything here must
// outlive the session. The callbacks run on the session's threads.
struct SessionParts {
  const Lanes& lanes;
  const TermFence& fence;  // read only: the highest (term, coordinator) seen
  AdmitTermFn admit_term;
  // The leadership claim gossip shows now, or nullopt. A pure read: the
  // session admits it through `admit_term` where it means to.
  std::function<std::optional<LeaderClaim>()> leader_claim;
  // The coordinator names a REST base for `exchange` (not one of own_urls).
  std::function<void(const std::string& exchange, const std::string& url)> set_endpoint;
  // The coordinator names a WebSocket base for `exchange`.
  std::function<void(const std::string& exchange, const std::string& url)> set_ws_endpoint;
  // The leader's units for this node (fenced like any assignment).
  std::function<void(const marketprism::v1::Units&)> on_units;
  // After each usage report is written (the node refreshes its gossip record).
  std::function<void()> on_reported;
  // The cluster's sinks, from each registration (may be empty).
  std::function<void(const std::vector<std::string>&)> on_sinks;
  // The node's sinks' states, for each usage report.
  std::function<std::vector<marketprism::v1::SinkState>()> sink_states;
  ChannelFactory channel;
  common::Clock& clock;
};

class CoordinatorSession {
 public:
  CoordinatorSession(SessionOptions options, SessionParts parts);
  ~CoordinatorSession();  // Stop()
  CoordinatorSession(const CoordinatorSession&) = delete;
  CoordinatorSession& operator=(const CoordinatorSession&) = delete;

  // Starts the session thread. `advertise` is the ADDR:PORT the coordinator
  // dials for Node.Dispatch (known once the node's server is bound).
  void Start(std::string advertise);
  // Cancels the stream and joins. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);
  // Report now rather than at the next interval (a ban, a new clock estimate).
  void Nudge() ABSL_LOCKS_EXCLUDED(mu_);
  // Gossip changed what it knows of a coordinator: check who leads now (and
  // stop waiting to reconnect).
  void CheckLeader() ABSL_LOCKS_EXCLUDED(mu_);

  // Queues collected records for the leader; they go with the next write
  // (and wait for the next session while there is none). Bounded: beyond
  // kOutboxMax the oldest are dropped and counted (records_dropped()).
  static constexpr size_t kOutboxMax = 200'000;
  void Publish(std::vector<marketprism::v1::MarketEvent> events) ABSL_LOCKS_EXCLUDED(mu_);
  int64_t records_dropped() ABSL_LOCKS_EXCLUDED(mu_);
  // The coordinator of the session now ("" between sessions).
  std::string current_target() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  bool Stopping() ABSL_LOCKS_EXCLUDED(mu_);
  void Loop();
  // One stream, from picking its target to its end.
  void RunOnce();
  std::string PickTarget();
  // Raises the fence to the best claim gossip shows, and returns that claim.
  std::optional<LeaderClaim> ObserveLeaderClaims();
  // Whether the fence has moved past (term, coordinator).
  bool Superseded(int64_t term, const std::string& coordinator) const;
  void Apply(const marketprism::v1::CoordinatorMessage& msg);
  // Account leases from the leader (fenced by term like any assignment).
  void ApplyLeases(const marketprism::v1::Leases& leases) ABSL_LOCKS_EXCLUDED(mu_);
  template <typename Msg>
  void FillCommon(Msg* m);
  marketprism::v1::Register BuildRegister() ABSL_LOCKS_EXCLUDED(mu_);
  // Writes the outbox; false when the stream broke.
  template <typename Stream>
  bool WriteRecords(Stream& stream) ABSL_LOCKS_EXCLUDED(mu_);
  template <typename Stream>
  void Finish(Stream& stream, const std::shared_ptr<grpc::ClientContext>& ctx)
      ABSL_LOCKS_EXCLUDED(mu_);

  const SessionOptions options_;
  const SessionParts parts_;
  std::string advertise_;   // set before the thread starts
  size_t next_target_ = 0;  // the session thread's own
  std::thread thread_;

  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool nudge_ ABSL_GUARDED_BY(mu_) = false;
  bool leader_check_ ABSL_GUARDED_BY(mu_) = false;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;  // wake_ ran: a back-off or a report interval ended
  std::string redirect_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<grpc::ClientContext> ctx_ ABSL_GUARDED_BY(mu_);
  marketprism::v1::Leases leases_ ABSL_GUARDED_BY(mu_);  // the last admitted
  std::deque<marketprism::v1::MarketEvent> outbox_ ABSL_GUARDED_BY(mu_);
  int64_t records_dropped_ ABSL_GUARDED_BY(mu_) = 0;
  std::string target_ ABSL_GUARDED_BY(mu_);
  common::Timer wake_;  // back-off and report interval, on the injected clock
  absl::Time leases_received_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time leases_expire_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace marketprism::node
