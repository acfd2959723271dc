// File: node/node_options.h
//
// mp-node's configuration: one JSON file (--config), MP_* environment
// variables and flags, in that order of precedence (flags win). Validated
// into a NodeOptions; every error names the setting and the problem.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/flags.h"
#include "common/gossip/membership.h"

namespace marketprism::node {

struct NodeOptions {
  std::string node_id;                                // default "node-<egress ip>"
  std::string egress_ip;                              // required: requests leave from here
  common::HostPort listen{"0.0.0.0", 0};              // Node.Dispatch
  std::string advertise;                              // what the coordinator dials; default from listen
  // Coordinators to try in turn (a follower names the leader). With gossip,
  // the leader gossip shows comes first and the list may be empty.
  std::vector<common::HostPort> coordinators;
  std::map<std::string, std::string> exchange_urls;   // REST bases
  std::map<std::string, std::string> ws_urls;         // WebSocket bases
  std::vector<std::string> exchanges;                 // enabled; empty = every exchange in the rules
  std::string proxy;                                  // for every exchange without its own
  std::map<std::string, std::string> exchange_proxies;
  std::string ca_bundle;
  std::string rules_file;
  std::vector<std::string> limits;                    // EXCHANGE.POOL=CAPACITY
  int workers = 32;
  absl::Duration request_timeout = absl::Seconds(10);
  absl::Duration clock_probe_interval = absl::Minutes(5);
  absl::Duration report_interval = absl::Seconds(1);
  absl::Duration reconnect_max = absl::Seconds(2);
  common::gossip::MembershipConfig membership;        // off without --gossip
};

// Parses and validates. Returns nullopt (with *help set) for --help.
absl::StatusOr<std::optional<NodeOptions>> ParseNodeOptions(
    const std::vector<std::string>& args, std::string* help,
    const std::function<const char*(const char*)>& getenv = nullptr);

}  // namespace marketprism::node
