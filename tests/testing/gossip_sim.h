// File: tests/testing/gossip_sim.h
//
// A deterministic world for gossip Cores: a virtual clock and a virtual
// network with loss, delay, partitions, frozen processes, crashed processes
// (the host answers with ICMP port-unreachable and refused connections) and
// downed hosts (silence). Everything is driven from one event queue ordered
// by (time, sequence) and one seeded RNG, so the same seed gives the same
// trace, byte for byte.
//
// Used by the gossip unit tests and the 1000-member simulation.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "common/gossip/core.h"

namespace marketprism::testing {

class GossipSim {
 public:
  struct Options {
    uint64_t seed = 1;
    absl::Duration min_delay = absl::Microseconds(200);
    absl::Duration max_delay = absl::Milliseconds(2);
    double loss = 0;  // per datagram, at the receiver
    absl::Duration stream_timeout = absl::Seconds(1);
    common::gossip::GossipOptions gossip;  // name and addr are set per member
  };

  // One observed event: `observer` saw `subject` go `kind` at `at`.
  struct Observation {
    absl::Time at;
    int observer = 0;
    int subject = -1;  // index, or -1 for a member the sim does not know
    common::gossip::MemberEvent::Kind kind;
    uint32_t incarnation = 0;  // of the subject, as the observer holds it
  };

  explicit GossipSim(Options options);

  // Adds a member (index returned); it joins through `seeds` (indexes) at `at`.
  int Add(std::vector<int> seeds, absl::Time at);
  // Adds `n` members joining one after another `spacing` apart, each through
  // member 0 (the first joins alone).
  void AddMany(int n, absl::Duration spacing);
  // A new process (a new member id) at crashed member i's address, joining
  // through `seeds` now. Returns its index.
  int Restart(int i, std::vector<int> seeds);

  void RunUntil(absl::Time t);
  void RunFor(absl::Duration d) { RunUntil(now_ + d); }
  absl::Time now() const { return now_; }
  absl::Time start() const { return start_; }

  // Faults, effective at now().
  void Crash(int i);                        // process gone, host answers ICMP/RST
  void HostDown(int i);                     // silent: nothing answers
  void Stall(int i, absl::Duration d);      // frozen: packets wait, then are handled
  void Partition(std::vector<int> side);    // `side` cannot talk with the rest
  void Heal();
  void SetLoss(double loss) { options_.loss = loss; }
  void SetRecord(int i, const std::string& key, const std::string& value, bool urgent = true);
  void Leave(int i);

  int size() const { return static_cast<int>(members_.size()); }
  bool running(int i) const;  // neither crashed nor down
  common::gossip::Core& core(int i) { return *members_[static_cast<size_t>(i)]->core; }
  int IndexOf(common::gossip::MemberId id) const;
  const std::vector<Observation>& observations() const { return log_; }
  // A digest of every event and datagram so far, for reproducibility checks.
  uint64_t trace_hash() const { return trace_; }
  uint64_t packets_sent() const { return packets_; }
  // Full push-pull syncs member i started, and those it was asked for.
  int syncs_started(int i) const { return SyncCount(syncs_started_, i); }
  int syncs_answered(int i) const { return SyncCount(syncs_answered_, i); }
  // Ticks after which a core still wanted a tick at the same instant (a
  // timer that never advances): always 0 unless the core has a bug.
  uint64_t stuck_ticks() const { return stuck_ticks_; }

  // What member `observer` currently holds `subject` to be (nullopt: unknown).
  std::optional<common::gossip::MemberState> StateAt(int observer, int subject) const;

 private:
  struct Member {
    std::unique_ptr<common::gossip::Core> core;
    std::string addr;
    common::gossip::MemberId id = 0;
    bool crashed = false;
    bool down = false;
    absl::Time stalled_until = absl::InfinitePast();
    int side = 0;
    absl::Time scheduled_tick = absl::InfiniteFuture();
    absl::Time last_tick = absl::InfinitePast();
  };
  using Action = std::function<void()>;

  int AddAt(std::string addr, std::vector<int> seeds, absl::Time at);
  void At(absl::Time t, Action a);
  // Runs `a` on member i as soon as it is not frozen (now, or at thaw).
  template <typename F>
  void OnMember(int i, F&& a) {
    // Runs at once unless frozen: only a deferred action becomes an Action
    // (a heap allocation per datagram otherwise).
    Member& m = *members_[static_cast<size_t>(i)];
    if (m.core == nullptr || m.crashed) return;
    if (now_ < m.stalled_until) {
      Defer(i, Action(std::forward<F>(a)));
      return;
    }
    a();
  }
  void Defer(int i, Action a);  // OnMember at thaw
  void Drain(int i);  // sends what member i's core wants sent
  void Schedule(int i);
  void DeliverPacket(int from, std::shared_ptr<const common::gossip::Outbox::Packet> p);
  void DeliverStream(int from, uint64_t id, const std::string& to_addr, v1::StreamRequest request);
  int ByAddr(const std::string& addr) const;
  absl::Duration Delay();
  bool Connected(int a, int b) const;
  void Mix(uint64_t v);

  Options options_;
  std::mt19937_64 rng_;
  absl::Time start_;
  absl::Time now_;
  uint64_t seq_ = 0;
  struct Event {
    absl::Time at;
    uint64_t seq;
    Action action;
  };
  struct Later {
    bool operator()(const Event& a, const Event& b) const {
      return a.at != b.at ? a.at > b.at : a.seq > b.seq;
    }
  };
  std::priority_queue<Event, std::vector<Event>, Later> events_;
  std::vector<std::unique_ptr<Member>> members_;
  absl::flat_hash_map<std::string, int> by_addr_;
  std::map<common::gossip::MemberId, int> by_id_;
  std::vector<Observation> log_;
  uint64_t trace_ = 1469598103934665603ULL;
  uint64_t packets_ = 0;
  std::map<int, int> syncs_started_, syncs_answered_;  // by member index
  static int SyncCount(const std::map<int, int>& m, int i) {
    auto it = m.find(i);
    return it == m.end() ? 0 : it->second;
  }
  uint64_t stuck_ticks_ = 0;
};

}  // namespace marketprism::testing
