// File: tests/testing/surprise.h
//
// The exchange surprising a saturated cluster, as real processes on loopback
// against the simulator with its default ban policy (a 418 after two more
// refusals inside a Retry-After), for surprise_test and `mp-bench surprise`:
//
//  * RunLoweredLimit: the simulator's Binance REQUEST_WEIGHT limit drops
//    without notice while the cluster saturates it;
//  * RunForeignClient: another program on the first node's IP spends part of
//    every window at its start, stopping at its first refusal as a
//    well-behaved client does.
//
// Binance's REQUEST_WEIGHT window is shortened (a copy of the shipped rules
// given to every process), so a run sees several windows in seconds. The
// simulator's per-IP counts are what the results report.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace marketprism::testing {

struct SurpriseOptions {
  int nodes = 3;
  int64_t capacity = 600;      // REQUEST_WEIGHT per IP per window
  int64_t window_seconds = 5;  // the shortened window
  // Enough clients that each window opens with dozens of requests queued
  // per IP: without an exposure bound they would all go at once.
  int clients_per_node = 16;
  // Extra flags for the coordinator and the nodes (e.g. --max-in-flight 0).
  std::vector<std::string> cluster_flags;
  std::string rules_file;  // the shipped rules, to copy; required
};

// One IP as the simulator counted it.
struct IpCount {
  std::string ip;
  int64_t refused_429 = 0;
  int64_t banned_418 = 0;
  int64_t last_window_used = 0;  // the last whole window's REQUEST_WEIGHT
};

class Cluster;

// A cluster (options.nodes nodes, Binance spot only) whose simulator and
// members use the shortened window, at options.capacity per IP.
absl::StatusOr<std::unique_ptr<Cluster>> StartShortWindowCluster(const SurpriseOptions& options);

struct LoweredLimitResult {
  std::vector<IpCount> ips;
  int64_t calls_ok = 0;
  // From the drop until the coordinator shows the new limit for every IP.
  absl::Duration adopted_after = absl::InfiniteDuration();
  std::string sim_stats;  // for failure messages
  std::string refusal_log;  // the members' log lines about refusals, for failure messages
};

// Saturates, lowers the limit to `lowered_to`, and runs three more windows
// (the one of the drop, the one that meets it, the one that spends it).
absl::StatusOr<LoweredLimitResult> RunLoweredLimit(const SurpriseOptions& options, int64_t lowered_to);

struct ForeignClientResult {
  IpCount victim;
  std::vector<IpCount> others;
  int64_t foreign_ok = 0;
  int64_t foreign_refused = 0;  // the foreign client's own 429s (it stops at each)
  int64_t foreign_seen = 0;     // the foreign units the coordinator reports for the victim
  int64_t calls_ok = 0;
  std::string sim_stats;
};

// The foreign client spends `foreign_weight` (depth calls of weight 5)
// `delay` after the start of each of `windows` windows (a job run at the top
// of the minute, arriving while the cluster spends the new window).
absl::StatusOr<ForeignClientResult> RunForeignClient(const SurpriseOptions& options, int windows,
                                                     int64_t foreign_weight,
                                                     absl::Duration delay = absl::Milliseconds(20));

}  // namespace marketprism::testing
