#include "coordinator/unit_placement.h"

#include <random>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "absl/strings/str_cat.h"

namespace marketprism::coordinator {
namespace {

using common::Channel;
using common::UnitSpec;

class UnitPlacementTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto rules = common::RulesBook::LoadDefault();
    ASSERT_TRUE(rules.ok()) << rules.status();
    rules_ = std::make_unique<common::RulesBook>(*std::move(rules));
  }
  static UnitSpec Unit(const std::string& exchange, Channel channel, const std::string& symbol, int redundancy = 1) {
    UnitSpec u;
    u.exchange = exchange;
    u.channel = channel;
    u.symbol = symbol;
    u.redundancy = redundancy;
    u.key = absl::StrCat(exchange, "/", common::ChannelName(channel), "/", symbol);
    return u;
  }
  static PlacementNode Node(int i, std::set<std::string> exchanges = {"binance_spot", "okx", "deribit"}) {
    return PlacementNode{absl::StrCat("node-", i), absl::StrCat("127.0.0.", 10 + i), std::move(exchanges), true};
  }
  std::unique_ptr<common::RulesBook> rules_;
};

TEST_F(UnitPlacementTest, TheRulesGiveEachExchangesConnectionLimits) {
  ConnectionLimits b = LimitsFor(*rules_->Find("binance_spot"));
  EXPECT_EQ(b.streams_per_connection, 1024);
  EXPECT_EQ(b.connections_per_ip, 300) << "a mass reconnect of an IP fits one 5-minute window of attempts";
  ConnectionLimits d = LimitsFor(*rules_->Find("deribit"));
  EXPECT_EQ(d.connections_per_ip, 32);
  EXPECT_EQ(d.streams_per_connection, kDefaultStreamsPerConnection);
  EXPECT_EQ(LimitsFor(*rules_->Find("okx")).connections_per_ip, 0) << "OKX meters attempts per second only";
}

TEST_F(UnitPlacementTest, CopiesGoOnDistinctIpsAndBooksSpread) {
  std::vector<PlacementNode> nodes = {Node(1), Node(2), Node(3)};
  std::vector<UnitSpec> units;
  for (int i = 0; i < 6; ++i) units.push_back(Unit("binance_spot", Channel::kBook, absl::StrCat("S", i)));
  units.push_back(Unit("binance_spot", Channel::kTrades, "BTCUSDT", 2));
  PlacementPlan plan = PlaceUnits(units, nodes, *rules_);
  std::map<std::string, int> books;
  for (int i = 0; i < 6; ++i) {
    const PlacedUnit& p = plan.units.at(absl::StrCat("binance_spot/book/S", i));
    ASSERT_EQ(p.copies.size(), 1u);
    ++books[p.copies[0].node_id];
  }
  EXPECT_EQ(books, (std::map<std::string, int>{{"node-1", 2}, {"node-2", 2}, {"node-3", 2}}));
  const PlacedUnit& trades = plan.units.at("binance_spot/trades/BTCUSDT");
  ASSERT_EQ(trades.copies.size(), 2u);
  EXPECT_NE(trades.copies[0].egress_ip, trades.copies[1].egress_ip);
}

TEST_F(UnitPlacementTest, ASecondCopyNeedsASecondIp) {
  PlacementNode a = Node(1), b = Node(2);
  b.egress_ip = a.egress_ip;  // two nodes behind one IP
  PlacementPlan plan = PlaceUnits({Unit("okx", Channel::kTrades, "BTC-USDT", 2)}, {a, b}, *rules_);
  const PlacedUnit& p = plan.units.at("okx/trades/BTC-USDT");
  EXPECT_EQ(p.copies.size(), 1u);
  EXPECT_THAT(p.shortfall, ::testing::HasSubstr("1 of 2 copies placed"));
}

TEST_F(UnitPlacementTest, OnlyNodesServingTheExchangeTakeItsUnits) {
  PlacementPlan plan = PlaceUnits({Unit("deribit", Channel::kBook, "BTC-PERPETUAL")},
                                  {Node(1, {"binance_spot"}), Node(2, {"deribit"})}, *rules_);
  EXPECT_EQ(plan.units.at("deribit/book/BTC-PERPETUAL").copies.at(0).node_id, "node-2");
  PlacementPlan none = PlaceUnits({Unit("deribit", Channel::kBook, "BTC-PERPETUAL")}, {Node(1, {"okx"})}, *rules_);
  EXPECT_TRUE(none.units.at("deribit/book/BTC-PERPETUAL").copies.empty());
}

TEST_F(UnitPlacementTest, PollsAreNotPlaced) {
  UnitSpec poll = Unit("binance_spot", Channel::kPoll, "");
  EXPECT_TRUE(PlaceUnits({poll}, {Node(1)}, *rules_).units.empty());
}

