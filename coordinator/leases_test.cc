#include "coordinator/leases.h"

#include <random>

#include "gtest/gtest.h"

namespace marketprism::coordinator {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

class LeasesTest : public testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<common::RulesBook> rules = common::RulesBook::LoadDefault();
    ASSERT_TRUE(rules.ok()) << rules.status();
    rules_ = std::make_unique<common::RulesBook>(std::move(*rules));
    const common::ExchangeRules* ex = rules_->Find("binance_spot");
    orders_10s_ = ex->PoolIndex("ORDERS_10S");
    orders_1d_ = ex->PoolIndex("ORDERS_1D");
    ASSERT_GE(orders_10s_, 0);
    ASSERT_GE(orders_1d_, 0);
  }

  LeaseKey Key(int pool) const { return {"binance_spot", "KEY1", pool}; }

  static std::map<std::string, std::set<std::string>> View(std::set<std::string> nodes) {
    return {{"binance_spot", std::move(nodes)}};
  }

  static int64_t UnitsFor(const std::vector<LeaseGrant>& grants, const LeaseKey& key) {
    for (const LeaseGrant& g : grants) {
      if (g.key == key) return g.units;
    }
    return -1;  // not in the list: withdrawn
  }

  std::unique_ptr<common::RulesBook> rules_;
  int orders_10s_ = -1;
  int orders_1d_ = -1;
};

TEST_F(LeasesTest, TheFirstLeaderSharesEachAccountPoolEquallyAfterTheFreshWait) {
  AccountLeases leases(*rules_);
  leases.TakeLead(kT0, /*fresh=*/true);
  leases.AddAccount("binance_spot", "KEY1");
  auto grants = leases.Tick(kT0 + absl::Seconds(1), View({"a", "b", "c"}));
  EXPECT_EQ(UnitsFor(grants["a"], Key(orders_10s_)), -1) << "nothing is shared before fresh_wait";

  grants = leases.Tick(kT0 + absl::Seconds(3), View({"a", "b", "c"}));
  ASSERT_EQ(grants.size(), 3u);
  EXPECT_EQ(UnitsFor(grants["a"], Key(orders_10s_)), 17);
  EXPECT_EQ(UnitsFor(grants["b"], Key(orders_10s_)), 17);
  EXPECT_EQ(UnitsFor(grants["c"], Key(orders_10s_)), 16);
  // The daily pool goes out in chunks of 1/16 as it gets used.
  EXPECT_EQ(UnitsFor(grants["c"], Key(orders_1d_)), 10000);
  // Every lease carries the whole allocation.
  for (const LeaseGrant& g : grants["b"]) {
    EXPECT_EQ(g.holders.size(), 3u);
  }
  EXPECT_EQ(leases.Available(Key(orders_10s_), kT0 + absl::Seconds(3)), 0);
}

TEST_F(LeasesTest, ADeadHoldersShareIsHandedOnOnlyAfterItsLeaseAndOneWindow) {
  LeaseOptions o;
  o.absence_grace = absl::ZeroDuration();
  AccountLeases leases(*rules_, o);
  leases.TakeLead(kT0, true);
  leases.AddAccount("binance_spot", "KEY1");
  absl::Time t = kT0 + absl::Seconds(3);
  leases.Tick(t, View({"a", "b", "c"}));  // 17 / 17 / 16, renewed at t
  // c leaves the view (dead, or with another leader) just after its renewal.
  t += absl::Milliseconds(100);
  auto grants = leases.Tick(t, View({"a", "b"}));
  EXPECT_EQ(UnitsFor(grants["a"], Key(orders_10s_)), 17);
  EXPECT_EQ(UnitsFor(grants["b"], Key(orders_10s_)), 17);
  // c's lease may be spent until t - 100 ms + duration + slack; what it spent
  // counts for one more window (10 s).
  absl::Time c_free = kT0 + absl::Seconds(3) + o.duration + o.slack + absl::Seconds(10);
  for (absl::Time at = t; at < c_free; at += absl::Milliseconds(500)) {
    grants = leases.Tick(at, View({"a", "b"}));
    if (grants.empty()) continue;
    EXPECT_LE(UnitsFor(grants["a"], Key(orders_10s_)), 17) << at;
    EXPECT_LE(UnitsFor(grants["b"], Key(orders_10s_)), 17) << at;
  }
  grants = leases.Tick(c_free, View({"a", "b"}));
  EXPECT_EQ(UnitsFor(grants["a"], Key(orders_10s_)), 25);
  EXPECT_EQ(UnitsFor(grants["b"], Key(orders_10s_)), 25);
}

