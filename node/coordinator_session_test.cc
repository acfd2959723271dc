#include "node/coordinator_session.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <map>

#include "marketprism/v1/node.grpc.pb.h"
#include "tests/testing/fake_clock.h"

namespace marketprism::node {
namespace {

namespace v1 = ::marketprism::v1;
using ::testing::ElementsAre;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

// Generous: the waits end as soon as their condition holds.
constexpr absl::Duration kWait = absl::Seconds(20);

// A coordinator's NodeControl: answers each registration with `answer`,
// then records reports until the node goes; Push() sends it more.
class FakeCoordinator final : public v1::NodeControl::Service {
 public:
  explicit FakeCoordinator(v1::Registered answer) : answer_(std::move(answer)) {}

  grpc::Status Session(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<v1::CoordinatorMessage, v1::NodeMessage>* stream) override {
    v1::NodeMessage hello;
    if (!stream->Read(&hello) || !hello.has_register_()) return grpc::Status::OK;
    {
      absl::MutexLock lock(&mu_);
      registers_.push_back(hello.register_());
      v1::CoordinatorMessage reply;
      *reply.mutable_registered() = answer_;
      if (!stream->Write(reply) || !answer_.accepted()) return grpc::Status::OK;
      stream_ = stream;
    }
    v1::NodeMessage msg;
    while (stream->Read(&msg)) {
      absl::MutexLock lock(&mu_);
      if (msg.has_report()) reports_.push_back(msg.report());
    }
    absl::MutexLock lock(&mu_);
    stream_ = nullptr;
    ++ended_;
    return grpc::Status::OK;
  }

  // Sends `msg` on the current stream; false without one.
  bool Push(const v1::CoordinatorMessage& msg) {
    absl::MutexLock lock(&mu_);
    return stream_ != nullptr && stream_->Write(msg);
  }

  // Waits until `pred` (called under the lock) holds; false after kWait.
  bool Await(const std::function<bool(FakeCoordinator&)>& pred) {
    auto holds = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return pred(*this); };
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&holds), kWait);
  }

  std::vector<v1::Register> registers() {
    absl::MutexLock lock(&mu_);
    return registers_;
  }
  std::vector<v1::UsageReport> reports() {
    absl::MutexLock lock(&mu_);
    return reports_;
  }

  // For Await's predicates (which run with the lock held).
  size_t registers_locked() const ABSL_NO_THREAD_SAFETY_ANALYSIS { return registers_.size(); }
  size_t reports_locked() const ABSL_NO_THREAD_SAFETY_ANALYSIS { return reports_.size(); }
  int ended_locked() const ABSL_NO_THREAD_SAFETY_ANALYSIS { return ended_; }

 private:
  const v1::Registered answer_;
  absl::Mutex mu_;
  std::vector<v1::Register> registers_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::UsageReport> reports_ ABSL_GUARDED_BY(mu_);
  grpc::ServerReaderWriter<v1::CoordinatorMessage, v1::NodeMessage>* stream_ ABSL_GUARDED_BY(mu_) =
      nullptr;
  int ended_ ABSL_GUARDED_BY(mu_) = 0;
};

v1::Registered Accept(int64_t term, std::string coordinator) {
  v1::Registered r;
  r.set_accepted(true);
  r.set_term(term);
  r.set_coordinator_id(std::move(coordinator));
  return r;
}

