// The gossip core on a virtual clock and network (tests/testing/gossip_sim.h):
// joins, crash and silence detection, stalls, loss, refutation, records,
// leave, partitions, restarts and reproducibility. No sockets, no sleeps.
#include "common/gossip/core.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "tests/testing/gossip_sim.h"

namespace marketprism::common::gossip {
namespace {

using Kind = MemberEvent::Kind;
using ::marketprism::testing::GossipSim;

// When every running member other than `subject` had seen `kind` about it
// (after `since`): the latest of their first sightings, or nullopt if some
// running member never saw it.
std::optional<absl::Duration> SeenByAll(const GossipSim& sim, int subject, Kind kind, absl::Time since) {
  std::vector<std::optional<absl::Time>> first(static_cast<size_t>(sim.size()));
  for (const auto& o : sim.observations()) {
    if (o.subject == subject && o.kind == kind && o.at >= since && !first[static_cast<size_t>(o.observer)]) {
      first[static_cast<size_t>(o.observer)] = o.at;
    }
  }
  absl::Duration worst = absl::ZeroDuration();
  for (int i = 0; i < sim.size(); ++i) {
    if (i == subject || !sim.running(i)) continue;
    if (!first[static_cast<size_t>(i)]) return std::nullopt;
    worst = std::max(worst, *first[static_cast<size_t>(i)] - since);
  }
  return worst;
}

int Count(const GossipSim& sim, int subject, Kind kind, absl::Time since) {
  int n = 0;
  for (const auto& o : sim.observations()) n += o.subject == subject && o.kind == kind && o.at >= since;
  return n;
}

int CountAny(const GossipSim& sim, Kind kind, absl::Time since) {
  int n = 0;
  for (const auto& o : sim.observations()) n += o.kind == kind && o.at >= since;
  return n;
}

// Every running member holds every other running member alive.
bool Converged(const GossipSim& sim) {
  for (int a = 0; a < sim.size(); ++a) {
    if (!sim.running(a)) continue;
    for (int b = 0; b < sim.size(); ++b) {
      if (a == b || !sim.running(b)) continue;
      if (sim.StateAt(a, b) != MemberState::kAlive) return false;
    }
  }
  return true;
}

GossipSim::Options Small(uint64_t seed = 1) {
  GossipSim::Options o;
  o.seed = seed;
  return o;
}

TEST(GossipCoreTest, AJoinIsKnownByAllAtOnce) {
  GossipSim sim(Small());
  sim.AddMany(9, absl::Milliseconds(50));
  sim.RunFor(absl::Seconds(2));
  ASSERT_TRUE(Converged(sim));
  absl::Time t = sim.now();
  int late = sim.Add({0}, t);
  sim.RunFor(absl::Seconds(1));
  auto seen = SeenByAll(sim, late, Kind::kJoined, t);
  ASSERT_TRUE(seen.has_value());
  EXPECT_LT(*seen, absl::Milliseconds(20)) << "the seed and the joiner tell everyone directly";
  EXPECT_TRUE(Converged(sim));
}

TEST(GossipCoreTest, ACrashedProcessIsDeadEverywhereWithinHalfASecond) {
  GossipSim sim(Small());
  sim.AddMany(10, absl::Milliseconds(20));
  sim.RunFor(absl::Seconds(3));
  ASSERT_TRUE(Converged(sim));
  for (int victim : {9, 4}) {
    absl::Time t = sim.now();
    sim.Crash(victim);
    sim.RunFor(absl::Seconds(2));
    auto seen = SeenByAll(sim, victim, Kind::kDead, t);
    ASSERT_TRUE(seen.has_value()) << victim;
    EXPECT_LT(*seen, absl::Milliseconds(500)) << "ICMP + refused connection confirm it at once";
    EXPECT_EQ(Count(sim, victim, Kind::kSuspect, t), 0) << "no suspicion needed";
    sim.RunFor(absl::Seconds(1));
  }
}

TEST(GossipCoreTest, ASilentHostIsDeadEverywhereWithinTheStallBudgetPlusOneSecond) {
  GossipSim sim(Small());
  sim.AddMany(10, absl::Milliseconds(20));
  sim.RunFor(absl::Seconds(3));
  absl::Time t = sim.now();
  sim.HostDown(3);
  sim.RunFor(absl::Seconds(5));
  auto seen = SeenByAll(sim, 3, Kind::kDead, t);
  ASSERT_TRUE(seen.has_value());
  EXPECT_LE(*seen, absl::Seconds(3));
  // Never before it has been silent for the budget.
  for (const auto& o : sim.observations()) {
    if (o.subject == 3 && o.kind == Kind::kDead) EXPECT_GE(o.at - t, absl::Seconds(2));
  }
}

TEST(GossipCoreTest, AMemberFrozenForLessThanTheBudgetIsNeverDeclaredDead) {
  GossipSim sim(Small());
  sim.AddMany(10, absl::Milliseconds(20));
  sim.RunFor(absl::Seconds(3));
  absl::Time t = sim.now();
  for (int round = 0; round < 20; ++round) {
    sim.Stall(5, absl::Seconds(2));  // the baseline's GC-pause pattern: 2 s frozen, 4 s running
    sim.RunFor(absl::Seconds(6));
  }
  EXPECT_EQ(Count(sim, 5, Kind::kDead, t), 0);
  EXPECT_GT(Count(sim, 5, Kind::kSuspect, t), 0) << "it was doubted, and refuted";
  // The frozen member accuses no one for its own freeze.
  for (const auto& o : sim.observations()) {
    if (o.at >= t && o.observer == 5) EXPECT_NE(o.kind, Kind::kDead) << "about m" << o.subject;
  }
  EXPECT_TRUE(Converged(sim));
}

TEST(GossipCoreTest, AMemberFrozenPastTheBudgetIsDeadThenRejoins) {
  GossipSim sim(Small());
  sim.AddMany(8, absl::Milliseconds(20));
  sim.RunFor(absl::Seconds(3));
  absl::Time t = sim.now();
  sim.Stall(2, absl::Seconds(5));
  sim.RunFor(absl::Seconds(4));
  auto seen = SeenByAll(sim, 2, Kind::kDead, t);
  ASSERT_TRUE(seen.has_value());
  EXPECT_LE(*seen, absl::Seconds(3));
  sim.RunFor(absl::Seconds(4));  // thawed at 5 s: it refutes and is back
  EXPECT_TRUE(Converged(sim));
}

TEST(GossipCoreTest, NoFalseDeathsAtTenPercentLoss) {
  GossipSim::Options o = Small(7);
  o.loss = 0.10;
  GossipSim sim(o);
  sim.AddMany(10, absl::Milliseconds(20));
  sim.RunFor(absl::Seconds(5));
  absl::Time t = sim.now();
  sim.RunFor(absl::Minutes(10));
  EXPECT_EQ(CountAny(sim, Kind::kDead, t), 0);
  EXPECT_TRUE(Converged(sim));
}

TEST(GossipCoreTest, UrgentRecordsReachAllAtOnceAndSoftOnesConverge) {
  GossipSim sim(Small());
  sim.AddMany(10, absl::Milliseconds(20));
  sim.RunFor(absl::Seconds(2));
  absl::Time t = sim.now();
  sim.SetRecord(1, "role", "coordinator");
  sim.RunFor(absl::Milliseconds(50));
  for (int i = 0; i < sim.size(); ++i) {
    if (i == 1) continue;
    auto v = sim.core(i).Member(sim.core(1).self_id());
    ASSERT_TRUE(v.has_value());
    ASSERT_TRUE(v->records.count("role")) << "m" << i;
    EXPECT_EQ(v->records.at("role").value, "coordinator");
  }
  EXPECT_GE(Count(sim, 1, Kind::kUpdated, t), 9);
  for (int k = 0; k < 30; ++k) {
    for (int i = 0; i < sim.size(); ++i) sim.SetRecord(i, "usage", std::to_string(k * 100 + i), false);
    sim.RunFor(absl::Seconds(1));
  }
  sim.RunFor(absl::Seconds(40));  // one sync interval, to fill any gap
  for (int a = 0; a < sim.size(); ++a) {
    for (int b = 0; b < sim.size(); ++b) {
      if (a == b) continue;
      auto v = sim.core(a).Member(sim.core(b).self_id());
      ASSERT_TRUE(v && v->records.count("usage"));
      EXPECT_EQ(v->records.at("usage").value, std::to_string(29 * 100 + b));
    }
  }
}

// The grid reaches every member but the owner exactly once: the owner's
// row directly, everyone else through the one row member at their column;
// and no member sends on to more than one per other row, plus one.
TEST(GossipGridTest, EveryMemberIsReachedExactlyOnce) {
  for (size_t n = 2; n <= 1200; n += (n < 80 ? 1 : 37)) {
    size_t rows = GridRows(n, absl::Milliseconds(250));
    for (size_t owner = 0; owner < n; ++owner) {
      std::vector<int> got(n, 0);
      GridTargets plan = PlanGrid(n, owner, rows);
      EXPECT_LE(plan.column.size(), rows) << "n=" << n << " member " << owner << " carries too much";
      for (size_t i : plan.row) ++got[i];
      std::vector<size_t> senders = plan.row;
      senders.push_back(owner);
      for (size_t s : senders) {
        GridTargets theirs = PlanGrid(n, s, rows);
        EXPECT_EQ(theirs.row.size() + 1, plan.row.size() + 1) << "rows differ: n=" << n;
        for (size_t i : theirs.column) ++got[i];
      }
      for (size_t i = 0; i < n; ++i) {
        ASSERT_EQ(got[i], i == owner ? 0 : 1) << "n=" << n << " rows=" << rows << " owner=" << owner << " member=" << i;
      }
    }
  }
}

TEST(GossipGridTest, RowsBalanceRowSendsAgainstColumnBatches) {
  EXPECT_EQ(GridRows(18, absl::Milliseconds(250)), 2u);
  EXPECT_EQ(GridRows(50, absl::Milliseconds(250)), 4u);   // rows of 12-13
  EXPECT_EQ(GridRows(1000, absl::Milliseconds(250)), 16u);
  EXPECT_EQ(GridRows(3, absl::Milliseconds(250)), 1u);    // one row: everyone directly
  GridTargets t = PlanGrid(50, 49, 4);
  EXPECT_EQ(t.row.size(), 11u);  // positions 38..49
  EXPECT_THAT(t.column, ::testing::ElementsAre(11, 24, 36));
}

// Push-pull syncs run in rounds: each member starts one a sync interval,
// at its own phase, with a partner chosen round robin, so each is also
// asked for about one (a random partner would leave some asked four
// times and others not at all).
TEST(GossipCoreTest, EachMemberStartsAndAnswersAboutOneSyncARound) {
  GossipSim sim(Small());
  sim.AddMany(20, absl::Milliseconds(20));
  sim.RunFor(absl::Seconds(5));
  std::vector<int> started(20), answered(20);
  for (int i = 0; i < 20; ++i) {
    started[static_cast<size_t>(i)] = sim.syncs_started(i);
    answered[static_cast<size_t>(i)] = sim.syncs_answered(i);
  }
  sim.RunFor(absl::Seconds(300));  // ten rounds
  for (int i = 0; i < 20; ++i) {
    int s = sim.syncs_started(i) - started[static_cast<size_t>(i)];
    int a = sim.syncs_answered(i) - answered[static_cast<size_t>(i)];
    EXPECT_EQ(s, 10) << "m" << i << " started";
    EXPECT_GE(a, 9) << "m" << i << " answered";
    EXPECT_LE(a, 11) << "m" << i << " answered";
  }
}

// Acks alone go without the sender's id: the receiver finds the sender by
// its address. Anything else says who sent it.
TEST(GossipCoreTest, AckOnlyPacketsCarryNoSenderId) {
  auto message = [](auto set) {
    v1::GossipMessage m;
    set(m);
    return std::make_shared<const v1::GossipMessage>(std::move(m));
  };
  Outbox::Packet acks{"127.0.0.12:7946", 42, {message([](v1::GossipMessage& m) { m.mutable_ack()->set_seq(7); })}};
  EXPECT_TRUE(acks.anonymous());
  EXPECT_EQ(acks.ToProto().from(), 0u);
  Outbox::Packet with_news = acks;
  with_news.messages.push_back(message([](v1::GossipMessage& m) { m.mutable_member()->set_id(9); }));
  EXPECT_FALSE(with_news.anonymous());
  EXPECT_EQ(with_news.ToProto().from(), 42u);

  // Probes answered by anonymous acks count as answered: nobody is even
  // suspected in a quiet cluster.
  GossipSim sim(Small());
  sim.AddMany(10, absl::Milliseconds(20));
  absl::Time t = sim.now();
  sim.RunFor(absl::Seconds(20));
  EXPECT_EQ(CountAny(sim, Kind::kSuspect, t), 0);
  EXPECT_TRUE(Converged(sim));
}

// A usage summary (soft record) goes straight to everyone in a small
// cluster; in a larger one at once to the owner's row and within a grid
// interval to everyone, each member getting it once.
TEST(GossipCoreTest, SoftRecordsReachEveryoneWithinAGridInterval) {
  for (int n : {10, 30, 60}) {
    GossipSim::Options o = Small();
    o.gossip.soft_direct_limit = 16;
    GossipSim sim(o);
    sim.AddMany(n, absl::Milliseconds(20));
    sim.RunFor(absl::Seconds(3));
    ASSERT_TRUE(Converged(sim));
    auto have = [&](const std::string& v) {
      int k = 0;
      for (int i = 0; i < sim.size(); ++i) k += i != 1 && sim.core(i).RecordOf(sim.core(1).self_id(), "usage") == v;
      return k;
    };
    sim.SetRecord(1, "usage", "42", /*urgent=*/false);
    sim.RunFor(absl::Milliseconds(30));
    if (n == 10) {
      EXPECT_EQ(have("42"), n - 1) << "all at once in a cluster of " << n;
    } else {
      size_t rows = GridRows(static_cast<size_t>(n), o.gossip.grid_interval);
      EXPECT_EQ(have("42"), n / static_cast<int>(rows) - 1) << "its row at once in a cluster of " << n;
    }
    sim.RunFor(o.gossip.grid_interval);
    EXPECT_EQ(have("42"), n - 1) << "everyone within a grid interval in a cluster of " << n;

    // Every member publishing at once: all of it everywhere within the
    // interval, and nothing queued for gossip.
    absl::Time t = sim.now();
    for (int i = 0; i < sim.size(); ++i) sim.SetRecord(i, "usage", absl::StrCat("all-", i), false);
    sim.RunFor(o.gossip.grid_interval + absl::Milliseconds(5));
    for (int a = 0; a < sim.size(); ++a) {
      for (int b = 0; b < sim.size(); ++b) {
        if (a != b) {
          ASSERT_EQ(sim.core(a).RecordOf(sim.core(b).self_id(), "usage"), absl::StrCat("all-", b))
              << "m" << a << " lacks m" << b << "'s summary " << (sim.now() - t) << " after, n=" << n;
        }
      }
      EXPECT_EQ(sim.core(a).queued_broadcasts(), 0u) << "m" << a;
    }
  }
}

TEST(GossipCoreTest, AGracefulLeaveIsALeaveNotADeath) {
  GossipSim sim(Small());
  sim.AddMany(6, absl::Milliseconds(20));
  sim.RunFor(absl::Seconds(2));
  absl::Time t = sim.now();
  sim.Leave(4);
  sim.RunFor(absl::Seconds(5));
  auto seen = SeenByAll(sim, 4, Kind::kLeft, t);
  ASSERT_TRUE(seen.has_value());
  EXPECT_LT(*seen, absl::Milliseconds(20));
  EXPECT_EQ(Count(sim, 4, Kind::kDead, t), 0);
}

TEST(GossipCoreTest, AHealedPartitionMergesByItself) {
  GossipSim sim(Small(3));
  sim.AddMany(10, absl::Milliseconds(20));
  sim.RunFor(absl::Seconds(3));
  sim.Partition({5, 6, 7, 8, 9});
  sim.RunFor(absl::Seconds(60));
  EXPECT_EQ(sim.StateAt(0, 9), MemberState::kDead);
  EXPECT_EQ(sim.StateAt(9, 0), MemberState::kDead);
  sim.Heal();
  absl::Time healed = sim.now();
  while (!Converged(sim) && sim.now() - healed < absl::Seconds(30)) sim.RunFor(absl::Milliseconds(100));
  EXPECT_TRUE(Converged(sim));
  EXPECT_LE(sim.now() - healed, absl::Seconds(5));
}

// After a partition heals, each side's verdicts on the other flood in.
// A member that stayed on the accused's side must not adopt them: it never
// lost touch with the accused (it may still doubt it briefly, and the
// accused refutes).
TEST(GossipCoreTest, AfterAHealNoOneIsHeldDeadByItsOwnSide) {
  // The side cut off is small and the partition short: the majority has
  // declared it dead, but it has not yet suspected most of the majority
  // (it probes one member per 200 ms slot), so it holds the accusers alive.
  constexpr int kMembers = 200, kFirstCut = 190;
  for (uint64_t seed : {11ULL, 12ULL}) {
    GossipSim::Options o = Small(seed);
    o.max_delay = absl::Milliseconds(20);
    GossipSim sim(o);
    sim.AddMany(kMembers, absl::Milliseconds(10));
    sim.RunFor(absl::Seconds(5));
    sim.SetLoss(0.05);
    std::vector<int> cut;
    for (int i = kFirstCut; i < kMembers; ++i) cut.push_back(i);
    sim.Partition(cut);
    sim.RunFor(absl::Seconds(6));
    sim.Heal();
    absl::Time healed = sim.now();
    while (!Converged(sim) && sim.now() - healed < absl::Seconds(20)) sim.RunFor(absl::Milliseconds(100));
    EXPECT_TRUE(Converged(sim)) << "seed " << seed;
    EXPECT_LE(sim.now() - healed, absl::Seconds(5)) << "seed " << seed;
    auto side = [](int i) { return i >= kFirstCut; };
    for (const auto& ob : sim.observations()) {
      if (ob.at < healed - absl::Seconds(6) || ob.kind != Kind::kDead || ob.subject < 0) continue;
      EXPECT_NE(side(ob.observer), side(ob.subject))
          << "seed " << seed << ": m" << ob.observer << " held m" << ob.subject << ", on its own side, dead at +"
          << absl::FormatDuration(ob.at - healed) << " after the heal";
    }
  }
}

// A catch-up asks for one member's records: the answer carries that member,
// not the whole view (at 1000 members a full digest is ~20 KB).
TEST(GossipCoreTest, ACatchUpIsAnsweredWithOneMemberNotTheWholeView) {
  GossipSim sim(Small(5));
  sim.AddMany(20, absl::Milliseconds(10));
  sim.RunFor(absl::Seconds(3));
  sim.SetRecord(3, "role", "node");
  sim.RunFor(absl::Seconds(1));
  Core& answering = sim.core(0);
  v1::StreamRequest partial;
  v1::DigestEntry* d = partial.mutable_sync()->add_digest();
  d->set_id(sim.core(3).self_id());
  d->set_state(v1::ALIVE);
  d->set_incarnation(1);
  d->set_record_version(0);
  partial.mutable_sync()->set_partial(true);
  *partial.mutable_sync()->mutable_self()->mutable_member() = v1::MemberUpdate();
  v1::StreamResponse r = answering.HandleStream(sim.now(), "10.9.9.9:1", partial);
  ASSERT_TRUE(r.has_sync());
  EXPECT_EQ(r.sync().digest_size(), 0);
  ASSERT_EQ(r.sync().entries_size(), 1);
  EXPECT_EQ(r.sync().entries(0).member().id(), sim.core(3).self_id());
  EXPECT_GE(r.sync().entries(0).records_size(), 1);
  v1::StreamRequest full = partial;
  full.mutable_sync()->set_partial(false);
  EXPECT_EQ(answering.HandleStream(sim.now(), "10.9.9.9:1", full).sync().digest_size(), 20);
}

TEST(GossipCoreTest, AMemberCutOffFromEveryoneDoesNotTakeTheClusterDown) {
  GossipSim sim(Small(4));
  sim.AddMany(8, absl::Milliseconds(20));
  sim.RunFor(absl::Seconds(3));
  absl::Time t = sim.now();
  sim.Partition({2});
  sim.RunFor(absl::Seconds(10));
  // The majority agrees it is dead; no one else is.
  for (int i = 0; i < sim.size(); ++i) {
    if (i == 2) continue;
    EXPECT_EQ(sim.StateAt(i, 2), MemberState::kDead) << "m" << i;
    for (int j = 0; j < sim.size(); ++j) {
      if (j != 2 && j != i) EXPECT_EQ(sim.StateAt(i, j), MemberState::kAlive) << "m" << i << " on m" << j;
    }
  }
  // (It, alone, holds the others dead: from where it stands they are silent.)
  for (const auto& o : sim.observations()) {
    if (o.at >= t && o.observer != 2 && o.kind == Kind::kDead) EXPECT_EQ(o.subject, 2) << "seen by m" << o.observer;
  }
  sim.Heal();
  sim.RunFor(absl::Seconds(5));
  EXPECT_TRUE(Converged(sim));
}

TEST(GossipCoreTest, AProcessRestartedAtTheSameAddressReplacesTheOldOne) {
  GossipSim sim(Small());
  sim.AddMany(5, absl::Milliseconds(20));
  sim.RunFor(absl::Seconds(2));
  absl::Time t = sim.now();
  sim.Crash(3);
  sim.RunFor(absl::Milliseconds(5));
  int fresh = sim.Restart(3, {0});
  sim.RunFor(absl::Seconds(2));
  auto dead = SeenByAll(sim, 3, Kind::kDead, t);
  ASSERT_TRUE(dead.has_value());
  EXPECT_LT(*dead, absl::Seconds(1));
  for (int i = 0; i < sim.size(); ++i) {
    if (i == 3 || i == fresh) continue;
    EXPECT_EQ(sim.StateAt(i, fresh), MemberState::kAlive);
  }
}

TEST(GossipCoreTest, TheSameSeedGivesTheSameTrace) {
  auto run = [](uint64_t seed) {
    GossipSim::Options o = Small(seed);
    o.loss = 0.05;
    GossipSim sim(o);
    sim.AddMany(12, absl::Milliseconds(30));
    sim.RunFor(absl::Seconds(3));
    sim.Crash(4);
    sim.Stall(7, absl::Seconds(1));
    sim.RunFor(absl::Seconds(10));
    return sim.trace_hash();
  };
  EXPECT_EQ(run(11), run(11));
  EXPECT_NE(run(11), run(12));
}

}  // namespace
}  // namespace marketprism::common::gossip