TEST_F(LeasesTest, ALeaderSeeingNoMajorityOfTheHoldersRenewsNothing) {
  LeaseOptions o;
  o.absence_grace = absl::ZeroDuration();
  AccountLeases leases(*rules_, o);
  leases.TakeLead(kT0, true);
  leases.AddAccount("binance_spot", "KEY1");
  absl::Time t = kT0 + absl::Seconds(3);
  leases.Tick(t, View({"a", "b", "c", "d"}));
  // Half the holders is not a majority: a and b lose their shares at once
  // and nothing is renewed, so the other side may reclaim them.
  auto grants = leases.Tick(t + absl::Seconds(1), View({"a", "b"}));
  EXPECT_EQ(UnitsFor(grants["a"], Key(orders_10s_)), -1);
  EXPECT_EQ(UnitsFor(grants["b"], Key(orders_10s_)), -1);
  EXPECT_EQ(UnitsFor(grants["a"], Key(orders_1d_)), -1);
  // Three of four is: d's share is reclaimed in time, the others renewed.
  AccountLeases other(*rules_, o);
  other.TakeLead(kT0, true);
  other.AddAccount("binance_spot", "KEY1");
  other.Tick(t, View({"a", "b", "c", "d"}));
  grants = other.Tick(t + absl::Seconds(1), View({"a", "b", "c"}));
  EXPECT_EQ(UnitsFor(grants["a"], Key(orders_10s_)), 13);
  EXPECT_EQ(UnitsFor(grants["c"], Key(orders_10s_)), 12);
}

TEST_F(LeasesTest, ANewLeaderAdoptsTheReportedAllocationAndWaitsForUnknownPools) {
  AccountLeases old_leader(*rules_);
  old_leader.TakeLead(kT0, true);
  old_leader.AddAccount("binance_spot", "KEY1");
  absl::Time t = kT0 + absl::Seconds(3);
  auto held = old_leader.Tick(t, View({"a", "b"}));

  AccountLeases leader(*rules_);
  absl::Time takeover = t + absl::Seconds(1);
  leader.TakeLead(takeover, /*fresh=*/false);
  leader.Adopt(takeover, held["a"]);
  auto grants = leader.Tick(takeover, View({"a", "b"}));
  EXPECT_EQ(UnitsFor(grants["a"], Key(orders_10s_)), 25);
  EXPECT_EQ(UnitsFor(grants["b"], Key(orders_10s_)), 25);

  // An account no node reported may have holders this leader cannot see:
  // it is shared out only after a lease and a window have passed.
  leader.AddAccount("binance_spot", "KEY2");
  LeaseKey k2{"binance_spot", "KEY2", orders_10s_};
  LeaseOptions o;
  absl::Time ready = takeover + o.duration + o.slack + absl::Seconds(10);
  grants = leader.Tick(ready - absl::Milliseconds(1), View({"a", "b"}));
  EXPECT_EQ(UnitsFor(grants["a"], k2), -1);
  grants = leader.Tick(ready, View({"a", "b"}));
  EXPECT_EQ(UnitsFor(grants["a"], k2), 25);
}