// A session over two lanes (binance_spot, okx) with no endpoint of their
// own, talking to fake coordinators on in-process servers by target name.
class CoordinatorSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto rules = common::RulesBook::LoadDefault();
    ASSERT_TRUE(rules.ok()) << rules.status();
    rules_ = std::make_unique<common::RulesBook>(std::move(*rules));
    for (const char* e : {"binance_spot", "okx"}) {
      lanes_[e] = std::make_unique<ExchangeLane>(*rules_->Find(e), LaneOptions{}, clock_);
    }
  }

  void TearDown() override {
    if (session_) session_->Stop();
    for (auto& [target, server] : servers_) server->Shutdown();
  }

  // A fake answering registrations with `answer`, served as `target`
  // ("host:port"); it lives as long as the test.
  FakeCoordinator& Serve(const std::string& target, v1::Registered answer) {
    fakes_.push_back(std::make_unique<FakeCoordinator>(std::move(answer)));
    grpc::ServerBuilder builder;
    builder.RegisterService(fakes_.back().get());
    servers_[target] = builder.BuildAndStart();
    EXPECT_NE(servers_[target], nullptr);
    return *fakes_.back();
  }

  void StartSession(std::vector<common::HostPort> coordinators) {
    SessionOptions options;
    options.node_id = "node-a";
    options.egress_ip = "127.0.0.11";
    options.coordinators = std::move(coordinators);
    options.report_interval = absl::Hours(1);  // reports come when nudged
    options.reconnect_max = absl::Milliseconds(20);
    session_ = std::make_unique<CoordinatorSession>(
        std::move(options),
        SessionParts{.lanes = lanes_,
                     .fence = fence_,
                     .admit_term =
                         [this](int64_t term, const std::string& c) {
                           bool ok = fence_.Admit(term, c);
                           absl::MutexLock lock(&mu_);
                           admitted_.emplace_back(term, c);
                           return ok;
                         },
                     .leader_claim = [this] { return Claim(); },
                     .set_endpoint =
                         [this](const std::string& e, const std::string& url) {
                           absl::MutexLock lock(&mu_);
                           endpoints_[e] = url;
                         },
                     .on_reported = nullptr,
                     .channel =
                         [this](const std::string& target) {
                           {
                             absl::MutexLock lock(&mu_);
                             dialed_.push_back(target);
                           }
                           auto it = servers_.find(target);
                           // An unknown target: a channel that never connects.
                           if (it == servers_.end()) {
                             return grpc::CreateChannel("unix:/nonexistent",
                                                        grpc::InsecureChannelCredentials());
                           }
                           return it->second->InProcessChannel(grpc::ChannelArguments());
                         },
                     .clock = clock_});
    session_->Start("127.0.0.11:9100");
  }

  // Waits until `pred` (called with mu_ held) holds; false after kWait.
  bool Await(const std::function<bool()>& pred) {
    auto holds = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return pred(); };
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&holds), kWait);
  }
  bool AwaitAdmissions(size_t n) {
    return Await([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return admitted_.size() >= n; });
  }

  std::optional<LeaderClaim> Claim() {
    absl::MutexLock lock(&mu_);
    return claim_;
  }
  void SetClaim(LeaderClaim claim) {
    absl::MutexLock lock(&mu_);
    claim_ = std::move(claim);
  }

  int64_t Capacity(const std::string& exchange, const std::string& pool) {
    for (const auto& v : lanes_.at(exchange)->Usage()) {
      if (v.name == pool) return v.capacity;
    }
    return -1;
  }

  testing::FakeClock clock_;
  std::unique_ptr<common::RulesBook> rules_;
  Lanes lanes_;
  TermFence fence_;
  std::vector<std::unique_ptr<FakeCoordinator>> fakes_;
  std::map<std::string, std::unique_ptr<grpc::Server>> servers_;  // fixed once the session runs
  absl::Mutex mu_;
  std::optional<LeaderClaim> claim_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> endpoints_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> dialed_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<int64_t, std::string>> admitted_
      ABSL_GUARDED_BY(mu_);  // every admit_term call
  std::unique_ptr<CoordinatorSession> session_;
};

