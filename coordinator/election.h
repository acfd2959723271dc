// File: coordinator/election.h
//
// Who leads the coordinators. Gossip says which coordinators are up and what
// term each claims; the election turns that into a decision, and the nodes
// enforce it: each accepts work only under the highest (term, coordinator) it
// has seen, so two coordinators that both believe they lead never both spend
// one IP's budget.
//
//  * A claim is a coordinator's "term" record > 0. The best claim among live
//    coordinators (alive or suspect) is the highest term; at equal terms the
//    lower name wins. A leader that sees a better claim, or hears from a node
//    that a higher term exists, steps down at once.
//  * With no live claim, a coordinator waits a hold-down (the old leader may
//    only be slow: suspicion is not death) and then the alive coordinator
//    with the lowest name claims a term above every term seen anywhere:
//    coordinators' records (dead ones included), nodes' fences, its own past.
//
// Pure: no clock, no I/O; the coordinator feeds it what gossip shows.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace marketprism::coordinator {

struct CoordinatorSeen {
  std::string name;
  std::string grpc;   // where its Coordinator service is
  int64_t term = 0;   // the term it claims to lead (0: none)
  bool live = false;  // alive or suspect: its claim still stands
  bool alive = false; // alive (not suspect): it may be elected
};

struct Leadership {
  bool leading = false;
  int64_t term = 0;         // the leader's term (0: no leader known)
  std::string leader;       // its name
  std::string leader_grpc;  // its address
  bool claimed_now = false; // this update made us leader
  bool stepped_down = false;
};

class Election {
 public:
  Election(std::string self, std::string self_grpc, absl::Duration hold_down);

  // `others`: every other coordinator gossip knows of, in any state.
  // `floor`: the highest term any node reports having accepted.
  Leadership Update(absl::Time now, const std::vector<CoordinatorSeen>& others, int64_t floor);

  // A node refused our work: it has seen `term`. Steps down if it is ours or newer.
  void ObserveTerm(int64_t term);

  // The term this coordinator leads, 0 if it does not.
  int64_t term() const { return term_; }
  int64_t highest_seen() const { return highest_seen_; }

 private:
  const std::string self_, self_grpc_;
  const absl::Duration hold_down_;
  int64_t term_ = 0;
  int64_t highest_seen_ = 0;
  absl::Time leaderless_since_ = absl::InfiniteFuture();
};

}  // namespace marketprism::coordinator
