// File: node/term_fence.h
//
// The node's side of coordinator failover: the highest (term, coordinator)
// it has seen, from a dispatch, a registration or gossip. Work is accepted
// only under it, so a deposed leader (or two coordinators that both think
// they lead the same term) cannot both spend this IP's budget.
// An empty coordinator id (a coordinator without gossip, which always leads
// term 1) matches any id at the same term.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace marketprism::node {

class TermFence {
 public:
  // Raises the fence to (term, leader) if newer, and says whether work under
  // it may be accepted now. `*highest`, if given, gets the fence's term after.
  bool Admit(int64_t term, const std::string& leader, int64_t* highest = nullptr) {
    absl::MutexLock lock(&mu_);
    if (term > term_) {
      term_ = term;
      leader_ = leader;
    } else if (term == term_ && leader_.empty()) {
      leader_ = leader;
    }
    if (highest != nullptr) *highest = term_;
    return term == term_ && (leader.empty() || leader_ == leader);
  }

  std::pair<int64_t, std::string> highest() const {
    absl::MutexLock lock(&mu_);
    return {term_, leader_};
  }

 private:
  mutable absl::Mutex mu_;
  int64_t term_ ABSL_GUARDED_BY(mu_) = 0;
  std::string leader_ ABSL_GUARDED_BY(mu_);
};

}  // namespace marketprism::node
