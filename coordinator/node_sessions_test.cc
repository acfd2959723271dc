#include "coordinator/node_sessions.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <vector>

#include "absl/synchronization/mutex.h"

namespace marketprism::coordinator {
namespace {

using Stream = grpc::ClientReaderWriter<v1::NodeMessage, v1::CoordinatorMessage>;

class NodeSessionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NodeSessions::Hooks hooks;
    hooks.admit = [this](int64_t highest) {
      absl::MutexLock lock(&mu_);
      highest_seen_ = highest;
      return leadership_;
    };
    hooks.on_register = [](const v1::Register& r) {
      v1::Registered welcome;
      welcome.set_accepted(true);
      welcome.set_term(7);
      return welcome;
    };
    hooks.after_register = [this](const std::string& node) {
      // Sent at once: it must still reach the node after the welcome.
      v1::CoordinatorMessage m;
      m.mutable_leases()->set_term(7);
      EXPECT_TRUE(sessions_->Send(node, m));
    };
    hooks.on_report = [this](const std::string& node, const v1::UsageReport&) {
      absl::MutexLock lock(&mu_);
      reports_.push_back(node);
    };
    hooks.on_end = [this](const std::string& node) {
      absl::MutexLock lock(&mu_);
      ended_.push_back(node);
    };
    sessions_ = std::make_unique<NodeSessions>("coord-a", std::move(hooks));
    grpc::ServerBuilder b;
    b.RegisterService(sessions_.get());
    server_ = b.BuildAndStart();
    stub_ = v1::NodeControl::NewStub(server_->InProcessChannel(grpc::ChannelArguments()));
    absl::MutexLock lock(&mu_);
    leadership_.leading = true;
    leadership_.term = 7;
  }
  void TearDown() override {
    sessions_->EndAll();
    server_->Shutdown();
  }

  v1::NodeMessage Hello(const std::string& id, const std::string& ip = "127.0.0.11") {
    v1::NodeMessage m;
    m.mutable_register_()->set_node_id(id);
    m.mutable_register_()->set_egress_ip(ip);
    m.mutable_register_()->set_grpc_address("127.0.0.11:7001");
    m.mutable_register_()->set_highest_term(3);
    return m;
  }
  bool Await(const std::function<bool()>& cond) {
    absl::MutexLock lock(&mu_);
    auto holds = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return cond(); };
    return mu_.AwaitWithTimeout(absl::Condition(&holds), absl::Seconds(10));
  }

  absl::Mutex mu_;
  Leadership leadership_ ABSL_GUARDED_BY(mu_);
  int64_t highest_seen_ ABSL_GUARDED_BY(mu_) = -1;
  std::vector<std::string> reports_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> ended_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<NodeSessions> sessions_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::NodeControl::Stub> stub_;
};

TEST_F(NodeSessionsTest, ARegistrationWithABadFieldIsRefusedNamingIt) {
  grpc::ClientContext ctx;
  auto stream = stub_->Session(&ctx);
  ASSERT_TRUE(stream->Write(Hello("n1", "not-an-ip")));
  v1::CoordinatorMessage m;
  ASSERT_TRUE(stream->Read(&m));
  EXPECT_FALSE(m.registered().accepted());
  EXPECT_NE(m.registered().reason().find("register.egress_ip"), std::string::npos) << m.registered().reason();
  grpc::Status s = stream->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(sessions_->Connected().empty());
}

TEST_F(NodeSessionsTest, AFollowerRefusesNamingTheLeader) {
  {
    absl::MutexLock lock(&mu_);
    leadership_ = Leadership{};
    leadership_.term = 4;
    leadership_.leader = "coord-b";
    leadership_.leader_grpc = "127.0.0.2:7000";
  }
  grpc::ClientContext ctx;
  auto stream = stub_->Session(&ctx);
  ASSERT_TRUE(stream->Write(Hello("n1")));
  v1::CoordinatorMessage m;
  ASSERT_TRUE(stream->Read(&m));
  EXPECT_FALSE(m.registered().accepted());
  EXPECT_EQ(m.registered().leader_address(), "127.0.0.2:7000");
  EXPECT_EQ(m.registered().term(), 4);
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  absl::MutexLock lock(&mu_);
  EXPECT_EQ(highest_seen_, 3);  // the node's highest term was asked about
}

TEST_F(NodeSessionsTest, TheWelcomeComesFirstThenQueuedMessagesAndReportsFlowIn) {
  grpc::ClientContext ctx;
  auto stream = stub_->Session(&ctx);
  ASSERT_TRUE(stream->Write(Hello("n1")));
  v1::CoordinatorMessage m;
  ASSERT_TRUE(stream->Read(&m));
  ASSERT_TRUE(m.has_registered());
  EXPECT_TRUE(m.registered().accepted());
  ASSERT_TRUE(stream->Read(&m));
  EXPECT_TRUE(m.has_leases());  // sent from after_register, after the welcome
  EXPECT_EQ(sessions_->Connected(), std::set<std::string>{"n1"});
  v1::NodeMessage report;
  report.mutable_report();
  ASSERT_TRUE(stream->Write(report));
  ASSERT_TRUE(Await([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return reports_.size() == 1; }));
  v1::CoordinatorMessage drain;
  drain.mutable_drain()->set_draining(true);
  sessions_->SendAll(drain);
  ASSERT_TRUE(stream->Read(&m));
  EXPECT_TRUE(m.has_drain());
  sessions_->End("n1");
  EXPECT_FALSE(stream->Read(&m));
  (void)stream->Finish();
  ASSERT_TRUE(Await([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return ended_.size() == 1; }));
  EXPECT_FALSE(sessions_->Send("n1", drain));
}

TEST_F(NodeSessionsTest, ANewSessionOfTheSameNodeEndsTheOldOneQuietly) {
  grpc::ClientContext first_ctx, second_ctx;
  auto first = stub_->Session(&first_ctx);
  v1::CoordinatorMessage m;
  ASSERT_TRUE(first->Write(Hello("n1")));
  ASSERT_TRUE(first->Read(&m));
  auto second = stub_->Session(&second_ctx);
  ASSERT_TRUE(second->Write(Hello("n1")));
  ASSERT_TRUE(second->Read(&m));
  EXPECT_TRUE(m.registered().accepted());
  // The first stream ends (after the lease message it may still get).
  while (first->Read(&m)) {
  }
  (void)first->Finish();
  EXPECT_EQ(sessions_->Connected(), std::set<std::string>{"n1"});
  {
    absl::MutexLock lock(&mu_);
    EXPECT_TRUE(ended_.empty()) << "a replaced session is not the node's end";
  }
  second_ctx.TryCancel();
  (void)second->Finish();
  ASSERT_TRUE(Await([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return ended_.size() == 1; }));
}

}  // namespace
}  // namespace marketprism::coordinator
