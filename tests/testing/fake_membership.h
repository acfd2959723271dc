// File: tests/testing/fake_membership.h
//
// Gossip without sockets for the in-process mini-cluster: one FakeGossip is
// the network, and every member it hands out (Factory) sees every other at
// once, with their records. The test decides who dies (Kill) or is suspect.
// Events are delivered on the thread that caused them, without a lock held.
// Thread-safe.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/gossip/membership.h"

namespace marketprism::testing {

class FakeGossip {
 public:
  common::gossip::MembershipFactory Factory();
  // Every member sees `name` dead (kDead) / suspect / alive again.
  void Kill(const std::string& name);
  void Suspect(const std::string& name);
  // The record `key` that `name` publishes ("" if none).
  std::string Record(const std::string& name, const std::string& key) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  class Member;
  using Listener = std::function<void(const common::gossip::MemberEvent&)>;
  void Set(const std::string& name, common::gossip::MemberState state,
           common::gossip::MemberEvent::Kind kind) ABSL_LOCKS_EXCLUDED(mu_);
  void Publish(const std::string& name, const std::string& key, std::string value) ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<common::gossip::MemberView> View(const std::string& self) ABSL_LOCKS_EXCLUDED(mu_);
  // Tells everyone but `about` (and the dead) what happened to `about`.
  void Tell(const std::string& about, common::gossip::MemberEvent::Kind kind) ABSL_LOCKS_EXCLUDED(mu_);

  absl::Mutex mu_;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<std::string, common::gossip::MemberView> members_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Listener> listeners_ ABSL_GUARDED_BY(mu_);
};

}  // namespace marketprism::testing