TEST_F(LeasesTest, ANewLeaderHonoursSharesTheOldOneWasStillTakingBack) {
  LeaseOptions o;
  o.absence_grace = absl::ZeroDuration();
  AccountLeases old_leader(*rules_, o);
  old_leader.TakeLead(kT0, true);
  old_leader.AddAccount("binance_spot", "KEY1");
  absl::Time t = kT0 + absl::Seconds(3);
  old_leader.Tick(t, View({"a", "b", "c", "d"}));  // 13 / 13 / 12 / 12
  // d drops out: its 12 may still be spent until its lease ends, and count
  // for a window after; the old leader holds them back...
  auto held = old_leader.Tick(t + absl::Milliseconds(100), View({"a", "b", "c"}));
  ASSERT_EQ(held["a"].size(), 2u);
  EXPECT_EQ(held["a"][0].freeing.size(), 1u);
  // ...and so does the new leader that a, b and c move to.
  AccountLeases leader(*rules_);
  absl::Time takeover = t + absl::Milliseconds(200);
  leader.TakeLead(takeover, false);
  for (const std::string& n : {"a", "b", "c"}) leader.Registered(takeover, n, held[n]);
  auto grants = leader.Tick(takeover, View({"a", "b", "c"}));
  int64_t sum = 0;
  for (const std::string& n : {"a", "b", "c"}) sum += UnitsFor(grants[n], Key(orders_10s_));
  EXPECT_EQ(sum, 38) << "d's 12 are not handed out again while they may count";
  EXPECT_EQ(leader.Available(Key(orders_10s_), takeover), 0);
}

TEST_F(LeasesTest, AHolderBrieflyOutOfViewKeepsItsShare) {
  LeaseOptions o;
  AccountLeases leases(*rules_, o);
  leases.TakeLead(kT0, true);
  leases.AddAccount("binance_spot", "KEY1");
  absl::Time t = kT0 + absl::Seconds(3);
  leases.Tick(t, View({"a", "b", "c"}));
  // c re-registers within the grace (a new leader's nodes arrive one by one).
  leases.Tick(t + absl::Seconds(1), View({"a", "b"}));
  auto grants = leases.Tick(t + o.absence_grace, View({"a", "b", "c"}));
  EXPECT_EQ(UnitsFor(grants["c"], Key(orders_10s_)), 16);
  // Out for longer, it loses it (and the others get it a window later).
  leases.Tick(t + absl::Seconds(4), View({"a", "b"}));
  grants = leases.Tick(t + absl::Seconds(4) + o.absence_grace, View({"a", "b"}));
  EXPECT_EQ(UnitsFor(grants["a"], Key(orders_10s_)), 17);
  EXPECT_EQ(leases.Available(Key(orders_10s_), t + absl::Seconds(4) + o.absence_grace), 0);
}

TEST_F(LeasesTest, RenewalsGoOutEveryRenewIntervalAndOnEveryChange) {
  LeaseOptions o;
  AccountLeases leases(*rules_, o);
  leases.TakeLead(kT0, true);
  leases.AddAccount("binance_spot", "KEY1");
  absl::Time t = kT0 + absl::Seconds(3);
  EXPECT_EQ(leases.Tick(t, View({"a", "b"})).size(), 2u);
  EXPECT_TRUE(leases.Tick(t + o.renew - absl::Milliseconds(1), View({"a", "b"})).empty());
  EXPECT_EQ(leases.Tick(t + o.renew, View({"a", "b"})).size(), 2u);
  // A newcomer changes the allocation: everyone hears at once (b is cut
  // to make room for c, which gets b's surplus only a window later).
  auto grants = leases.Tick(t + o.renew + absl::Milliseconds(1), View({"a", "b", "c"}));
  EXPECT_EQ(grants.size(), 3u);
  EXPECT_EQ(UnitsFor(grants["a"], Key(orders_10s_)), 17);
  EXPECT_EQ(UnitsFor(grants["c"], Key(orders_10s_)), 0);
}

