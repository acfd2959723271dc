// File: node/gossip_records.h
//
// What a node reads from and writes to gossip, as pure functions over
// member views and lanes: the leadership claim it follows, and the usage
// summary it publishes. The node's GossipAgent does the I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/gossip/core.h"
#include "node/exchange_lane.h"

namespace marketprism::node {

// A live coordinator's term record: "I lead `term`".
struct LeaderClaim {
  int64_t term = 0;
  std::string name;  // the coordinator's gossip name (its id in the fence)
  std::string grpc;  // where it serves NodeControl ("" if it has not said)
};

// The best claim among alive or suspect coordinators: the highest term,
// then the lowest name. nullopt when no coordinator claims a term.
std::optional<LeaderClaim> BestLeaderClaim(const std::vector<common::gossip::MemberView>& members);

// The usage record: each exchange's busiest pool as "exchange:pool=used/capacity",
// space-separated, or "idle" when nothing is in use.
std::string UsageRecord(const Lanes& lanes);

}  // namespace marketprism::node