TEST_F(CoordinatorSessionTest, RegistersAppliesWhatItIsSentAndReports) {
  v1::Registered answer = Accept(5, "c5");
  v1::PoolLimit* limit = answer.mutable_limits()->add_pools();
  limit->set_exchange("binance_spot");
  limit->set_pool("REQUEST_WEIGHT");
  limit->set_capacity(100);
  v1::ExchangeEndpoint* endpoint = answer.add_endpoints();
  endpoint->set_exchange("binance_spot");
  endpoint->set_rest_url("http://sim:8400");
  FakeCoordinator& coordinator = Serve("coord:7000", answer);
  ASSERT_TRUE(fence_.Admit(4, "c4"));  // seen before: the registration says so
  StartSession({{"coord", 7000}});

  // Registered is applied before the stream goes on: its limits, then URLs
  // for every lane (the rules' production base where none was offered).
  ASSERT_TRUE(Await([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return endpoints_.size() == 2; }));
  v1::Register reg = coordinator.registers().at(0);
  EXPECT_EQ(reg.node_id(), "node-a");
  EXPECT_EQ(reg.egress_ip(), "127.0.0.11");
  EXPECT_EQ(reg.grpc_address(), "127.0.0.11:9100");
  EXPECT_THAT(reg.exchanges(), ElementsAre("binance_spot", "okx"));
  EXPECT_EQ(reg.highest_term(), 4);
  EXPECT_TRUE(reg.recent_complete());
  EXPECT_GT(reg.usage_size(), 0);
  EXPECT_EQ(reg.usage(0).scope_key(), "127.0.0.11");
  EXPECT_EQ(fence_.highest(), std::make_pair(int64_t{5}, std::string("c5")))
      << "admitted on registering";
  EXPECT_EQ(Capacity("binance_spot", "REQUEST_WEIGHT"), 100);
  {
    absl::MutexLock lock(&mu_);
    EXPECT_THAT(endpoints_, UnorderedElementsAre(Pair("binance_spot", "http://sim:8400"),
                                                 Pair("okx", rules_->Find("okx")->rest_base())));
  }

  // Later messages are applied in order by the stream's reader: Limits,
  // then Leases (each admitted through the fence). The second Leases' admission
  // shows the Limits and the first Leases have been applied.
  v1::CoordinatorMessage limits;
  v1::PoolLimit* l = limits.mutable_limits()->add_pools();
  l->set_exchange("binance_spot");
  l->set_pool("REQUEST_WEIGHT");
  l->set_capacity(42);
  v1::CoordinatorMessage leases;
  leases.mutable_leases()->set_term(5);
  leases.mutable_leases()->set_coordinator_id("c5");
  leases.mutable_leases()->set_duration_ms(10'000);
  v1::AccountLease* lease = leases.mutable_leases()->add_leases();
  lease->set_exchange("binance_spot");
  lease->set_account("KEY-0123456789");
  lease->set_pool("ORDERS_10S");
  lease->set_units(5);
  size_t admitted = 0;
  {
    absl::MutexLock lock(&mu_);
    admitted = admitted_.size();
  }
  ASSERT_TRUE(coordinator.Push(limits));
  ASSERT_TRUE(coordinator.Push(leases));
  ASSERT_TRUE(coordinator.Push(leases));
  ASSERT_TRUE(AwaitAdmissions(admitted + 2));
  EXPECT_EQ(Capacity("binance_spot", "REQUEST_WEIGHT"), 42);
  std::vector<common::BudgetBook::PoolView> account =
      lanes_.at("binance_spot")->AccountUsage("KEY-0123456789");
  ASSERT_FALSE(account.empty());
  bool leased = false;
  for (const auto& v : account) leased |= v.name == "ORDERS_10S" && v.capacity == 5;
  EXPECT_TRUE(leased) << "the lease reached the lane";

  // A nudge makes a report now, not at the (hour-long) interval.
  session_->Nudge();
  ASSERT_TRUE(coordinator.Await([](FakeCoordinator& f) { return f.reports_locked() >= 1; }));
  v1::UsageReport report = coordinator.reports().at(0);
  EXPECT_EQ(report.node_time_unix_us(), common::ToUnixMicros(clock_.Now()));
  ASSERT_GT(report.usage_size(), 0);
  EXPECT_EQ(report.usage(0).exchange(), "binance_spot");
}

TEST_F(CoordinatorSessionTest, FollowsARefusalNamingTheLeaderToTheLeader) {
  v1::Registered refusal;
  refusal.set_accepted(false);
  refusal.set_reason("not the leader");
  refusal.set_leader_address("leader:7001");
  FakeCoordinator& follower = Serve("follower:7000", refusal);
  FakeCoordinator& leader = Serve("leader:7001", Accept(3, "c-leader"));
  StartSession({{"follower", 7000}});

  ASSERT_TRUE(AwaitAdmissions(1));  // registered with the leader, under its term
  EXPECT_EQ(follower.registers().size(), 1u);
  EXPECT_EQ(leader.registers().size(), 1u);
  EXPECT_EQ(fence_.highest().first, 3);
  absl::MutexLock lock(&mu_);
  ASSERT_GE(dialed_.size(), 2u);
  EXPECT_EQ(dialed_[0], "follower:7000");
  EXPECT_EQ(dialed_[1], "leader:7001");
}

TEST_F(CoordinatorSessionTest, LeavesWhenGossipShowsANewerTerm) {
  FakeCoordinator& coordinator = Serve("coord:7000", Accept(1, "c1"));
  StartSession({{"coord", 7000}});
  ASSERT_TRUE(AwaitAdmissions(1));  // registered under term 1

  SetClaim({2, "c2", ""});  // a newer leader, address not yet known
  session_->CheckLeader();
  ASSERT_TRUE(coordinator.Await([](FakeCoordinator& f) { return f.ended_locked() >= 1; }));
  EXPECT_EQ(fence_.highest(), std::make_pair(int64_t{2}, std::string("c2")));
  // After its back-off (on the fake clock), back at the configured
  // coordinator, the node says what it has seen and does not stay with term 1.
  bool again = false;
  for (int i = 0; i < 200 && !again; ++i) {
    clock_.AdvanceBy(absl::Milliseconds(100));
    absl::SleepFor(absl::Milliseconds(5));  // polling: the session thread runs in real time
    again = coordinator.registers().size() >= 2;
  }
  ASSERT_TRUE(again);
  EXPECT_EQ(coordinator.registers().at(1).highest_term(), 2);
}

TEST_F(CoordinatorSessionTest, LeavesWhenADispatchAdmitsANewerTerm) {
  FakeCoordinator& coordinator = Serve("coord:7000", Accept(1, "c1"));
  StartSession({{"coord", 7000}});
  ASSERT_TRUE(AwaitAdmissions(1));  // registered under term 1

  ASSERT_TRUE(fence_.Admit(2, "c2"));  // as Node.Dispatch does for the new leader's work
  session_->Nudge();
  ASSERT_TRUE(coordinator.Await([](FakeCoordinator& f) { return f.ended_locked() >= 1; }));
  EXPECT_TRUE(coordinator.reports().empty()) << "it leaves instead of reporting to the old leader";
}

}  // namespace
}  // namespace marketprism::node
