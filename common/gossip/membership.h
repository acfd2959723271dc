// File: common/gossip/membership.h
//
// What mp-node and mp-coordinator share to be gossip members: the flags
// (--gossip, --join, --cluster, --gossip-key-file, --stall-budget), their
// validation, and the names of the records each member publishes.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/flags.h"
#include "common/gossip/agent.h"

namespace marketprism::common::gossip {

// Record keys. Every member publishes role, grpc and version; nodes add
// egress, usage (soft: not urgent) and fence; coordinators add term.
inline constexpr char kRoleRecord[] = "role";        // "node" or "coordinator"
inline constexpr char kGrpcRecord[] = "grpc";        // ADDR:PORT of its gRPC service
inline constexpr char kEgressRecord[] = "egress";    // a node's egress IP
inline constexpr char kVersionRecord[] = "version";
inline constexpr char kUsageRecord[] = "usage";      // a node's usage summary
inline constexpr char kTermRecord[] = "term";        // a coordinator: the term it leads, 0 if none
inline constexpr char kFenceRecord[] = "fence";      // a node: the highest term it has accepted

struct MembershipConfig {
  std::string gossip;               // this member's gossip ADDR:PORT; empty: gossip is off
  std::vector<std::string> join;    // seeds
  std::string cluster = "marketprism";
  std::string key_file;
  absl::Duration stall_budget = absl::Seconds(2);
  absl::Duration probe_interval = absl::Milliseconds(200);

  bool enabled() const { return !gossip.empty(); }
};

// Adds the flags; `join` is a comma-separated list (repeatable too).
void AddMembershipFlags(FlagSet& flags, MembershipConfig* config, std::string* join_text);

// Checks the parsed flags: --gossip must be an IPv4 address others can dial
// (not 0.0.0.0) and a port (0: any free one); seeds must be ADDR:PORT; the
// key file must exist; the budget and interval must make sense.
absl::Status FinishMembershipConfig(MembershipConfig& config, const std::string& join_text);

AgentOptions ToAgentOptions(const MembershipConfig& config, const std::string& name);

// The value of a record in a member view, or "" if it has none.
std::string RecordValue(const MemberView& m, const std::string& key);

// The records' values as the process uses them; names only on the wire.
enum class MemberRole { kUnknown, kNode, kCoordinator };
absl::string_view MemberRoleName(MemberRole role);  // "", "node", "coordinator"
MemberRole RoleOf(const MemberView& m);
// A numeric record (term, fence); 0 when absent or not a number.
int64_t NumberRecord(const MemberView& m, const std::string& key);
// Alive or suspect: what it claims still stands.
bool Live(const MemberView& m);

// What a coordinator or node needs of its gossip membership: the members as
// it sees them, its own records, leaving. The real one is a GossipAgent
// (AgentMemberships); the in-process mini-cluster hands in a fake. Thread-safe.
class Membership {
 public:
  virtual ~Membership() = default;
  virtual std::string addr() = 0;
  virtual void SetRecord(const std::string& key, std::string value, bool urgent = true) = 0;
  virtual std::vector<MemberView> Members() = 0;
  // Tells the others this member is leaving (they act at once, not after a death).
  virtual void Leave() = 0;
  virtual void Stop() = 0;
};

// Starts this member's membership under `name`; `on_event` runs on the
// membership's own thread for every change it sees.
using MembershipFactory = std::function<absl::StatusOr<std::unique_ptr<Membership>>(
    const std::string& name, std::function<void(const MemberEvent&)> on_event)>;

// Gossip agents (UDP/TCP) configured by `config`.
MembershipFactory AgentMemberships(const MembershipConfig& config);

}  // namespace marketprism::common::gossip
