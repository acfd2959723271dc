#include "node/term_fence.h"

#include "gtest/gtest.h"

namespace marketprism::node {
namespace {

TEST(TermFenceTest, AcceptsOnlyTheHighestTermAndItsHolder) {
  TermFence f;
  EXPECT_TRUE(f.Admit(1, "a"));
  EXPECT_TRUE(f.Admit(1, "a"));
  EXPECT_FALSE(f.Admit(1, "b")) << "two leaders of one term: the first one seen keeps it";
  EXPECT_TRUE(f.Admit(2, "b"));
  EXPECT_FALSE(f.Admit(1, "a")) << "the deposed leader";
  EXPECT_EQ(f.highest(), std::make_pair(int64_t{2}, std::string("b")));
}

TEST(TermFenceTest, ACoordinatorWithoutGossipMatchesAnyIdAtItsTerm) {
  TermFence f;
  EXPECT_TRUE(f.Admit(1, ""));
  EXPECT_TRUE(f.Admit(1, "a"));
  EXPECT_TRUE(f.Admit(1, ""));
  EXPECT_FALSE(f.Admit(1, "b"));
  EXPECT_FALSE(f.Admit(0, ""));
}

}  // namespace
}  // namespace marketprism::node
