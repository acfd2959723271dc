#include "coordinator/election.h"

#include "gtest/gtest.h"

namespace marketprism::coordinator {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);
const absl::Duration kHold = absl::Milliseconds(500);

CoordinatorSeen Up(std::string name, int64_t term = 0) {
  CoordinatorSeen c;
  c.name = std::move(name);
  c.grpc = c.name + ":7000";
  c.term = term;
  c.live = c.alive = true;
  return c;
}

CoordinatorSeen Down(std::string name, int64_t term) {
  CoordinatorSeen c = Up(std::move(name), term);
  c.live = c.alive = false;
  return c;
}

TEST(ElectionTest, ALoneCoordinatorClaimsTermOneAfterTheHoldDown) {
  Election e("a", "a:7000", kHold);
  Leadership l = e.Update(kT0, {}, 0);
  EXPECT_FALSE(l.leading);
  EXPECT_TRUE(l.leader.empty());
  l = e.Update(kT0 + kHold - absl::Milliseconds(1), {}, 0);
  EXPECT_FALSE(l.leading);
  l = e.Update(kT0 + kHold, {}, 0);
  EXPECT_TRUE(l.leading);
  EXPECT_TRUE(l.claimed_now);
  EXPECT_EQ(l.term, 1);
  EXPECT_EQ(l.leader_grpc, "a:7000");
  l = e.Update(kT0 + kHold + absl::Seconds(1), {}, 0);
  EXPECT_TRUE(l.leading);
  EXPECT_FALSE(l.claimed_now);
}

TEST(ElectionTest, OnlyTheLowestAliveNameClaims) {
  Election b("b", "b:7000", kHold);
  Leadership l = b.Update(kT0, {Up("a")}, 0);
  l = b.Update(kT0 + absl::Seconds(5), {Up("a")}, 0);
  EXPECT_FALSE(l.leading);
  EXPECT_TRUE(l.leader.empty());
  // a suspect "a" may not be elected: b goes ahead.
  CoordinatorSeen suspect = Up("a");
  suspect.alive = false;
  l = b.Update(kT0 + absl::Seconds(6), {suspect}, 0);
  EXPECT_TRUE(l.leading);
}

TEST(ElectionTest, FollowsALiveClaimAndTakesOverAboveEveryTermSeen) {
  Election b("b", "b:7000", kHold);
  Leadership l = b.Update(kT0, {Up("a", 3)}, 0);
  EXPECT_FALSE(l.leading);
  EXPECT_EQ(l.leader, "a");
  EXPECT_EQ(l.term, 3);
  EXPECT_EQ(l.leader_grpc, "a:7000");
  // The leader dies; a node has accepted term 4 from someone long gone.
  l = b.Update(kT0 + absl::Seconds(1), {Down("a", 3)}, 4);
  EXPECT_FALSE(l.leading) << "hold-down first";
  EXPECT_TRUE(l.leader.empty());
  l = b.Update(kT0 + absl::Seconds(1) + kHold, {Down("a", 3)}, 4);
  EXPECT_TRUE(l.leading);
  EXPECT_EQ(l.term, 5);
}

TEST(ElectionTest, ASuspectLeaderStillLeads) {
  Election b("b", "b:7000", kHold);
  CoordinatorSeen a = Up("a", 2);
  a.alive = false;  // suspect: live but not alive
  for (int i = 0; i < 10; ++i) {
    Leadership l = b.Update(kT0 + absl::Seconds(i), {a}, 0);
    EXPECT_FALSE(l.leading);
    EXPECT_EQ(l.leader, "a");
  }
}

TEST(ElectionTest, StepsDownForAHigherTermOrALowerNameAtTheSameTerm) {
  Election a("a", "a:7000", kHold);
  a.Update(kT0, {}, 0);
  ASSERT_TRUE(a.Update(kT0 + kHold, {}, 0).leading);
  Leadership l = a.Update(kT0 + absl::Seconds(1), {Up("z", 2)}, 0);
  EXPECT_TRUE(l.stepped_down);
  EXPECT_FALSE(l.leading);
  EXPECT_EQ(l.leader, "z");

  Election b("b", "b:7000", kHold);
  b.Update(kT0, {}, 0);
  ASSERT_EQ(b.Update(kT0 + kHold, {}, 0).term, 1);
  l = b.Update(kT0 + absl::Seconds(1), {Up("a", 1)}, 0);
  EXPECT_TRUE(l.stepped_down);
  EXPECT_EQ(l.leader, "a");
  // And "a" at the same term keeps it against "b".
  Election a2("a", "a:7000", kHold);
  a2.Update(kT0, {}, 0);
  ASSERT_EQ(a2.Update(kT0 + kHold, {}, 0).term, 1);
  EXPECT_TRUE(a2.Update(kT0 + absl::Seconds(1), {Up("b", 1)}, 0).leading);
}

TEST(ElectionTest, ANodeThatSawANewerTermDeposesTheLeader) {
  Election a("a", "a:7000", kHold);
  a.Update(kT0, {}, 0);
  ASSERT_EQ(a.Update(kT0 + kHold, {}, 0).term, 1);
  a.ObserveTerm(1);
  EXPECT_EQ(a.term(), 1) << "its own term is no news";
  a.ObserveTerm(2);
  EXPECT_EQ(a.term(), 0);
  Leadership l = a.Update(kT0 + absl::Seconds(1), {}, 0);
  EXPECT_FALSE(l.leading);
  // With nobody else claiming, it may lead again, above the term it heard of.
  l = a.Update(kT0 + absl::Seconds(1) + kHold, {}, 0);
  EXPECT_TRUE(l.leading);
  EXPECT_EQ(l.term, 3);
  // Fences in gossip work the same way.
  l = a.Update(kT0 + absl::Seconds(3), {}, 7);
  EXPECT_TRUE(l.stepped_down);
}

TEST(ElectionTest, AClaimHeldByADeadCoordinatorDoesNotStand) {
  Election c("c", "c:7000", kHold);
  c.Update(kT0, {Down("a", 9), Up("b")}, 0);
  Leadership l = c.Update(kT0 + kHold, {Down("a", 9), Up("b")}, 0);
  EXPECT_FALSE(l.leading) << "b is alive and lower";
  Election b("b", "b:7000", kHold);
  b.Update(kT0, {Down("a", 9), Up("c")}, 0);
  l = b.Update(kT0 + kHold, {Down("a", 9), Up("c")}, 0);
  EXPECT_TRUE(l.leading);
  EXPECT_EQ(l.term, 10);
}

}  // namespace
}  // namespace marketprism::coordinator
