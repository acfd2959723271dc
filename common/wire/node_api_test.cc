#include "common/wire/node_api.h"

#include <gtest/gtest.h>

namespace marketprism::wire {
namespace {

class NodeApiWireTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto rules = common::RulesBook::LoadDefault();
    ASSERT_TRUE(rules.ok()) << rules.status();
    book_ = std::make_unique<common::RulesBook>(std::move(*rules));
    binance_ = book_->Find("binance_spot");
    ASSERT_NE(binance_, nullptr);
  }
  int Pool(absl::string_view name) { return binance_->PoolIndex(name); }

  std::unique_ptr<common::RulesBook> book_;
  const common::ExchangeRules* binance_ = nullptr;
};

TEST_F(NodeApiWireTest, CostRoundTripsByPoolName) {
  common::Cost cost;
  cost.charges = {{Pool("REQUEST_WEIGHT"), 50}, {Pool("RAW_REQUESTS"), 1}};
  Repeated<v1::PoolCharge> wire;
  CostToProto(*binance_, cost, &wire);
  ASSERT_EQ(wire.size(), 2);
  EXPECT_EQ(wire[0].pool(), "REQUEST_WEIGHT");
  EXPECT_EQ(wire[0].units(), 50);
  common::Cost back = CostFromProto(*binance_, wire);
  ASSERT_EQ(back.charges.size(), 2u);
  EXPECT_EQ(back.charges[0].pool, cost.charges[0].pool);
  EXPECT_EQ(back.charges[1].units, 1);
}

TEST_F(NodeApiWireTest, AChargeToAPoolTheRulesDoNotKnowIsDropped) {
  Repeated<v1::PoolCharge> wire;
  v1::PoolCharge* unknown = wire.Add();
  unknown->set_pool("NO_SUCH_POOL");
  unknown->set_units(7);
  v1::PoolCharge* known = wire.Add();
  known->set_pool("REQUEST_WEIGHT");
  known->set_units(2);
  common::Cost cost = CostFromProto(*binance_, wire);
  ASSERT_EQ(cost.charges.size(), 1u);
  EXPECT_EQ(cost.charges[0].pool, Pool("REQUEST_WEIGHT"));
}

TEST_F(NodeApiWireTest, UsageEventRoundTripsWithAndWithoutAnObservedHeader) {
  common::UsageEvent e;
  e.cost.charges = {{Pool("REQUEST_WEIGHT"), 20}};
  e.sent_ex = absl::FromUnixMicros(1'700'000'000'123'456);
  e.replied_ex = e.sent_ex + absl::Microseconds(1500);
  e.observed = std::make_pair(std::string("REQUEST_WEIGHT"), int64_t{321});
  v1::UsageEvent wire;
  UsageEventToProto(*binance_, e, &wire);
  EXPECT_EQ(wire.exchange(), "binance_spot");
  common::UsageEvent back = UsageEventFromProto(*binance_, wire);
  EXPECT_EQ(back.sent_ex, e.sent_ex);
  EXPECT_EQ(back.replied_ex, e.replied_ex);
  ASSERT_TRUE(back.observed);
  EXPECT_EQ(*back.observed, *e.observed);
  ASSERT_EQ(back.cost.charges.size(), 1u);
  EXPECT_EQ(back.cost.charges[0].units, 20);

  e.observed.reset();
  UsageEventToProto(*binance_, e, &wire);
  EXPECT_EQ(wire.observed_used(), -1);  // "none" on the wire, not 0 used
  EXPECT_FALSE(UsageEventFromProto(*binance_, wire).observed);
}

TEST_F(NodeApiWireTest, PoolUsageCarriesTheWindowAndItsStartOnlyWhenKnown) {
  common::BudgetBook::PoolView fixed;
  fixed.name = "REQUEST_WEIGHT";
  fixed.window = common::WindowKind::kFixed;
  fixed.used = 30;
  fixed.reserved = 5;
  fixed.capacity = 6000;
  fixed.window_start = absl::FromUnixMillis(1'700'000'040'000);
  fixed.previous = common::PoolLedger::WindowTally{absl::FromUnixMillis(1'699'999'980'000), 5990, 5985};
  common::BudgetBook::PoolView rolling = fixed;
  rolling.window = common::WindowKind::kRolling;
  rolling.window_start = absl::InfinitePast();
  rolling.previous.reset();
  Repeated<v1::PoolUsage> wire;
  PoolUsageToProto("binance_spot", "127.0.0.11", {fixed, rolling}, &wire);
  ASSERT_EQ(wire.size(), 2);
  EXPECT_EQ(wire[0].scope_key(), "127.0.0.11");
  EXPECT_EQ(wire[0].window(), "fixed");
  EXPECT_EQ(wire[0].used(), 30);
  EXPECT_EQ(wire[0].reserved(), 5);
  EXPECT_EQ(wire[0].capacity(), 6000);
  EXPECT_EQ(wire[0].window_start_ms(), 1'700'000'040'000);
  EXPECT_EQ(wire[0].previous_window_start_ms(), 1'699'999'980'000);
  EXPECT_EQ(wire[0].previous_window_own(), 5990);
  EXPECT_EQ(wire[0].previous_window_observed(), 5985);
  EXPECT_EQ(wire[1].window(), "rolling");
  EXPECT_EQ(wire[1].window_start_ms(), 0);
  EXPECT_EQ(wire[1].previous_window_start_ms(), 0) << "no previous window for a rolling pool";
}

TEST_F(NodeApiWireTest, ClocksBansAndLimitsRoundTrip) {
  Repeated<v1::ClockEstimate> clocks;
  ClockToProto({"okx", absl::Microseconds(-2500), absl::Microseconds(300)}, clocks.Add());
  std::vector<common::ExchangeClock> back = ClocksFromProto(clocks);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].exchange, "okx");
  EXPECT_EQ(back[0].offset, absl::Microseconds(-2500));
  EXPECT_EQ(back[0].uncertainty, absl::Microseconds(300));

  v1::Ban ban;
  BanToProto({"binance_spot", "banned", absl::FromUnixMillis(1'700'000'120'000), 418}, &ban);
  common::ExchangeBan b = BanFromProto(ban);
  EXPECT_EQ(b.exchange, "binance_spot");
  EXPECT_EQ(b.kind, "banned");
  EXPECT_EQ(b.until, absl::FromUnixMillis(1'700'000'120'000));
  EXPECT_EQ(b.http_status, 418);

  PoolLimits limits = {{"binance_spot", "REQUEST_WEIGHT", 300}, {"okx", "REQUESTS", 20}};
  v1::Limits wire;
  LimitsToProto(limits, &wire);
  EXPECT_EQ(LimitsFromProto(wire), limits);
}

TEST(MethodTest, AnEmptyMethodIsGet) {
  EXPECT_EQ(MethodOrDefault(""), "GET");
  EXPECT_EQ(MethodOrDefault("POST"), "POST");
}

}  // namespace
}  // namespace marketprism::wire
