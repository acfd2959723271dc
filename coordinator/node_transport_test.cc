#include "coordinator/node_transport.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/synchronization/notification.h"
#include "tests/testing/fake_clock.h"

namespace marketprism::coordinator {
namespace {

// A node that records what it was sent; with hold_, it keeps the call open
// until the caller cancels it.
class FakeNodeService final : public v1::Node::CallbackService {
 public:
  grpc::ServerUnaryReactor* Dispatch(grpc::CallbackServerContext* ctx, const v1::DispatchRequest* req,
                                     v1::DispatchResponse* resp) override {
    {
      absl::MutexLock lock(&mu_);
      paths_.push_back(req->path());
    }
    if (hold_) {
      class Held : public grpc::ServerUnaryReactor {
        void OnCancel() override { Finish(grpc::Status::CANCELLED); }
        void OnDone() override { delete this; }
      };
      arrived_.Notify();
      return new Held;
    }
    resp->set_outcome(v1::DispatchResponse::REPLIED);
    resp->set_http_status(200);
    grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
  std::vector<std::string> paths() {
    absl::MutexLock lock(&mu_);
    return paths_;
  }
  bool hold_ = false;
  absl::Notification arrived_;

 private:
  absl::Mutex mu_;
  std::vector<std::string> paths_ ABSL_GUARDED_BY(mu_);
};

class GrpcNodeClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder b;
    b.RegisterService(&node_);
    server_ = b.BuildAndStart();
    client_ = std::make_unique<GrpcNodeClient>(clock_, [this](const std::string& address) {
      dialed_.push_back(address);
      return server_->InProcessChannel(grpc::ChannelArguments());
    });
  }
  void TearDown() override { server_->Shutdown(); }

  struct Answer {
    absl::Notification done;
    absl::Status status;
    v1::DispatchResponse response;
  };
  std::shared_ptr<Answer> Dispatch(const std::string& node, const std::string& path) {
    auto a = std::make_shared<Answer>();
    v1::DispatchRequest req;
    req.set_path(path);
    client_->Dispatch(node, req, clock_.Now() + absl::Seconds(10), [a](absl::Status s, v1::DispatchResponse r) {
      a->status = s;
      a->response = std::move(r);
      a->done.Notify();
    });
    return a;
  }

  testing::FakeClock clock_;
  FakeNodeService node_;
  std::unique_ptr<grpc::Server> server_;
  std::vector<std::string> dialed_;
  std::unique_ptr<GrpcNodeClient> client_;
};

TEST_F(GrpcNodeClientTest, ANodeNotSetIsAnsweredNotSentAtOnce) {
  auto a = Dispatch("n1", "/api/v3/ping");
  ASSERT_TRUE(a->done.HasBeenNotified());
  EXPECT_TRUE(a->status.ok());
  EXPECT_EQ(a->response.outcome(), v1::DispatchResponse::NOT_SENT);
  EXPECT_TRUE(dialed_.empty());
}

TEST_F(GrpcNodeClientTest, DispatchReachesTheNodeAtTheAddressItRegistered) {
  client_->SetNode("n1", "10.0.0.1:7001");
  client_->SetNode("n1", "10.0.0.1:7001");  // the same address: the channel is kept
  auto a = Dispatch("n1", "/api/v3/time");
  ASSERT_TRUE(a->done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_TRUE(a->status.ok()) << a->status;
  EXPECT_EQ(a->response.outcome(), v1::DispatchResponse::REPLIED);
  EXPECT_EQ(node_.paths(), std::vector<std::string>{"/api/v3/time"});
  EXPECT_EQ(dialed_, std::vector<std::string>{"10.0.0.1:7001"});
}

TEST_F(GrpcNodeClientTest, ForgettingADeadNodeCancelsItsCallsInFlight) {
  node_.hold_ = true;
  client_->SetNode("n1", "10.0.0.1:7001");
  auto a = Dispatch("n1", "/api/v3/depth");
  ASSERT_TRUE(node_.arrived_.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_FALSE(a->done.HasBeenNotified());
  client_->ForgetNode("n1");
  ASSERT_TRUE(a->done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(a->status.code(), absl::StatusCode::kCancelled);
  auto after = Dispatch("n1", "/api/v3/ping");
  EXPECT_EQ(after->response.outcome(), v1::DispatchResponse::NOT_SENT);
}

}  // namespace
}  // namespace marketprism::coordinator
