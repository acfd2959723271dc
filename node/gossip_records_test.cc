#include "node/gossip_records.h"

#include <gtest/gtest.h>

#include "common/gossip/membership.h"
#include "tests/testing/fake_clock.h"

namespace marketprism::node {
namespace {

namespace g = common::gossip;

g::MemberView Coordinator(std::string name, std::string term,
                          g::MemberState state = g::MemberState::kAlive) {
  g::MemberView m;
  m.name = std::move(name);
  m.state = state;
  m.records[g::kRoleRecord].value = "coordinator";
  m.records[g::kTermRecord].value = std::move(term);
  m.records[g::kGrpcRecord].value = m.name + ":7000";
  return m;
}

TEST(BestLeaderClaimTest, TheHighestTermThenTheLowestName) {
  EXPECT_FALSE(BestLeaderClaim({}).has_value());
  std::optional<LeaderClaim> c =
      BestLeaderClaim({Coordinator("c2", "3"), Coordinator("c1", "2"), Coordinator("c3", "3")});
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->term, 3);
  EXPECT_EQ(c->name, "c2");
  EXPECT_EQ(c->grpc, "c2:7000");
}

TEST(BestLeaderClaimTest, OnlyLiveCoordinatorsWithATermClaim) {
  g::MemberView node = Coordinator("n1", "9");
  node.records[g::kRoleRecord].value = "node";
  std::optional<LeaderClaim> c = BestLeaderClaim(
      {node, Coordinator("dead", "8", g::MemberState::kDead),
       Coordinator("left", "8", g::MemberState::kLeft), Coordinator("follower", "0"),
       Coordinator("garbled", "x"), Coordinator("suspect", "4", g::MemberState::kSuspect)});
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->name, "suspect");
  EXPECT_EQ(c->term, 4);
}

TEST(UsageRecordTest, EachExchangesBusiestPoolOrIdle) {
  auto rules = common::RulesBook::LoadDefault();
  ASSERT_TRUE(rules.ok()) << rules.status();
  testing::FakeClock clock;
  Lanes lanes;
  lanes["binance_spot"] =
      std::make_unique<ExchangeLane>(*rules->Find("binance_spot"), LaneOptions{}, clock);
  EXPECT_EQ(UsageRecord(lanes), "idle");
}

}  // namespace
}  // namespace marketprism::node
