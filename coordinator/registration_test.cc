#include "coordinator/registration.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "tests/testing/fake_clock.h"

namespace marketprism::coordinator {
namespace {

class RegistrarTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto rules = common::RulesBook::LoadDefault();
    ASSERT_TRUE(rules.ok());
    scheduler_ = std::make_unique<Scheduler>(std::move(*rules), clock_);
    nodes_ = std::make_unique<GrpcNodeClient>(clock_, [this](const std::string& a) {
      dialed_.push_back(a);
      return grpc::CreateChannel("unix:/nonexistent/" + a, grpc::InsecureChannelCredentials());
    });
    sessions_ = std::make_unique<NodeSessions>("coord-a", NodeSessions::Hooks{});
    leases_ = std::make_unique<LeasePusher>(LeasePusher::Options{}, clock_, *scheduler_, *sessions_,
                                            [] { return Leadership{}; });
    Registrar::Options o;
    o.exchange_urls["binance_spot"] = "http://sim:1";
    o.ws_urls["binance_spot"] = "ws://sim:1";
    registrar_ = std::make_unique<Registrar>(o, *scheduler_, *nodes_, *leases_, [] { return int64_t{3}; });
  }
  v1::Register Hello() {
    v1::Register r;
    r.set_node_id("n1");
    r.set_egress_ip("10.0.0.1");
    r.set_grpc_address("10.0.0.1:7001");
    r.add_exchanges("binance_spot");
    v1::ClockEstimate* c = r.add_clocks();
    c->set_exchange("binance_spot");
    c->set_offset_us(1500);
    return r;
  }
  const NodeSnapshot* N1(const SchedulerSnapshot& s) {
    for (const NodeSnapshot& n : s.nodes) {
      if (n.node_id == "n1") return &n;
    }
    return nullptr;
  }

  testing::FakeClock clock_;
  std::vector<std::string> dialed_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<GrpcNodeClient> nodes_;
  std::unique_ptr<NodeSessions> sessions_;
  std::unique_ptr<LeasePusher> leases_;
  std::unique_ptr<Registrar> registrar_;
};

TEST_F(RegistrarTest, ARegistrationSeedsTheSchedulerAndTheWelcomeSaysWhatEveryLedgerUses) {
  v1::Register r = Hello();
  v1::PoolUsage* u = r.add_usage();
  u->set_exchange("binance_spot");
  u->set_pool("REQUEST_WEIGHT");
  u->set_used(1200);
  v1::Ban* b = r.add_bans();
  b->set_exchange("binance_spot");
  b->set_kind("rate_limited");
  b->set_until_ms(absl::ToUnixMillis(clock_.Now() + absl::Seconds(30)));
  v1::Registered welcome = registrar_->Register(r);

  EXPECT_TRUE(welcome.accepted());
  EXPECT_EQ(welcome.term(), 3);
  ASSERT_EQ(welcome.endpoints_size(), 1);
  EXPECT_EQ(welcome.endpoints(0).rest_url(), "http://sim:1");
  EXPECT_EQ(welcome.endpoints(0).ws_url(), "ws://sim:1");
  bool weight = false;
  for (const v1::PoolLimit& l : welcome.limits().pools()) {
    weight |= l.exchange() == "binance_spot" && l.pool() == "REQUEST_WEIGHT" && l.capacity() == 6000;
  }
  EXPECT_TRUE(weight);
  EXPECT_FALSE(welcome.draining());
  EXPECT_EQ(dialed_, std::vector<std::string>{"10.0.0.1:7001"});

  SchedulerSnapshot s = scheduler_->Snapshot();
  const NodeSnapshot* n = N1(s);
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->egress_ip, "10.0.0.1");
  EXPECT_EQ(n->ready, std::vector<std::string>{"binance_spot"});  // its clock came with it
  ASSERT_EQ(n->lanes.size(), 1u);
  EXPECT_EQ(n->lanes[0].park_kind, "rate_limited");
  EXPECT_GT(n->lanes[0].parked_until, clock_.Now());
  int64_t used = 0;
  for (const auto& [exchange, pools] : n->pools) {
    for (const auto& p : pools) used += p.name == "REQUEST_WEIGHT" ? p.used : 0;
  }
  EXPECT_EQ(used, 1200);  // what the IP had spent before this coordinator knew it
}

TEST_F(RegistrarTest, AReportsEventsAreChargedAndADrainedNodeIsToldSo) {
  registrar_->Register(Hello());
  v1::UsageReport report;
  v1::UsageEvent* e = report.add_events();
  e->set_exchange("binance_spot");
  v1::PoolCharge* c = e->add_charges();
  c->set_pool("REQUEST_WEIGHT");
  c->set_units(20);
  e->set_sent_unix_us(absl::ToUnixMicros(clock_.Now()));
  e->set_replied_unix_us(absl::ToUnixMicros(clock_.Now()));
  e->set_observed_used(-1);
  registrar_->Report("n1", report);
  int64_t used = 0;
  SchedulerSnapshot s = scheduler_->Snapshot();
  for (const auto& [exchange, pools] : N1(s)->pools) {
    for (const auto& p : pools) used += p.name == "REQUEST_WEIGHT" ? p.used : 0;
  }
  EXPECT_EQ(used, 20);

  ASSERT_TRUE(scheduler_->SetDraining("n1", true).ok());
  EXPECT_TRUE(registrar_->Register(Hello()).draining());
}

}  // namespace
}  // namespace marketprism::coordinator