TEST_F(UnitPlacementTest, ADeadNodesUnitsMoveAndNothingElseDoes) {
  std::vector<PlacementNode> nodes = {Node(1), Node(2), Node(3)};
  std::vector<UnitSpec> units;
  for (int i = 0; i < 30; ++i) units.push_back(Unit("binance_spot", Channel::kTrades, absl::StrCat("S", i), 1 + i % 2));
  PlacementPlan before = PlaceUnits(units, nodes, *rules_);
  nodes[1].accepting = false;
  PlacementPlan after = PlaceUnits(units, nodes, *rules_, before);
  for (const auto& [key, p] : before.units) {
    for (const CopyPlacement& c : p.copies) {
      const auto& now = after.units.at(key).copies;
      bool kept = std::find(now.begin(), now.end(), c) != now.end();
      EXPECT_EQ(kept, c.node_id != "node-2") << key << " on " << c.node_id;
    }
  }
  for (const auto& [key, p] : after.units) {
    for (const CopyPlacement& c : p.copies) EXPECT_NE(c.node_id, "node-2");
    EXPECT_EQ(static_cast<int>(p.copies.size()), p.unit.redundancy) << key << ": two nodes left, two IPs";
  }
  EXPECT_EQ(PlaceUnits(units, nodes, *rules_, after).units.at("binance_spot/trades/S3").copies,
            after.units.at("binance_spot/trades/S3").copies)
      << "re-planning the same inputs changes nothing";
}

TEST_F(UnitPlacementTest, AFleetThatGrowsTakesItsShareAndThenNothingMoves) {
  std::vector<UnitSpec> units;
  for (int i = 0; i < 300; ++i) {
    units.push_back(Unit("binance_spot", i % 2 ? Channel::kBook : Channel::kTrades, absl::StrCat("S", i / 2)));
  }
  std::vector<PlacementNode> nodes = {Node(1)};
  PlacementPlan alone = PlaceUnits(units, nodes, *rules_);
  nodes.push_back(Node(2));
  nodes.push_back(Node(3));
  PlacementPlan grown = PlaceUnits(units, nodes, *rules_, alone);
  std::map<std::string, int> per_node, books_per_node;
  int moved = 0;
  for (const auto& [key, p] : grown.units) {
    ASSERT_EQ(p.copies.size(), 1u) << key;
    ++per_node[p.copies[0].node_id];
    if (p.unit.channel == Channel::kBook) ++books_per_node[p.copies[0].node_id];
    moved += p.copies[0].node_id != "node-1" ? 1 : 0;
  }
  for (const char* n : {"node-1", "node-2", "node-3"}) {
    EXPECT_GE(per_node[n], 85) << n;   // a fair share is 100
    EXPECT_LE(per_node[n], 111) << n;  // 100, and a tenth and one of slack
    EXPECT_GE(books_per_node[n], 40) << n;
    EXPECT_LE(books_per_node[n], 56) << n;
  }
  EXPECT_LE(moved, 215) << "only what node-1 holds over its share moves";
  PlacementPlan again = PlaceUnits(units, nodes, *rules_, grown);
  for (const auto& [key, p] : grown.units) EXPECT_EQ(again.units.at(key).copies, p.copies) << key;
}

// Random fleets and jobs: every limit holds, copies are on distinct IPs, and
// a unit lacks a copy only when no eligible IP had room.
TEST_F(UnitPlacementTest, OkxCandlesGetConnectionsOfTheirOwn) {
  std::vector<UnitSpec> units = {Unit("okx", Channel::kTrades, "BTC-USDT"), Unit("okx", Channel::kKline, "BTC-USDT"),
                                 Unit("okx", Channel::kKline, "ETH-USDT"), Unit("okx", Channel::kTicker, "ETH-USDT")};
  PlacementPlan plan = PlaceUnits(units, {Node(1)}, *rules_);
  int trades = plan.units.at("okx/trades/BTC-USDT").copies.at(0).connection;
  int ticker = plan.units.at("okx/ticker/ETH-USDT").copies.at(0).connection;
  int kline1 = plan.units.at("okx/kline/BTC-USDT").copies.at(0).connection;
  int kline2 = plan.units.at("okx/kline/ETH-USDT").copies.at(0).connection;
  EXPECT_EQ(trades, ticker);
  EXPECT_EQ(kline1, kline2);
  EXPECT_NE(trades, kline1) << "candles are served at /ws/v5/business";
  // And a re-plan keeps them where they are.
  EXPECT_EQ(PlaceUnits(units, {Node(1)}, *rules_, plan).units.at("okx/kline/ETH-USDT").copies.at(0).connection, kline2);
}

