#include "common/gossip/broadcast_queue.h"

#include <gtest/gtest.h>

namespace marketprism::common::gossip {
namespace {

v1::GossipMessage Record(uint64_t owner, const std::string& key, uint64_t version) {
  v1::GossipMessage m;
  m.mutable_record()->set_owner(owner);
  m.mutable_record()->set_key(key);
  m.mutable_record()->set_version(version);
  m.mutable_record()->set_value(std::string(20, 'x'));
  return m;
}

v1::GossipMessage Member(uint64_t id, v1::MemberState s, uint64_t accuser = 0) {
  v1::GossipMessage m;
  m.mutable_member()->set_id(id);
  m.mutable_member()->set_state(s);
  m.mutable_member()->set_accuser(accuser);
  return m;
}

TEST(BroadcastQueueTest, ANewerRecordReplacesTheQueuedOne) {
  BroadcastQueue q;
  q.Push({7, "usage"}, Record(7, "usage", 1), 3);
  q.Push({7, "role"}, Record(7, "role", 2), 3);
  q.Push({7, "usage"}, Record(7, "usage", 3), 3);
  ASSERT_EQ(q.size(), 2u);
  auto out = q.Take(10'000);
  ASSERT_EQ(out.size(), 2u);
  for (const auto& m : out) {
    if (m.record().key() == "usage") EXPECT_EQ(m.record().version(), 3u);
  }
}

TEST(BroadcastQueueTest, EachMessageIsSentAtMostItsLimit) {
  BroadcastQueue q;
  q.Push({1, "k"}, Record(1, "k", 1), 2);
  EXPECT_EQ(q.Take(10'000).size(), 1u);
  EXPECT_EQ(q.Take(10'000).size(), 1u);
  EXPECT_TRUE(q.Take(10'000).empty());
  EXPECT_TRUE(q.empty());
}

TEST(BroadcastQueueTest, LeastSentFirstWithinTheBudget) {
  BroadcastQueue q;
  q.Push({1, "k"}, Record(1, "k", 1), 5);
  ASSERT_EQ(q.Take(10'000).size(), 1u);  // sent once
  q.Push({2, "k"}, Record(2, "k", 1), 5);
  size_t one = Record(2, "k", 1).ByteSizeLong() + 2;
  auto out = q.Take(one);  // room for one: the unsent one goes
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].record().owner(), 2u);
}

TEST(BroadcastQueueTest, AVerdictReplacesSuspicionsButSuspicionsKeepTheirAccusers) {
  BroadcastQueue q;
  q.Push({5, "", 1, true}, Member(5, v1::SUSPECT, 1), 4);
  q.Push({5, "", 2, true}, Member(5, v1::SUSPECT, 2), 4);
  EXPECT_EQ(q.size(), 2u) << "two accusers, two confirmations";
  q.Push({5, "", 1, true}, Member(5, v1::SUSPECT, 1), 4);
  EXPECT_EQ(q.size(), 2u) << "the same accuser again replaces its own";
  q.Push({5, ""}, Member(5, v1::DEAD), 4);
  ASSERT_EQ(q.size(), 1u);
  EXPECT_EQ(q.Take(10'000)[0].member().state(), v1::DEAD);
}

TEST(BroadcastQueueTest, ForgetDropsEverythingAboutAMember) {
  BroadcastQueue q;
  q.Push({5, ""}, Member(5, v1::DEAD), 4);
  q.Push({5, "usage"}, Record(5, "usage", 1), 4);
  q.Push({6, ""}, Member(6, v1::ALIVE), 4);
  q.Forget(5);
  EXPECT_EQ(q.size(), 1u);
}

}  // namespace
}  // namespace marketprism::common::gossip
