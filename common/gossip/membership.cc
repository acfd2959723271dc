#include "common/gossip/membership.h"

#include "absl/strings/numbers.h"

#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace marketprism::common::gossip {

void AddMembershipFlags(FlagSet& f, MembershipConfig* c, std::string* join_text) {
  f.String("gossip", &c->gossip,
           "this member's gossip ADDR:PORT (UDP and TCP; port 0: any free) [off: no gossip]");
  f.String("join", join_text, "gossip seeds, ADDR:PORT[,ADDR:PORT...]");
  f.String("cluster", &c->cluster, "gossip cluster name (authenticated in every frame)");
  f.String("gossip-key-file", &c->key_file,
           "gossip keyring: one 32-byte key per line (hex or base64), primary first [none: unsealed]");
  f.Duration("stall-budget", &c->stall_budget, "a member silent for less is never declared dead");
  f.Duration("probe-interval", &c->probe_interval, "time between gossip probes");
}

absl::Status FinishMembershipConfig(MembershipConfig& c, const std::string& join_text) {
  c.join.clear();
  for (absl::string_view j : absl::StrSplit(join_text, ',', absl::SkipWhitespace())) {
    std::string seed(absl::StripAsciiWhitespace(j));
    sockaddr_in sa{};
    if (!ParseHostPort(seed, &sa) || sa.sin_port == 0) {
      return absl::InvalidArgumentError(absl::StrCat("--join \"", seed, "\": not IPV4:PORT with a port"));
    }
    c.join.push_back(seed);
  }
  if (!c.enabled()) {
    if (!c.join.empty()) return absl::InvalidArgumentError("--join needs --gossip (this member's own address)");
    return absl::OkStatus();
  }
  sockaddr_in sa{};
  if (!ParseHostPort(c.gossip, &sa)) {
    return absl::InvalidArgumentError(absl::StrCat("--gossip \"", c.gossip, "\": not IPV4:PORT"));
  }
  if (sa.sin_addr.s_addr == INADDR_ANY) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--gossip \"", c.gossip, "\": give the address other members dial, not 0.0.0.0"));
  }
  if (c.cluster.empty()) return absl::InvalidArgumentError("--cluster cannot be empty");
  if (!c.key_file.empty()) {
    struct stat st {};
    if (::stat(c.key_file.c_str(), &st) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("--gossip-key-file \"", c.key_file, "\": cannot read it"));
    }
  }
  if (c.stall_budget < absl::Milliseconds(200)) {
    return absl::InvalidArgumentError("--stall-budget must be at least 200ms");
  }
  if (c.probe_interval < absl::Milliseconds(10) || c.probe_interval > c.stall_budget) {
    return absl::InvalidArgumentError("--probe-interval must be between 10ms and the stall budget");
  }
  return absl::OkStatus();
}

AgentOptions ToAgentOptions(const MembershipConfig& c, const std::string& name) {
  AgentOptions o;
  o.gossip.name = name;
  o.gossip.addr = c.gossip;
  o.gossip.stall_budget = c.stall_budget;
  o.gossip.probe_interval = c.probe_interval;
  o.gossip.probe_timeout = std::min(o.gossip.probe_timeout, c.probe_interval / 2);
  o.cluster = c.cluster;
  o.join = c.join;
  o.key_file = c.key_file;
  return o;
}

std::string RecordValue(const MemberView& m, const std::string& key) {
  auto it = m.records.find(key);
  return it == m.records.end() ? std::string() : it->second.value;
}

absl::string_view MemberRoleName(MemberRole role) {
  switch (role) {
    case MemberRole::kNode:
      return "node";
    case MemberRole::kCoordinator:
      return "coordinator";
    case MemberRole::kUnknown:
      break;
  }
  return "";
}

MemberRole RoleOf(const MemberView& m) {
  std::string role = RecordValue(m, kRoleRecord);
  if (role == MemberRoleName(MemberRole::kNode)) return MemberRole::kNode;
  if (role == MemberRoleName(MemberRole::kCoordinator)) return MemberRole::kCoordinator;
  return MemberRole::kUnknown;
}

int64_t NumberRecord(const MemberView& m, const std::string& key) {
  int64_t value = 0;
  return absl::SimpleAtoi(RecordValue(m, key), &value) ? value : 0;
}

bool Live(const MemberView& m) { return m.state == MemberState::kAlive || m.state == MemberState::kSuspect; }

namespace {

class AgentMembership final : public Membership {
 public:
  explicit AgentMembership(std::unique_ptr<GossipAgent> agent) : agent_(std::move(agent)) {}
  std::string addr() override { return agent_->addr(); }
  void SetRecord(const std::string& key, std::string value, bool urgent) override {
    agent_->SetRecord(key, std::move(value), urgent);
  }
  std::vector<MemberView> Members() override { return agent_->Members(); }
  void Leave() override { agent_->Leave(); }
  void Stop() override { agent_->Stop(); }

 private:
  std::unique_ptr<GossipAgent> agent_;
};

}  // namespace

MembershipFactory AgentMemberships(const MembershipConfig& config) {
  return [config](const std::string& name, std::function<void(const MemberEvent&)> on_event)
             -> absl::StatusOr<std::unique_ptr<Membership>> {
    AgentOptions options = ToAgentOptions(config, name);
    options.on_event = std::move(on_event);
    absl::StatusOr<std::unique_ptr<GossipAgent>> agent = GossipAgent::Start(std::move(options));
    if (!agent.ok()) return agent.status();
    return std::unique_ptr<Membership>(new AgentMembership(std::move(*agent)));
  };
}

}  // namespace marketprism::common::gossip
