#include "coordinator/member_watch.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <vector>

#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_membership.h"

namespace marketprism::coordinator {
namespace {

namespace g = common::gossip;

class MemberWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto rules = common::RulesBook::LoadDefault();
    ASSERT_TRUE(rules.ok());
    scheduler_ = std::make_unique<Scheduler>(std::move(*rules), clock_);
    nodes_ = std::make_unique<GrpcNodeClient>(clock_, [](const std::string& a) {
      return grpc::CreateChannel("unix:/nonexistent/" + a, grpc::InsecureChannelCredentials());
    });
    router_ = std::make_unique<Router>(*scheduler_, *nodes_);
    sessions_ = std::make_unique<NodeSessions>("coord-b", NodeSessions::Hooks{});
    door_ = std::make_unique<FrontDoor>(FrontDoor::Options{"coord-b"}, clock_, *router_, common::InsecureChannels());
    watch_ = std::make_unique<MemberWatch>(clock_, *scheduler_, *nodes_, *sessions_, *door_,
                                           [this](const FrontDoor::Change& c) { changes_.push_back(c); });
    auto self = gossip_.Factory()("coord-b", [this](const g::MemberEvent& e) { watch_->OnEvent(e); });
    ASSERT_TRUE(self.ok());
    self_ = std::move(*self);
    self_->SetRecord(g::kRoleRecord, "coordinator");
    door_->StartElection("coord-b:1");
    watch_->Start(*self_);
    // A node, known to gossip and registered with the scheduler.
    auto node = gossip_.Factory()("n1", nullptr);
    ASSERT_TRUE(node.ok());
    node_ = std::move(*node);
    node_->SetRecord(g::kRoleRecord, "node");
    scheduler_->UpsertNode("n1", "10.0.0.1", "10.0.0.1:7001", "test", {"binance_spot"});
  }
  void TearDown() override {
    watch_->Stop();
    door_->Shutdown();
  }
  NodeState StateOfN1() {
    for (const NodeSnapshot& n : scheduler_->Snapshot().nodes) {
      if (n.node_id == "n1") return n.state;
    }
    return NodeState::kDisconnected;
  }

  testing::FakeClock clock_;
  testing::FakeGossip gossip_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<GrpcNodeClient> nodes_;
  std::unique_ptr<Router> router_;
  std::unique_ptr<NodeSessions> sessions_;
  std::unique_ptr<FrontDoor> door_;
  std::unique_ptr<MemberWatch> watch_;
  std::unique_ptr<g::Membership> self_, node_;
  std::vector<FrontDoor::Change> changes_;
};

TEST_F(MemberWatchTest, ASuspectNodeGetsNoWorkAndADeadOneIsDisconnected) {
  clock_.AdvanceBy(absl::Milliseconds(50));
  EXPECT_EQ(StateOfN1(), NodeState::kActive);
  gossip_.Suspect("n1");
  EXPECT_EQ(StateOfN1(), NodeState::kActive);  // handled on the clock's timer, not gossip's thread
  clock_.AdvanceBy(absl::Milliseconds(50));
  EXPECT_EQ(StateOfN1(), NodeState::kSuspect);
  gossip_.Kill("n1");
  clock_.AdvanceBy(absl::Milliseconds(50));
  EXPECT_EQ(StateOfN1(), NodeState::kDisconnected);
}

TEST_F(MemberWatchTest, TheElectionRunsOnGossipsViewOfTheCoordinators) {
  // Alone: after the hold-down this coordinator claims term 1.
  for (int i = 0; i < 20 && changes_.empty(); ++i) clock_.AdvanceBy(absl::Milliseconds(50));
  ASSERT_EQ(changes_.size(), 1u);
  EXPECT_TRUE(changes_[0].gained());
  EXPECT_EQ(changes_[0].now.term, 1);
  // A coordinator claiming a newer term appears: this one steps down.
  auto other = gossip_.Factory()("coord-a", nullptr);
  ASSERT_TRUE(other.ok());
  (*other)->SetRecord(g::kRoleRecord, "coordinator");
  (*other)->SetRecord(g::kGrpcRecord, "coord-a:1");
  (*other)->SetRecord(g::kTermRecord, "2");
  clock_.AdvanceBy(absl::Milliseconds(50));
  ASSERT_EQ(changes_.size(), 2u);
  EXPECT_TRUE(changes_[1].lost());
  EXPECT_EQ(door_->leadership().leader, "coord-a");
  EXPECT_EQ(door_->leadership().term, 2);
}

}  // namespace
}  // namespace marketprism::coordinator
