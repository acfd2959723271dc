// File: coordinator/coordinator_options.h
//
// mp-coordinator's configuration: one JSON file (--config), MP_* environment
// variables and flags, in that order of precedence (flags win).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/flags.h"
#include "common/gossip/membership.h"
#include "coordinator/health.h"
#include "coordinator/leases.h"
#include "coordinator/scheduler.h"

namespace marketprism::coordinator {

struct CoordinatorOptions {
  common::HostPort listen{"0.0.0.0", 7000};
  std::map<std::string, std::string> exchange_urls;  // given to nodes without their own
  std::map<std::string, std::string> ws_urls;
  std::vector<std::string> sinks;  // --sink: the cluster's, given to every node without its own
  std::string jobs_file;  // --jobs: what to collect (re-read when it changes)
  std::string rules_file;
  std::vector<std::string> limits;
  // The rules, loaded once from rules_file with the limit overrides applied
  // (by ParseCoordinatorOptions; Coordinator::Create loads them if unset).
  std::optional<common::RulesBook> rules;
  absl::Duration exchange_info_refresh = absl::Minutes(10);  // 0: never
  absl::Duration monitor_interval = absl::Seconds(60);       // exchange health probes; 0: none
  std::string alert_webhook;                                 // POSTed Alertmanager-style on a health change
  // How long requests to an exchange that publishes its limits wait for the
  // first read of them before the rules' figures are used instead.
  absl::Duration limits_wait = absl::Seconds(10);
  absl::Duration default_deadline = absl::Seconds(30);
  absl::Duration dispatch_margin = absl::Milliseconds(20);
  HealthThresholds health;
  SchedulerOptions scheduler;
  // Gossip and failover (off without --gossip: this coordinator leads term 1).
  common::gossip::MembershipConfig membership;
  std::string name;       // default "coordinator-<gossip address>"
  std::string advertise;  // where others reach this coordinator; default from --listen / --gossip
  // How long a coordinator waits, once no live coordinator leads, before claiming.
  absl::Duration leader_hold_down = absl::Milliseconds(500);
  // A new leader holds requests that find no node yet this long, while the
  // nodes gossip knows register with it.
  absl::Duration takeover_grace = absl::Seconds(3);
  // Account leases (coordinator/leases.h): each node's share of each
  // account pool lasts `duration` unless renewed (every duration / 5).
  LeaseOptions leases;
};

// Parses and validates. Returns nullopt (with *help set) for --help.
// `getenv` is the environment (MP_* settings, MP_RULES_FILE; null: none):
// main passes common::ProcessEnvironment(), tests a map.
absl::StatusOr<std::optional<CoordinatorOptions>> ParseCoordinatorOptions(const std::vector<std::string>& args,
                                                                          std::string* help,
                                                                          const common::GetEnv& getenv = nullptr);

}  // namespace marketprism::coordinator
