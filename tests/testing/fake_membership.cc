#include "tests/testing/fake_membership.h"

namespace marketprism::testing {

namespace g = common::gossip;

class FakeGossip::Member final : public g::Membership {
 public:
  Member(FakeGossip& net, std::string name) : net_(net), name_(std::move(name)) {}
  std::string addr() override { return "fake:" + name_; }
  void SetRecord(const std::string& key, std::string value, bool) override {
    net_.Publish(name_, key, std::move(value));
  }
  std::vector<g::MemberView> Members() override { return net_.View(name_); }
  void Leave() override { net_.Set(name_, g::MemberState::kLeft, g::MemberEvent::Kind::kLeft); }
  void Stop() override {}

 private:
  FakeGossip& net_;
  const std::string name_;
};

g::MembershipFactory FakeGossip::Factory() {
  return [this](const std::string& name, Listener on_event) -> absl::StatusOr<std::unique_ptr<g::Membership>> {
    {
      absl::MutexLock lock(&mu_);
      g::MemberView& m = members_[name];
      m.id = next_id_++;
      m.name = name;
      m.addr = "fake:" + name;
      m.state = g::MemberState::kAlive;
      m.records.clear();
      listeners_[name] = std::move(on_event);
    }
    Tell(name, g::MemberEvent::Kind::kJoined);
    return std::unique_ptr<g::Membership>(new Member(*this, name));
  };
}

void FakeGossip::Kill(const std::string& name) { Set(name, g::MemberState::kDead, g::MemberEvent::Kind::kDead); }
void FakeGossip::Suspect(const std::string& name) {
  Set(name, g::MemberState::kSuspect, g::MemberEvent::Kind::kSuspect);
}

std::string FakeGossip::Record(const std::string& name, const std::string& key) {
  absl::MutexLock lock(&mu_);
  auto it = members_.find(name);
  return it == members_.end() ? "" : g::RecordValue(it->second, key);
}

void FakeGossip::Set(const std::string& name, g::MemberState state, g::MemberEvent::Kind kind) {
  {
    absl::MutexLock lock(&mu_);
    auto it = members_.find(name);
    if (it == members_.end()) return;
    it->second.state = state;
  }
  Tell(name, kind);
}

void FakeGossip::Publish(const std::string& name, const std::string& key, std::string value) {
  {
    absl::MutexLock lock(&mu_);
    auto it = members_.find(name);
    if (it == members_.end()) return;
    it->second.records[key].value = std::move(value);
  }
  Tell(name, g::MemberEvent::Kind::kUpdated);
}

std::vector<g::MemberView> FakeGossip::View(const std::string& self) {
  absl::MutexLock lock(&mu_);
  std::vector<g::MemberView> out;
  for (const auto& [name, m] : members_) {
    out.push_back(m);
    out.back().self = name == self;
  }
  return out;
}

void FakeGossip::Tell(const std::string& about, g::MemberEvent::Kind kind) {
  std::vector<Listener> listeners;
  g::MemberEvent e;
  {
    absl::MutexLock lock(&mu_);
    e.kind = kind;
    e.member = members_[about];
    for (const auto& [name, l] : listeners_) {
      if (name == about || !l) continue;
      if (members_[name].state == g::MemberState::kDead) continue;
      listeners.push_back(l);
    }
  }
  for (const Listener& l : listeners) l(e);
}

}  // namespace marketprism::testing