// Two leaders on the two sides of a partition, nodes moving from the old
// one to the new one at random, sessions dropping, processes restarting:
// per window, the most each node could have spent (the largest share it
// held in that window) never adds up to more than the pool's capacity.
TEST_F(LeasesTest, SharesNeverAddUpToMoreThanTheCapacityAcrossTwoLeaders) {
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    std::mt19937_64 rng(seed);
    LeaseOptions o;
    const std::vector<std::string> names = {"a", "b", "c", "d", "e"};
    struct NodeState {
      int leader = 1;       // whose session it has (0: none)
      int64_t fence = 1;    // highest term seen
      std::vector<LeaseGrant> grants;
      absl::Time received = absl::InfinitePast();
      absl::Time expires = absl::InfinitePast();
      // What it reports when registering: its leases, if still running,
      // with what was left to free counted from when they came.
      std::vector<LeaseGrant> Report(absl::Time t) const {
        if (t >= expires) return {};
        std::vector<LeaseGrant> out = grants;
        for (LeaseGrant& g : out) {
          for (Freeing& f : g.freeing) f.left = std::max(absl::ZeroDuration(), f.left - (t - received));
        }
        return out;
      }
    };
    std::map<std::string, NodeState> nodes;
    for (const std::string& n : names) nodes[n];
    AccountLeases l1(*rules_, o), l2(*rules_, o);
    l1.TakeLead(kT0, true);
    l1.AddAccount("binance_spot", "KEY1");
    bool l2_leads = false;
    absl::Time takeover = kT0 + absl::Seconds(20 + rng() % 20);
    absl::Time l1_stops = takeover + absl::Seconds(rng() % 60);
    // (pool, window) -> node -> the largest share held in it
    std::map<std::pair<int, int64_t>, std::map<std::string, int64_t>> max_held;
    int64_t l2_total_at_end = 0;  // the most it shared in the last 30 s
    const LeaseKey key = Key(orders_10s_), day = Key(orders_1d_);
    for (absl::Time t = kT0; t < kT0 + absl::Seconds(180); t += absl::Milliseconds(250)) {
      if (!l2_leads && t >= takeover) {
        l2_leads = true;
        l2.TakeLead(t, false);
        l2.AddAccount("binance_spot", "KEY1");
      }
      // Sessions drop, processes restart (losing their leases), and nodes
      // move to the new leader, at random; each (re)registration reports.
      bool churn = t < kT0 + absl::Seconds(120);  // then things quiet down
      for (auto& [name, n] : nodes) {
        if (churn && rng() % 200 == 0) n.leader = 0;
        if (churn && rng() % 400 == 0) {
          n.leader = 0;
          n.grants.clear();
          n.expires = absl::InfinitePast();
        }
        int to = 0;
        if (n.leader == 0 && rng() % 8 == 0) to = n.fence >= 2 ? 2 : 1;
        if (l2_leads && n.leader != 2 && rng() % 40 == 0) to = 2;
        if (n.leader == 1 && n.fence > 1) to = 2;
        if (to == 1 && t >= l1_stops) to = 0;
        if (to != 0) {
          n.leader = to;
          n.fence = std::max<int64_t>(n.fence, to);
          (to == 1 ? l1 : l2).Registered(t, name, n.Report(t));
        }
      }
      for (int leader = 1; leader <= 2; ++leader) {
        if (leader == 1 && t >= l1_stops) continue;
        if (leader == 2 && !l2_leads) continue;
        std::set<std::string> view;
        for (const auto& [name, n] : nodes) {
          if (n.leader == leader) view.insert(name);
        }
        // Shares get used: each node has spent a random part of its daily share.
        AccountLeases::Usage used;
        for (const auto& [name, n] : nodes) {
          int64_t units = std::max<int64_t>(0, UnitsFor(n.grants, day));
          used[{name, day}] = units == 0 ? 0 : static_cast<int64_t>(rng() % (units + 1));
        }
        auto out = (leader == 1 ? l1 : l2).Tick(t, View(view), used);
        for (auto& [name, grants] : out) {
          NodeState& n = nodes[name];
          if (leader < n.fence) continue;  // fenced off
          n.grants = grants;
          n.received = t;
          n.expires = t + o.duration;
        }
      }
      int64_t total = 0;
      for (auto& [name, n] : nodes) {
        for (const LeaseKey& k : {key, day}) {
          int64_t window = absl::ToUnixSeconds(t) / (k.pool == orders_10s_ ? 10 : 86400);
          int64_t units = t < n.expires ? std::max<int64_t>(0, UnitsFor(n.grants, k)) : 0;
          int64_t& m = max_held[{k.pool, window}][name];
          m = std::max(m, units);
          if (k.pool == orders_10s_ && n.leader == 2) total += units;
        }
      }
      if (t >= kT0 + absl::Seconds(150)) l2_total_at_end = std::max(l2_total_at_end, total);
    }
    for (const auto& [window, held] : max_held) {
      int64_t sum = 0;
      for (const auto& [name, units] : held) sum += units;
      ASSERT_LE(sum, window.first == orders_10s_ ? 50 : 160000) << "seed " << seed << " window " << window.second;
    }
    // Once the churn has stopped, the old leader has too and what it handed
    // out has lapsed, the new one shares out the pool among the nodes it sees.
    EXPECT_GE(l2_total_at_end, 40) << "seed " << seed;
  }
}