TEST_F(UnitPlacementTest, PropertyEveryLimitHoldsOverRandomFleets) {
  const std::vector<std::string> exchanges = {"binance_spot", "okx", "deribit"};
  const std::vector<Channel> channels = {Channel::kTrades, Channel::kBook, Channel::kBookTicker, Channel::kTicker,
                                         Channel::kKline};
  for (uint64_t seed = 1; seed <= 150; ++seed) {
    std::mt19937_64 rng(seed);
    auto draw = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    std::vector<PlacementNode> nodes;
    int n = draw(1, 8);
    for (int i = 0; i < n; ++i) {
      PlacementNode node = Node(i, {});
      for (const std::string& e : exchanges) {
        if (draw(0, 3) > 0) node.exchanges.insert(e);
      }
      node.accepting = draw(0, 5) > 0;
      if (draw(0, 6) == 0 && i > 0) node.egress_ip = nodes[0].egress_ip;  // a shared IP now and then
      nodes.push_back(node);
    }
    // Small limits half the time, so that connections and IPs fill up.
    LimitOverrides overrides;
    if (draw(0, 1) == 0) {
      for (const std::string& e : exchanges) overrides[e] = ConnectionLimits{draw(1, 6), draw(0, 4)};
    }
    auto limits = [&](const std::string& e) { return overrides.count(e) ? overrides.at(e) : LimitsFor(*rules_->Find(e)); };
    std::vector<UnitSpec> units;
    int count = draw(1, 3000);
    for (int i = 0; i < count; ++i) {
      units.push_back(Unit(exchanges[static_cast<size_t>(draw(0, 2))], channels[static_cast<size_t>(draw(0, 4))],
                           absl::StrCat("S", i), draw(1, 2)));
    }
    PlacementPlan plan = PlaceUnits(units, nodes, *rules_, {}, overrides);
    if (draw(0, 1) == 0) {  // and after a change of fleet
      nodes[static_cast<size_t>(draw(0, n - 1))].accepting = false;
      plan = PlaceUnits(units, nodes, *rules_, plan, overrides);
    }
    std::map<std::tuple<std::string, std::string, int>, int> per_connection;  // (ip, exchange, connection)
    std::map<std::pair<std::string, std::string>, std::set<std::pair<std::string, int>>> connections;  // (ip, exchange)
    std::map<std::tuple<std::string, std::string, int>, std::set<std::string>> endpoints;
    std::map<std::string, const PlacementNode*> by_id;
    for (const PlacementNode& node : nodes) by_id[node.node_id] = &node;
    for (const auto& [key, p] : plan.units) {
      std::set<std::string> ips;
      for (const CopyPlacement& c : p.copies) {
        const PlacementNode& node = *by_id.at(c.node_id);
        ASSERT_TRUE(node.accepting && node.exchanges.count(p.unit.exchange)) << "seed " << seed << " " << key;
        ASSERT_TRUE(ips.insert(c.egress_ip).second) << "seed " << seed << " " << key << ": two copies on one IP";
        ++per_connection[{c.node_id, p.unit.exchange, c.connection}];
        endpoints[{c.node_id, p.unit.exchange, c.connection}].insert(
            std::string(common::StreamEndpoint(p.unit.exchange, p.unit.channel)));
        connections[{c.egress_ip, p.unit.exchange}].insert({c.node_id, c.connection});
      }
      ASSERT_LE(static_cast<int>(p.copies.size()), p.unit.redundancy);
      if (static_cast<int>(p.copies.size()) < p.unit.redundancy) {
        ASSERT_FALSE(p.shortfall.empty()) << "seed " << seed << " " << key;
      }
    }
    for (const auto& [k, streams] : per_connection) {
      ASSERT_LE(streams, limits(std::get<1>(k)).streams_per_connection) << "seed " << seed;
      ASSERT_EQ(endpoints[k].size(), 1u) << "seed " << seed << ": one connection, two endpoints";
    }
    for (const auto& [k, conns] : connections) {
      ConnectionLimits l = limits(k.second);
      if (l.connections_per_ip > 0) ASSERT_LE(static_cast<int>(conns.size()), l.connections_per_ip) << "seed " << seed;
    }
    // A unit short of copies: every eligible node on an IP it does not use is full.
    for (const auto& [key, p] : plan.units) {
      if (p.shortfall.empty()) continue;
      std::set<std::string> used;
      for (const CopyPlacement& c : p.copies) used.insert(c.egress_ip);
      ConnectionLimits l = limits(p.unit.exchange);
      for (const PlacementNode& node : nodes) {
        if (!node.accepting || !node.exchanges.count(p.unit.exchange) || used.count(node.egress_ip)) continue;
        auto& ip_conns = connections[{node.egress_ip, p.unit.exchange}];
        bool ip_full = l.connections_per_ip > 0 && static_cast<int>(ip_conns.size()) >= l.connections_per_ip;
        bool node_conns_full = true;
        for (const auto& [owner, index] : ip_conns) {
          if (owner == node.node_id &&
              per_connection[{node.node_id, p.unit.exchange, index}] < l.streams_per_connection &&
              endpoints[{node.node_id, p.unit.exchange, index}].count(
                  std::string(common::StreamEndpoint(p.unit.exchange, p.unit.channel)))) {
            node_conns_full = false;
          }
        }
        ASSERT_TRUE(ip_full && node_conns_full) << "seed " << seed << " " << key << ": " << node.node_id
                                                << " had room but the unit is short: " << p.shortfall;
      }
    }
  }
}

}  // namespace
}  // namespace marketprism::coordinator
