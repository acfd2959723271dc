#include "coordinator/front_door.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <optional>

#include "absl/synchronization/notification.h"
#include "coordinator/test_routing_parts.h"
#include "tests/testing/fake_clock.h"

namespace marketprism::coordinator {
namespace {

// The leader, as a follower's front door reaches it: answers every Execute
// with its name as the node id.
class FakeLeader final : public v1::Coordinator::CallbackService {
 public:
  grpc::ServerUnaryReactor* Execute(grpc::CallbackServerContext* ctx, const v1::ExecuteRequest* req,
                                    v1::ExecuteResponse* resp) override {
    resp->set_node_id("answered-by-leader");
    resp->set_http_status(200);
    grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
};

class FrontDoorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    parts_ = std::make_unique<RoutingParts>(clock_);
    scheduler_ = parts_->scheduler.get();
    router_ = parts_->router.get();
    grpc::ServerBuilder b;
    b.RegisterService(&leader_);
    server_ = b.BuildAndStart();
    door_ = std::make_unique<FrontDoor>(FrontDoor::Options{"coord-b"}, clock_, *router_,
                                        [this](const std::string& address) {
                                          ++dialed_[address];
                                          return server_->InProcessChannel(grpc::ChannelArguments());
                                        });
  }
  void TearDown() override {
    door_->Shutdown();
    server_->Shutdown();
  }

  struct Result {
    absl::Notification done;
    absl::StatusOr<v1::ExecuteResponse> value = absl::UnknownError("unset");
  };
  std::shared_ptr<Result> Route(absl::Duration timeout) {
    auto r = std::make_shared<Result>();
    v1::ExecuteRequest req;
    req.set_exchange("binance_spot");
    req.set_path("/api/v3/ping");
    door_->Route(req, clock_.Now() + timeout, [r](absl::StatusOr<v1::ExecuteResponse> v) {
      r->value = std::move(v);
      r->done.Notify();
    }, nullptr);
    return r;
  }

  testing::FakeClock clock_;
  std::unique_ptr<RoutingParts> parts_;
  Scheduler* scheduler_ = nullptr;
  Router* router_ = nullptr;
  FakeLeader leader_;
  std::unique_ptr<grpc::Server> server_;
  std::map<std::string, int> dialed_;
  std::unique_ptr<FrontDoor> door_;
};

TEST_F(FrontDoorTest, WithNoLeaderACallIsHeldUntilItsDeadline) {
  door_->StartElection("coord-b:1");
  auto r = Route(absl::Seconds(2));
  clock_.AdvanceBy(absl::Seconds(1));
  EXPECT_FALSE(r->done.HasBeenNotified());
  clock_.AdvanceBy(absl::Seconds(1));  // the held calls are looked at on the clock's timer
  ASSERT_TRUE(r->done.HasBeenNotified());
  EXPECT_EQ(r->value.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(RetryAfterOf(r->value.status()), absl::Milliseconds(500));
}

TEST_F(FrontDoorTest, AHeldCallGoesToTheLeaderOnceOneIsKnown) {
  door_->StartElection("coord-b:1");
  auto r = Route(absl::Seconds(10));
  clock_.AdvanceBy(absl::Milliseconds(100));
  EXPECT_FALSE(r->done.HasBeenNotified());
  CoordinatorSeen a{"coord-a", "coord-a:1", /*term=*/1, /*live=*/true, /*alive=*/true};
  FrontDoor::Change c = door_->Reelect({a}, 0);
  EXPECT_TRUE(c.changed());
  EXPECT_FALSE(c.now.leading);
  EXPECT_EQ(c.now.leader_grpc, "coord-a:1");
  door_->ReleaseHeld();
  ASSERT_TRUE(r->done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  ASSERT_TRUE(r->value.ok()) << r->value.status();
  EXPECT_EQ(r->value->node_id(), "answered-by-leader");
  EXPECT_EQ(dialed_["coord-a:1"], 1);
}

TEST_F(FrontDoorTest, ANewLeaderHoldsCallsThatFindNoNodeDuringTheTakeoverGrace) {
  door_->StartElection("coord-b:1");
  // No other coordinator: after the hold-down this one claims term 1.
  EXPECT_FALSE(door_->Reelect({}, 0).gained());
  clock_.AdvanceBy(absl::Seconds(1));
  FrontDoor::Change c = door_->Reelect({}, 0);
  ASSERT_TRUE(c.gained());
  EXPECT_EQ(router_->term(), 1);
  auto r = Route(absl::Seconds(10));
  clock_.AdvanceBy(absl::Seconds(1));
  EXPECT_FALSE(r->done.HasBeenNotified());  // no node yet: held, not failed
  door_->Shutdown();
  ASSERT_TRUE(r->done.HasBeenNotified());
  EXPECT_EQ(r->value.status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(FrontDoorTest, ANodesNewerTermDeposesTheLeader) {
  door_->StartElection("coord-b:1");
  door_->Reelect({}, 0);
  clock_.AdvanceBy(absl::Seconds(1));
  ASSERT_TRUE(door_->Reelect({}, 0).gained());
  door_->ObserveTerm(5);
  EXPECT_TRUE(door_->Reelect({}, 0).lost());
}

}  // namespace
}  // namespace marketprism::coordinator
