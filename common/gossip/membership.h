// File: common/gossip/membership.h
//
// What mp-node and mp-coordinator share to be gossip members: the flags
// (--gossip, --join, --cluster, --gossip-key-file, --stall-budget), their
// validation, and the names of the records each member publishes.
#pragma once

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

}  // namespace marketprism::common::gossip
