#include "coordinator/client_service.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <thread>

#include "absl/synchronization/notification.h"
#include "common/metadata_keys.h"
#include "coordinator/test_routing_parts.h"
#include "tests/testing/fake_clock.h"

namespace marketprism::coordinator {
namespace {

class ClientServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    parts_ = std::make_unique<RoutingParts>(clock_);
    scheduler_ = parts_->scheduler.get();
    router_ = parts_->router.get();
    door_ = std::make_unique<FrontDoor>(FrontDoor::Options{"coord-a"}, clock_, *router_, common::InsecureChannels());
    sessions_ = std::make_unique<NodeSessions>("coord-a", NodeSessions::Hooks{});
    service_ = std::make_unique<ClientService>(ClientService::Options{.name = "coord-a"}, clock_, *door_, *scheduler_,
                                               *sessions_);
    grpc::ServerBuilder b;
    b.RegisterService(service_.get());
    server_ = b.BuildAndStart();
    stub_ = v1::Coordinator::NewStub(server_->InProcessChannel(grpc::ChannelArguments()));
  }
  void TearDown() override {
    door_->Shutdown();
    server_->Shutdown();
  }
  void AddNode() {
    scheduler_->UpsertNode("n1", "10.0.0.1", "10.0.0.1:7001", "test", {"binance_spot"});
    scheduler_->SetNodeClocks("n1", {{"binance_spot", absl::Milliseconds(3), absl::ZeroDuration()}});
  }

  testing::FakeClock clock_;
  std::unique_ptr<RoutingParts> parts_;
  Scheduler* scheduler_ = nullptr;
  Router* router_ = nullptr;
  std::unique_ptr<FrontDoor> door_;
  std::unique_ptr<NodeSessions> sessions_;
  std::unique_ptr<ClientService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
};

TEST_F(ClientServiceTest, DrainNodeNamesWhatIsWrong) {
  door_->LeadAlone("coord-a:1");
  v1::DrainNodeResponse resp;
  {
    grpc::ClientContext ctx;
    v1::DrainNodeRequest req;
    grpc::Status s = stub_->DrainNode(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(s.error_message(), "node_id: required");
  }
  {
    grpc::ClientContext ctx;
    v1::DrainNodeRequest req;
    req.set_node_id("nope");
    grpc::Status s = stub_->DrainNode(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_NE(s.error_message().find("nope"), std::string::npos);
  }
  AddNode();
  grpc::ClientContext ctx;
  v1::DrainNodeRequest req;
  req.set_node_id("n1");
  ASSERT_TRUE(stub_->DrainNode(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.node().state(), "draining");
}

TEST_F(ClientServiceTest, StatusShowsEachNodesIpPoolsAndClockOffsets) {
  door_->LeadAlone("coord-a:1");
  AddNode();
  grpc::ClientContext ctx;
  v1::GetStatusResponse resp;
  ASSERT_TRUE(stub_->GetStatus(&ctx, v1::GetStatusRequest(), &resp).ok());
  EXPECT_EQ(resp.mode(), "unified");
  EXPECT_EQ(resp.total_ips(), 1);
  ASSERT_EQ(resp.nodes_size(), 1);
  EXPECT_EQ(resp.nodes(0).state(), "active");
  EXPECT_EQ(resp.nodes(0).clock_offsets_us().at("binance_spot"), resp.nodes(0).clock_offset_us());
  bool weight = false;
  for (const v1::PoolUsage& p : resp.nodes(0).pools()) {
    weight |= p.pool() == "REQUEST_WEIGHT" && p.scope_key() == "10.0.0.1" && p.capacity() == 6000;
  }
  EXPECT_TRUE(weight);
}

TEST_F(ClientServiceTest, ACallNoLeaderTookIsAnsweredWithRetryAfterAndWhoAnswered) {
  door_->StartElection("coord-a:1");  // no leader yet: calls are held
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  v1::ExecuteRequest req;
  req.set_exchange("binance_spot");
  req.set_path("/api/v3/ping");
  v1::ExecuteResponse resp;
  absl::Notification done;
  grpc::Status s;
  std::thread call([&] {
    s = stub_->Execute(&ctx, req, &resp);
    done.Notify();
  });
  // The deadline passes on the fake clock long before the real one.
  while (!done.WaitForNotificationWithTimeout(absl::Milliseconds(5))) clock_.AdvanceBy(absl::Milliseconds(100));
  call.join();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  const auto& md = ctx.GetServerTrailingMetadata();
  ASSERT_EQ(md.count(common::kRetryAfterMsKey), 1u);
  EXPECT_EQ(std::string(md.find(common::kRetryAfterMsKey)->second.data(), md.find(common::kRetryAfterMsKey)->second.size()),
            "500");
  EXPECT_EQ(md.count(common::kAnsweredByKey), 1u);
}

}  // namespace
}  // namespace marketprism::coordinator