TEST_F(LeasesTest, ARestartedNodeGetsNoShareItsOldSelfMayHaveSpentButADailyChunkAtOnce) {
  LeaseOptions o;
  AccountLeases leases(*rules_, o);
  leases.TakeLead(kT0, true);
  leases.AddAccount("binance_spot", "KEY1");
  absl::Time t = kT0 + absl::Seconds(3);
  auto grants = leases.Tick(t, View({"a", "b"}));
  ASSERT_EQ(UnitsFor(grants["a"], Key(orders_10s_)), 25);
  // a restarts at once (same name, no leases to report): the old process
  // may have spent its 25 in this window, so the new one gets none of it
  // until the window after the old lease's end...
  t += absl::Milliseconds(100);
  leases.Registered(t, "a", {});
  grants = leases.Tick(t, View({"a", "b"}));
  EXPECT_EQ(UnitsFor(grants["a"], Key(orders_10s_)), 0);
  // ...but a fresh chunk of the daily pool, which was never handed out.
  EXPECT_EQ(UnitsFor(grants["a"], Key(orders_1d_)), 10000);
  absl::Time back = kT0 + absl::Seconds(3) + o.duration + o.slack + absl::Seconds(10);
  grants = leases.Tick(back, View({"a", "b"}));
  EXPECT_EQ(UnitsFor(grants["a"], Key(orders_10s_)), 25);
  // The same process reconnecting (it reports its lease) keeps its share.
  leases.Registered(back, "b", grants["b"]);
  grants = leases.Tick(back + o.renew, View({"a", "b"}));
  EXPECT_EQ(UnitsFor(grants["b"], Key(orders_10s_)), 25);
}

TEST_F(LeasesTest, DailySharesGrowByChunksAsTheyAreUsed) {
  AccountLeases leases(*rules_);
  leases.TakeLead(kT0, true);
  leases.AddAccount("binance_spot", "KEY1");
  absl::Time t = kT0 + absl::Seconds(3);
  auto grants = leases.Tick(t, View({"a", "b"}));
  EXPECT_EQ(UnitsFor(grants["a"], Key(orders_1d_)), 10000);
  grants = leases.Tick(t + absl::Seconds(2), View({"a", "b"}), {{{"a", Key(orders_1d_)}, 4000}});
  EXPECT_EQ(UnitsFor(grants["a"], Key(orders_1d_)), 10000) << "more than half a chunk left";
  grants = leases.Tick(t + absl::Seconds(4), View({"a", "b"}), {{{"a", Key(orders_1d_)}, 5000}});
  EXPECT_EQ(UnitsFor(grants["a"], Key(orders_1d_)), 20000);
  EXPECT_EQ(UnitsFor(grants["b"], Key(orders_1d_)), 10000);
  // Never more than the pool: 16 chunks in all.
  for (int i = 0; i < 40; ++i) {
    leases.Tick(t + absl::Seconds(6 + 2 * i), View({"a", "b"}), {{{"a", Key(orders_1d_)}, 160000}});
  }
  EXPECT_EQ(leases.Available(Key(orders_1d_), t + absl::Seconds(100)), 0);
  grants = leases.Tick(t + absl::Seconds(200), View({"a", "b"}), {{{"a", Key(orders_1d_)}, 160000}});
  EXPECT_EQ(UnitsFor(grants["a"], Key(orders_1d_)), 150000);
}

}  // namespace
}  // namespace marketprism::coordinator
