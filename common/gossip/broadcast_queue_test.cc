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
    if (m->record().key() == "usage") EXPECT_EQ(m->record().version(), 3u);
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
  EXPECT_EQ(out[0]->record().owner(), 2u);
}

// A refutation must not wait behind a thousand usage summaries, even once
// it has been sent and they have not.
TEST(BroadcastQueueTest, MembershipNewsGoesBeforeRecordsWhichKeepAThird) {
  BroadcastQueue q;
  q.Push({1, ""}, Member(1, v1::ALIVE), 5);
  ASSERT_EQ(q.Take(10'000).size(), 1u);  // the membership news, sent once
  for (uint64_t owner = 100; owner < 300; ++owner) q.Push({owner, "usage"}, Record(owner, "usage", 1), 5);
  for (uint64_t id = 2; id < 200; ++id) q.Push({id, ""}, Member(id, v1::ALIVE), 5);
  const size_t budget = 1150;
  size_t member_bytes = 0, record_bytes = 0;
  bool first_member_sent = false;
  for (const SharedMessage& m : q.Take(budget)) {
    (m->has_record() ? record_bytes : member_bytes) += m->ByteSizeLong() + 2;
    first_member_sent |= m->has_member() && m->member().id() == 1;
  }
  EXPECT_LE(member_bytes + record_bytes, budget);
  EXPECT_GE(member_bytes, budget / 2);
  EXPECT_GE(record_bytes, budget / 3 - 40);  // a third, less at most one message
  // Membership news first, the least sent among it first: the fresh ones
  // fill the membership share before the one sent once.
  EXPECT_FALSE(first_member_sent);
  BroadcastQueue only_one;
  only_one.Push({1, ""}, Member(1, v1::ALIVE), 5);
  ASSERT_EQ(only_one.Take(10'000).size(), 1u);
  for (uint64_t owner = 100; owner < 300; ++owner) {
    only_one.Push({owner, "usage"}, Record(owner, "usage", 1), 5);
  }
  bool sent = false;
  for (const SharedMessage& m : only_one.Take(budget)) sent |= m->has_member();
  EXPECT_TRUE(sent) << "the news sent once goes before 200 records never sent";
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
  EXPECT_EQ(q.Take(10'000)[0]->member().state(), v1::DEAD);
}

TEST(BroadcastQueueTest, ForgetDropsEverythingAboutAMember) {
  BroadcastQueue q;
  q.Push({5, ""}, Member(5, v1::DEAD), 4);
  q.Push({5, "usage"}, Record(5, "usage", 1), 4);
  q.Push({6, ""}, Member(6, v1::ALIVE), 4);
  q.Forget(5);
  EXPECT_EQ(q.size(), 1u);
}

// Messages of 128 bytes or more take two bytes for their length: what Take
// returns must fit its budget as actually serialized (datagrams <= 1200).
TEST(BroadcastQueueTest, TakenMessagesFitTheBudgetAsSerialized) {
  BroadcastQueue q;
  size_t len = 0;
  for (uint64_t owner = 1; owner <= 10; ++owner) {
    v1::GossipMessage m = Record(owner, "usage", 1);
    m.mutable_record()->set_value(std::string(200, 'v'));
    len = m.ByteSizeLong();
    q.Push({owner, "usage"}, m, 3);
  }
  ASSERT_GE(len, 128u);
  size_t budget = 5 * (len + 2);  // five, had each cost two bytes of framing
  v1::GossipPacket packet;
  for (const SharedMessage& m : q.Take(budget)) *packet.add_messages() = *m;
  EXPECT_GT(packet.messages_size(), 0);
  EXPECT_LE(packet.ByteSizeLong(), budget);
}

}  // namespace
}  // namespace marketprism::common::gossip
