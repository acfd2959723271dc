// File: coordinator/client_wire.h
//
// The client API's wire (marketprism/v1/coordinator.proto) against the
// coordinator's domain types: every conversion written once. Pure functions.
#pragma once

#include <vector>

#include "absl/time/time.h"
#include "common/gossip/core.h"
#include "coordinator/health.h"
#include "coordinator/scheduler.h"
#include "marketprism/v1/coordinator.pb.h"

namespace marketprism::coordinator {

// What the scheduler is asked to place (no deadline, account or probe flag:
// the router adds those).
ExecuteSpec SpecOf(const v1::ExecuteRequest& request);
bool IsIdempotent(const v1::ExecuteRequest& request);

// A node as the scheduler knows it.
void NodeInfoToProto(const NodeSnapshot& n, v1::NodeInfo* out);
// What gossip knows of a member, filling what the scheduler did not.
void GossipToProto(const common::gossip::MemberView& m, absl::Time now, v1::NodeInfo* out);
// The cluster's status as the scheduler sees it at `now`.
void StatusToProto(const SchedulerSnapshot& s, absl::Time now, v1::GetStatusResponse* out);
void HealthToProto(const HealthReport& h, v1::GetHealthResponse* out);

}  // namespace marketprism::coordinator
