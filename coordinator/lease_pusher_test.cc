#include "coordinator/lease_pusher.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/synchronization/mutex.h"
#include "tests/testing/fake_clock.h"

namespace marketprism::coordinator {
namespace {

using Stream = grpc::ClientReaderWriter<v1::NodeMessage, v1::CoordinatorMessage>;

// A leader (or not) with one node in session: the node's stream collects
// what the pusher sends it.
class LeasePusherTest : public ::testing::Test {
 protected:
  void Make(bool leading) {
    auto rules = common::RulesBook::LoadDefault();
    ASSERT_TRUE(rules.ok());
    scheduler_ = std::make_unique<Scheduler>(std::move(*rules), clock_);
    NodeSessions::Hooks hooks;
    hooks.admit = [](int64_t) {
      Leadership l;
      l.leading = true;
      l.term = 4;
      return l;
    };
    hooks.on_register = [](const v1::Register&) {
      v1::Registered r;
      r.set_accepted(true);
      return r;
    };
    sessions_ = std::make_unique<NodeSessions>("coord-a", std::move(hooks));
    grpc::ServerBuilder b;
    b.RegisterService(sessions_.get());
    server_ = b.BuildAndStart();
    leading_ = leading;
    pusher_ = std::make_unique<LeasePusher>(LeasePusher::Options{{}, "coord-a", /*elected=*/true}, clock_,
                                            *scheduler_, *sessions_, [this] {
                                              Leadership l;
                                              l.leading = leading_;
                                              l.term = 4;
                                              return l;
                                            });
    pusher_->TakeLead(/*fresh=*/true);
    // The node: known to the scheduler (ready for Binance) and in session.
    scheduler_->UpsertNode("n1", "10.0.0.1", "10.0.0.1:7001", "test", {"binance_spot"});
    scheduler_->SetNodeClocks("n1", {{"binance_spot", absl::ZeroDuration(), absl::ZeroDuration()}});
    stub_ = v1::NodeControl::NewStub(server_->InProcessChannel(grpc::ChannelArguments()));
    stream_ = stub_->Session(&ctx_);
    v1::NodeMessage hello;
    hello.mutable_register_()->set_node_id("n1");
    hello.mutable_register_()->set_egress_ip("10.0.0.1");
    hello.mutable_register_()->set_grpc_address("10.0.0.1:7001");
    ASSERT_TRUE(stream_->Write(hello));
    v1::CoordinatorMessage welcome;
    ASSERT_TRUE(stream_->Read(&welcome));
    reader_ = std::thread([this] {
      v1::CoordinatorMessage m;
      while (stream_->Read(&m)) {
        absl::MutexLock lock(&mu_);
        if (m.has_leases() && m.leases().leases_size() > 0) leases_.push_back(m.leases());
      }
    });
  }
  void TearDown() override {
    pusher_->Stop();
    ctx_.TryCancel();
    if (reader_.joinable()) reader_.join();
    (void)stream_->Finish();
    server_->Shutdown();
  }
  // Advances in 250 ms steps (the pusher's tick) until a message granting
  // leases came (an empty one only says the node holds none yet).
  bool AwaitLeases(absl::Duration limit) {
    for (absl::Duration d; d < limit; d += absl::Milliseconds(250)) {
      clock_.AdvanceBy(absl::Milliseconds(250));
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(+[](std::vector<v1::Leases>* l) { return !l->empty(); }, &leases_),
                               absl::Milliseconds(20))) {
        return true;
      }
    }
    return false;
  }

  testing::FakeClock clock_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<NodeSessions> sessions_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<LeasePusher> pusher_;
  bool leading_ = true;
  std::unique_ptr<v1::NodeControl::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<Stream> stream_;
  std::thread reader_;
  absl::Mutex mu_;
  std::vector<v1::Leases> leases_ ABSL_GUARDED_BY(mu_);
};

TEST_F(LeasePusherTest, ALeaderSharesANewAccountOutToTheNodesInSessionOnItsTimer) {
  Make(/*leading=*/true);
  pusher_->Start();
  pusher_->AddAccount("binance_spot", "key-1");
  // The cluster's first term waits fresh_wait (3 s) for reported leases.
  ASSERT_TRUE(AwaitLeases(absl::Seconds(10)));
  absl::MutexLock lock(&mu_);
  const v1::Leases& l = leases_.front();
  EXPECT_EQ(l.term(), 4);
  EXPECT_EQ(l.coordinator_id(), "coord-a");
  EXPECT_EQ(l.duration_ms(), 10'000);
  std::map<std::string, int64_t> units;
  for (const v1::AccountLease& a : l.leases()) {
    EXPECT_EQ(a.account(), "key-1");
    units[a.pool()] = a.units();
  }
  EXPECT_EQ(units["ORDERS_10S"], 50);  // the only holder gets the 10 s pool whole
  EXPECT_GT(units["ORDERS_1D"], 0);
}

TEST_F(LeasePusherTest, AFollowerSharesNothingOut) {
  Make(/*leading=*/false);
  pusher_->Start();
  pusher_->AddAccount("binance_spot", "key-1");
  EXPECT_FALSE(AwaitLeases(absl::Seconds(10)));
}

}  // namespace
}  // namespace marketprism::coordinator
