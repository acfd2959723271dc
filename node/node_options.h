// File: node/node_options.h
//
// mp-node's configuration: one JSON file (--config), MP_* environment
// variables and flags, in that order of precedence (flags win). Validated
// into a NodeOptions; every error names the setting and the problem. This
// is the only place the node reads its environment (through the `getenv`
// main hands in): the MP_* settings, the proxy variables and the rules.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/budget/exposure.h"
#include "common/flags.h"
#include "common/gossip/membership.h"
#include "common/rules/rules.h"
#include "node/proxy.h"

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
  ProxyEnvironment proxy_env;                         // HTTPS_PROXY etc., read once at parse
  std::string ca_bundle;
  std::string rules_file;
  std::vector<std::string> limits;                    // EXCHANGE.POOL=CAPACITY
  int workers = 32;
  absl::Duration request_timeout = absl::Seconds(10);
  absl::Duration clock_probe_interval = absl::Minutes(5);
  absl::Duration report_interval = absl::Seconds(1);
  absl::Duration reconnect_max = absl::Seconds(2);
  bool trace_ledger = false;                          // log every admission (diagnostics)
  common::ExposureOptions exposure;                   // requests in flight per exchange (--max-in-flight)
  common::gossip::MembershipConfig membership;        // off without --gossip
  // Where records go (node/sinks/sinks.h); empty: the cluster's, as the
  // coordinator says at registration.
  std::vector<std::string> sinks;
  std::string spool_dir;                              // spools under <spool_dir>/<node id>/
  int64_t spool_max_bytes = int64_t{1} << 30;         // per sink
  int64_t sink_queue = 50000;                         // records per sink in memory before the spool
};

// What mp-node runs with: the options and the rules they were validated
// against (the rules file with every --limit applied), loaded once.
struct NodeConfig {
  NodeOptions options;
  common::RulesBook rules;
};

// Parses and validates. Returns nullopt (with *help set) for --help.
// `getenv` is the environment: main passes std::getenv, tests a map (null:
// an empty environment).
absl::StatusOr<std::optional<NodeConfig>> ParseNodeOptions(const std::vector<std::string>& args,
                                                           std::string* help, const GetEnv& getenv);

}  // namespace marketprism::node
