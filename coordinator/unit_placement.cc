#include "coordinator/unit_placement.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/str_cat.h"

namespace marketprism::coordinator {

ConnectionLimits LimitsFor(const common::ExchangeRules& exchange) {
  ConnectionLimits l;
  const common::WebSocketRules& ws = exchange.websocket();
  if (ws.max_streams_per_connection > 0) l.streams_per_connection = ws.max_streams_per_connection;
  l.connections_per_ip = ws.max_connections_per_ip;
  if (ws.connection_pool >= 0) {
    const common::PoolRule& attempts = exchange.pools()[static_cast<size_t>(ws.connection_pool)];
    if (attempts.window == common::WindowKind::kFixed && attempts.scope == common::Scope::kIp) {
      int64_t bound = attempts.capacity;
      l.connections_per_ip = l.connections_per_ip == 0 ? static_cast<int>(bound)
                                                       : std::min<int>(l.connections_per_ip, static_cast<int>(bound));
    }
  }
  return l;
}

namespace {

// One node's connections to one exchange, as streams per connection and the
// endpoint each connection opens (an exchange may serve some channels at a
// URL of their own: OKX candles at /ws/v5/business).
struct Connections {
  std::vector<int> streams;
  std::vector<std::string> endpoint;
  int units = 0;
  int books = 0;

