// File: coordinator/unit_placement.h
//
// Where the leader puts collection units: each stream copy on a node that
// serves its exchange, packed into that node's WebSocket connections within
// every limit the rules give, the copies of a redundant unit on distinct
// egress IPs, spread so that no IP carries more than its share (books, whose
// REST snapshots cost weight, are spread on their own). A sans-I/O core like
// the scheduler: the coordinator calls Place() whenever jobs or members
// change, and pushes the plan's differences to the nodes.
//
// Limits per (IP, exchange), from the rules:
//  * streams per connection: websocket.max_streams_per_connection (Binance
//    1024); otherwise kDefaultStreamsPerConnection, a policy of ours for
//    exchanges that publish none (OKX meters subscribe operations, 480 an hour
//    per connection: resubscribing 200 units after resyncs stays inside it;
//    Deribit caps a subscribe call at 500 channels);
//  * open connections per IP: websocket.max_connections_per_ip (Deribit 32);
//    and where connection attempts per IP are metered by a fixed window
//    (Binance 300 per 5 minutes), no more connections than one window's
//    attempts, so that a mass reconnect of an IP fits in one window.
// A connection carries streams of one endpoint only (common::StreamEndpoint:
// OKX serves candles at a URL of its own); the IP's bound counts them all.
// Polls are not placed: the coordinator sends them through the scheduler.
//
// Stable: a copy stays where the previous plan put it while its node is
// still eligible and holds no more than its fair share of the exchange's
// copies (and books), plus a tenth and one: a re-plan moves only what a
// grown fleet should take over, and healthy streams do not restart for it.
// Thread-compatible.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/collect/job.h"
#include "common/rules/rules.h"

namespace marketprism::coordinator {

inline constexpr int kDefaultStreamsPerConnection = 200;

struct PlacementNode {
  std::string node_id;
  std::string egress_ip;
  std::set<std::string> exchanges;  // what it serves
  bool accepting = true;            // false: draining or dead; its copies move
};

struct CopyPlacement {
  std::string node_id;
  std::string egress_ip;
  int connection = 0;  // index among the node's connections to the exchange

  friend bool operator==(const CopyPlacement&, const CopyPlacement&) = default;
};

struct PlacedUnit {
  common::UnitSpec unit;
  std::vector<CopyPlacement> copies;  // at most unit.redundancy, distinct IPs
  std::string shortfall;              // why fewer copies than asked, "" when none
};

struct PlacementPlan {
  std::map<std::string, PlacedUnit> units;  // by unit key
};

struct ConnectionLimits {
  int streams_per_connection = kDefaultStreamsPerConnection;
  int connections_per_ip = 0;  // 0: no bound
};

// The limits the rules give for `exchange`'s streams on one IP.
ConnectionLimits LimitsFor(const common::ExchangeRules& exchange);

// Limits to use instead of the rules', by exchange (tests; an operator's
// stricter policy).
using LimitOverrides = std::map<std::string, ConnectionLimits>;

// Places the stream units of `units` (polls are skipped) on `nodes`, keeping
// what `previous` placed where it is still allowed. Deterministic.
PlacementPlan PlaceUnits(const std::vector<common::UnitSpec>& units, const std::vector<PlacementNode>& nodes,
                         const common::RulesBook& rules, const PlacementPlan& previous = {},
                         const LimitOverrides& overrides = {});

}  // namespace marketprism::coordinator