  // The connection a new stream for `at` goes on, or -1 when full.
  // `ip_open`: the connections the node's IP has open to the exchange, over
  // all its nodes and endpoints.
  int Room(const ConnectionLimits& l, int ip_open, const std::string& at) const {
    for (size_t i = 0; i < streams.size(); ++i) {
      if (streams[i] > 0 && streams[i] < l.streams_per_connection && endpoint[i] == at) return static_cast<int>(i);
    }
    if (l.connections_per_ip > 0 && ip_open >= l.connections_per_ip) return -1;
    for (size_t i = 0; i < streams.size(); ++i) {
      if (streams[i] == 0) return static_cast<int>(i);  // reopen a closed index first
    }
    return static_cast<int>(streams.size());
  }
  // Whether a stream for `at` kept on `connection` still fits.
  bool Fits(int connection, const ConnectionLimits& l, int ip_open, const std::string& at) const {
    if (connection < 0) return false;
    bool open = connection < static_cast<int>(streams.size()) && streams[static_cast<size_t>(connection)] > 0;
    if (open) {
      return streams[static_cast<size_t>(connection)] < l.streams_per_connection &&
             endpoint[static_cast<size_t>(connection)] == at;
    }
    return l.connections_per_ip == 0 || ip_open < l.connections_per_ip;
  }
  // Whether adding to `connection` opens it.
  bool Opens(int connection) const {
    return connection >= static_cast<int>(streams.size()) || streams[static_cast<size_t>(connection)] == 0;
  }
  void Add(int connection, bool book, const std::string& at) {
    if (connection >= static_cast<int>(streams.size())) {
      streams.resize(static_cast<size_t>(connection) + 1, 0);
      endpoint.resize(static_cast<size_t>(connection) + 1);
    }
    if (streams[static_cast<size_t>(connection)]++ == 0) endpoint[static_cast<size_t>(connection)] = at;
    ++units;
    books += book;
  }
};

std::string EndpointOf(const common::UnitSpec& u) { return std::string(common::StreamEndpoint(u.exchange, u.channel)); }

}  // namespace

PlacementPlan PlaceUnits(const std::vector<common::UnitSpec>& units, const std::vector<PlacementNode>& nodes,
                         const common::RulesBook& rules, const PlacementPlan& previous,
                         const LimitOverrides& overrides) {
  std::map<std::string, const PlacementNode*> by_id;
  for (const PlacementNode& n : nodes) by_id[n.node_id] = &n;
  std::map<std::pair<std::string, std::string>, Connections> load;  // (node, exchange)
  std::map<std::pair<std::string, std::string>, int> ip_open;     // (IP, exchange): open connections
  std::map<std::string, ConnectionLimits> limits = overrides;
  auto add = [&](const PlacementNode& n, const common::UnitSpec& u, int connection) {
    Connections& conns = load[{n.node_id, u.exchange}];
    if (conns.Opens(connection)) ++ip_open[{n.egress_ip, u.exchange}];
    conns.Add(connection, u.channel == common::Channel::kBook, EndpointOf(u));
  };
  auto limits_of = [&](const std::string& exchange) -> const ConnectionLimits& {
    auto it = limits.find(exchange);
    if (it == limits.end()) {
      const common::ExchangeRules* ex = rules.Find(exchange);
      it = limits.emplace(exchange, ex ? LimitsFor(*ex) : ConnectionLimits{}).first;
    }
    return it->second;
  };
  auto eligible = [&](const PlacementNode& n, const common::UnitSpec& u) {
    return n.accepting && n.exchanges.count(u.exchange) > 0;
  };

  PlacementPlan plan;
  std::vector<const common::UnitSpec*> streams;
  for (const common::UnitSpec& u : units) {
    if (common::IsStream(u.channel)) streams.push_back(&u);
  }
  // A node keeps at most its fair share of an exchange's copies (and of its
  // books, which cost snapshot weight), with some slack so that a re-plan does
  // not shuffle units between nearly even nodes: a fleet that grows, or a node
  // that comes back, takes its part of the work.
  std::map<std::string, int> copies, books, serving;  // by exchange
  for (const common::UnitSpec* u : streams) {
    copies[u->exchange] += u->redundancy;
    if (u->channel == common::Channel::kBook) books[u->exchange] += u->redundancy;
  }
  for (const PlacementNode& n : nodes) {
    if (!n.accepting) continue;
    for (const std::string& e : n.exchanges) ++serving[e];
  }
  auto cap = [&](const std::map<std::string, int>& total, const std::string& exchange) {
    int n = std::max(1, serving[exchange]);
    auto t = total.find(exchange);
    int fair = ((t == total.end() ? 0 : t->second) + n - 1) / n;  // rounded up
    return fair + fair / 10 + 1;
  };
  std::map<std::pair<std::string, std::string>, int> kept, kept_books;  // (node, exchange)
  // First keep every copy that may stay, so re-planning moves only what must.
  for (const common::UnitSpec* u : streams) {
    PlacedUnit& p = plan.units[u->key];
    p.unit = *u;
    auto prev = previous.units.find(u->key);
    if (prev == previous.units.end()) continue;
    std::set<std::string> ips;
    for (const CopyPlacement& c : prev->second.copies) {
      auto node = by_id.find(c.node_id);
      if (node == by_id.end() || !eligible(*node->second, *u)) continue;
      if (static_cast<int>(p.copies.size()) >= u->redundancy || !ips.insert(node->second->egress_ip).second) continue;
      bool book = u->channel == common::Channel::kBook;
      if (kept[{c.node_id, u->exchange}] >= cap(copies, u->exchange) ||
          (book && kept_books[{c.node_id, u->exchange}] >= cap(books, u->exchange))) {
        continue;  // over its share: placed again below, on a less loaded node
      }
      Connections& conns = load[{c.node_id, u->exchange}];
      if (!conns.Fits(c.connection, limits_of(u->exchange), ip_open[{node->second->egress_ip, u->exchange}],
                      EndpointOf(*u))) {
        continue;
      }
      add(*node->second, *u, c.connection);
      p.copies.push_back(CopyPlacement{c.node_id, node->second->egress_ip, c.connection});
      ++kept[{c.node_id, u->exchange}];
      if (book) ++kept_books[{c.node_id, u->exchange}];
    }
  }
  // Then the copies still missing, each on the least loaded eligible node of
  // an IP the unit does not use yet.
  for (const common::UnitSpec* u : streams) {
    PlacedUnit& p = plan.units[u->key];
    const ConnectionLimits& l = limits_of(u->exchange);
    bool book = u->channel == common::Channel::kBook;
    while (static_cast<int>(p.copies.size()) < u->redundancy) {
      std::set<std::string> used;
      for (const CopyPlacement& c : p.copies) used.insert(c.egress_ip);
      const PlacementNode* best = nullptr;
      std::tuple<int, int, std::string> best_key;
      int best_connection = -1;
      for (const PlacementNode& n : nodes) {
        if (!eligible(n, *u) || used.count(n.egress_ip)) continue;
        Connections& conns = load[{n.node_id, u->exchange}];
        int connection = conns.Room(l, ip_open[{n.egress_ip, u->exchange}], EndpointOf(*u));
        if (connection < 0) continue;
        auto key = std::make_tuple(book ? conns.books : conns.units, conns.units, n.node_id);
        if (best == nullptr || key < best_key) {
          best = &n;
          best_key = key;
          best_connection = connection;
        }
      }
      if (best == nullptr) {
        p.shortfall = absl::StrCat(p.copies.size(), " of ", u->redundancy,
                                   " copies placed: no other node serving ", u->exchange,
                                   " on a distinct IP has room");
        break;
      }
      add(*best, *u, best_connection);
      p.copies.push_back(CopyPlacement{best->node_id, best->egress_ip, best_connection});
    }
  }
  return plan;
}

}  // namespace marketprism::coordinator
