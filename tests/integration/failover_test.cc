// Nodes and coordinators as gossip members, as real processes on loopback
// (tests/testing/gossip_cluster.h): what the coordinator does with a suspect
// or dead node, what `mpctl nodes` shows, and a kill -9 of the leader
// coordinator under a load that saturates the budget. The simulator's
// per-IP statistics are the judge of rejections.
#include <signal.h>

#include <atomic>
#include <iostream>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "tests/testing/cluster.h"
#include "tests/testing/gossip_cluster.h"
#include "tests/testing/subscriber.h"
#include "tests/testing/wait.h"

namespace marketprism::testing {
namespace {

using Json = nlohmann::json;
using ::testing::HasSubstr;

v1::ExecuteRequest Ticker() { return MakeRequest("okx", "/api/v5/market/ticker", {{"instId", "BTC-USDT"}}); }

std::map<std::string, int64_t> InFlight(GossipCluster& c) {
  std::map<std::string, int64_t> out;
  grpc::ClientContext ctx;
  v1::ListNodesResponse r;
  if (c.Stub(0)->ListNodes(&ctx, {}, &r).ok()) {
    for (const auto& n : r.nodes()) out[n.node_id()] = n.in_flight();
  }
  return out;
}

// The node (of the first `nodes`) whose in-flight count rose above `before`: -1 if none within 2 s.
int NodeTakingWork(GossipCluster& c, int nodes, const std::map<std::string, int64_t>& before) {
  int taker = -1;
  WaitUntil(
      [&] {
        std::map<std::string, int64_t> now = InFlight(c);
        for (int i = 0; i < nodes && taker < 0; ++i) {
          auto b = before.find(c.node_id(i));
          if (now[c.node_id(i)] > (b == before.end() ? 0 : b->second)) taker = i;
        }
        return taker >= 0;
      },
      absl::Seconds(2));
  return taker;
}

TEST(GossipClusterTest, MpctlNodesShowsEveryMemberWithItsGossipState) {
  GossipClusterOptions o;
  o.coordinators = 2;
  o.nodes = 2;
  o.subnet = 71;
  auto c = GossipCluster::Start(o);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE((*c)->WaitForLeader(1, 1, 2, absl::Seconds(10)).ok());
  // Asked of the follower: it forwards to the leader.
  auto p = Subprocess::Start({BinDir() + "/mpctl", "--coordinator", (*c)->coordinator_address(1), "--json", "nodes"});
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE((*p)->Wait(absl::Seconds(10)).ok());
  Json j = Json::parse((*p)->Output());
  EXPECT_EQ(j["leader"], "coord-a");
  EXPECT_EQ(j["term"], "1");  // int64 prints as a string in proto JSON
  std::map<std::string, Json> by_id;
  for (const Json& n : j["nodes"]) by_id[n["nodeId"]] = n;
  ASSERT_EQ(by_id.size(), 4u) << j.dump();
  for (int i = 0; i < 2; ++i) {
    const Json& n = by_id[(*c)->node_id(i)];
    EXPECT_EQ(n["role"], "node");
    EXPECT_EQ(n["state"], "active");
    EXPECT_EQ(n["gossipState"], "alive");
    EXPECT_EQ(n["egressIp"], absl::StrCat("127.0.71.", 11 + i));
    EXPECT_GT(std::stoll(n["gossipLastSeenMs"].get<std::string>()), 0);
    EXPECT_THAT(n["gossipAddress"].get<std::string>(), HasSubstr(absl::StrCat("127.0.71.", 11 + i, ":")));
  }
  EXPECT_EQ(by_id["coord-a"]["state"], "leader");
  EXPECT_EQ(by_id["coord-a"]["term"], "1");
  EXPECT_EQ(by_id["coord-b"]["state"], "follower");
  // The table names the same things.
  auto t = Subprocess::Start({BinDir() + "/mpctl", "--coordinator", (*c)->coordinator_address(0), "nodes"});
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE((*t)->Wait(absl::Seconds(10)).ok());
  EXPECT_THAT((*t)->Output(), HasSubstr("leader coord-a (term 1)"));
  EXPECT_THAT((*t)->Output(), HasSubstr("GOSSIP"));
  EXPECT_THAT((*t)->Output(), HasSubstr("INC"));
}

TEST(GossipClusterTest, AFrozenNodesReadIsRetriedElsewhereWhenGossipDeclaresItDead) {
  GossipClusterOptions o;
  o.coordinators = 1;
  o.nodes = 2;
  o.subnet = 72;
  o.coordinator_flags = {"--stall-budget", "1s"};
  o.node_flags = {"--stall-budget", "1s"};
  auto c = GossipCluster::Start(o);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE((*c)->WaitForLeader(0, 1, 2, absl::Seconds(10)).ok());
  // Every reply takes 1.5 s: a request is surely in flight when its node freezes.
  ASSERT_TRUE((*c)->sim().SetFaults(R"({"latency_ms": 1500})").ok());
  auto stub = (*c)->Stub(0);
  v1::ExecuteResponse resp;
  grpc::Status status;
  std::map<std::string, int64_t> before = InFlight(**c);
  std::thread caller([&] {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(15));
    status = stub->Execute(&ctx, Ticker(), &resp);
  });
  // Find the node holding it and freeze that node (its TCP stays open: only gossip can tell).
  int frozen = NodeTakingWork(**c, 2, before);
  if (frozen < 0) {
    caller.join();
    FAIL() << "no node took the request";
  }
  (*c)->node(frozen).Signal(SIGSTOP);
  // Suspect first (no new work), then dead (its work moves).
  EXPECT_TRUE((*c)->WaitForNode(0, (*c)->node_id(frozen), "gossip", "suspect", absl::Seconds(5)).ok());
  EXPECT_TRUE((*c)->WaitForNode(0, (*c)->node_id(frozen), "gossip", "dead", absl::Seconds(5)).ok());
  caller.join();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(resp.node_id(), (*c)->node_id(1 - frozen));
  EXPECT_EQ(resp.attempts(), 2);
  // Thawed, it refutes its death and registers again.
  (*c)->node(frozen).Signal(SIGCONT);
  ASSERT_TRUE((*c)->sim().SetFaults(R"({"latency_ms": 0})").ok());
  EXPECT_TRUE((*c)->WaitForLeader(0, 1, 2, absl::Seconds(10)).ok());
}

TEST(FailoverTest, KillingTheLeaderUnderASaturatingLoadCostsNoRejection) {
  GossipClusterOptions o;
  o.coordinators = 2;
  o.nodes = 3;
  o.subnet = 74;
  // 100 tickers per 2 s per IP; 3 IPs: 150/s, which 24 callers saturate.
  o.sim_flags = {"--limit", "okx.market/ticker=100"};
  o.coordinator_flags = {"--limit", "okx.market/ticker=100"};
  auto c = GossipCluster::Start(o);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE((*c)->WaitForLeader(1, 1, 3, absl::Seconds(10)).ok());
  absl::Time start = absl::Now();
  absl::Time kill_at = start + absl::Seconds(4);
  absl::Time end = start + absl::Seconds(10);
  LoadRecord load;
  // The callers use the follower: it forwards, and holds calls while there is no leader.
  std::thread driver([&] { load = RunClosedLoop((*c)->coordinator_address(1), 24, end, Ticker(), absl::Seconds(3)); });
  // Not synchronisation: the kill comes at a fixed point of the load's
  // timeline, so that the replies before it and 3 s after it can be counted.
  absl::SleepFor(kill_at - absl::Now());
  (*c)->coordinator(0).Signal(SIGKILL);
  auto after = (*c)->WaitForLeader(1, 2, 3, absl::Seconds(5));
  driver.join();
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->leader(), "coord-b");
  EXPECT_EQ(after->term(), 2);
  auto stats = (*c)->sim().Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(SimProcess::Rejections(*stats), 0) << stats->dump();
  EXPECT_EQ(load.error_count(), 0) << "first error: " << (load.errors.empty() ? "" : load.errors.begin()->first);
  // Work went on under the new leader.
  int64_t before_kill = 0, late = 0;
  for (absl::Time t : load.completions) {
    before_kill += t < kill_at ? 1 : 0;
    late += t > kill_at + absl::Seconds(3) ? 1 : 0;
  }
  EXPECT_GT(before_kill, 300);
  EXPECT_GT(late, 300);
  EXPECT_EQ(load.http[200], static_cast<int64_t>(load.completions.size()));
}

// Orders spend the account's ORDERS pools (50 per 10 s per API key, across
// every IP). Callers ask for far more through three IPs while the leader is
// killed: each node spends only its lease, the new leader adopts the
// allocation the nodes report, and the exchange never says "too many orders".
TEST(FailoverTest, AccountOrdersStayWithinTheAccountsLimitAcrossIpsAndAFailover) {
  GossipClusterOptions o;
  o.coordinators = 2;
  o.nodes = 3;
  o.subnet = 75;
  o.coordinator_flags = {"--account-lease", "5s"};
  o.exchanges = {"binance_spot"};
  auto c = GossipCluster::Start(o);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE((*c)->WaitForLeader(1, 1, 3, absl::Seconds(10)).ok());
  v1::ExecuteRequest order = MakeRequest("binance_spot", "/api/v3/order",
                                         {{"symbol", "BTCUSDT"}, {"side", "BUY"}, {"type", "LIMIT"},
                                          {"quantity", "1"}, {"price", "10000"}, {"signature", "0f"}});
  order.set_method("POST");
  v1::Header* key = order.add_headers();
  key->set_name("X-MBX-APIKEY");
  key->set_value("test-account-key-1");

  {
    // Without the key header the cluster refuses it, naming the header.
    v1::ExecuteRequest unsigned_order = order;
    unsigned_order.clear_headers();
    grpc::ClientContext ctx;
    v1::ExecuteResponse r;
    grpc::Status st = (*c)->Stub(0)->Execute(&ctx, unsigned_order, &r);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(st.error_message(), HasSubstr("X-MBX-APIKEY"));
  }

  absl::Time start = absl::Now();
  absl::Time kill_at = start + absl::Seconds(8);
  absl::Time end = start + absl::Seconds(26);
  LoadRecord load;
  std::thread driver([&] { load = RunClosedLoop((*c)->coordinator_address(1), 12, end, order, absl::Seconds(2)); });
  // (The first leader is the cluster's first: it shares the account out 3 s
  // after taking the lead, in case a lone coordinator restarted.) Not
  // synchronisation: the kill comes 8 s into the load, so the first windows'
  // shares are spent before it and the orders after it can be timed from it.
  absl::SleepFor(kill_at - absl::Now());
  (*c)->coordinator(0).Signal(SIGKILL);
  auto after = (*c)->WaitForLeader(1, 2, 3, absl::Seconds(5));
  driver.join();
  ASSERT_TRUE(after.ok()) << after.status();
  auto stats = (*c)->sim().Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(SimProcess::Rejections(*stats), 0) << stats->dump();
  std::string errors;
  for (const auto& [what, n] : load.errors) absl::StrAppend(&errors, n, "x ", what, "; ");
  ASSERT_TRUE((*stats)["exchanges"]["binance_spot"].contains("accounts"))
      << "no order reached the exchange; " << load.exhausted << " exhausted; errors: " << errors;
  const Json& account = (*stats)["exchanges"]["binance_spot"]["accounts"]["test-account-key-1"];
  EXPECT_EQ(account["rejections"], 0) << account.dump();
  EXPECT_LE(account["pools"]["ORDERS_10S"]["peak"].get<int64_t>(), 50);
  // Orders went through before the kill and under the new leader (which
  // adopted the nodes' shares rather than waiting out a window).
  int64_t before_kill = 0, late = 0;
  absl::Time first_after = absl::InfiniteFuture();
  for (absl::Time t : load.completions) {
    before_kill += t < kill_at ? 1 : 0;
    late += t > kill_at + absl::Seconds(4) ? 1 : 0;
    if (t > kill_at) first_after = std::min(first_after, t);
  }
  std::cout << "orders: first after the kill at +" << absl::FormatDuration(first_after - kill_at) << "; "
            << before_kill << " before the kill, " << late << " from 4 s after it, "
            << load.completions.size() << " in all; " << load.exhausted << " ran out of budget; peak "
            << account["pools"]["ORDERS_10S"]["peak"] << "/50 per 10 s\n";
  EXPECT_GE(before_kill, 40) << "the first window's shares were spent";
  // A new leader that did not adopt the nodes' shares would wait a lease and
  // a window (16 s) before sharing the account out; adopted, the next
  // window (at most 10 s away) is open to it.
  EXPECT_LT(first_after, kill_at + absl::Seconds(12)) << "the new leader adopted the allocation";
  EXPECT_GE(late, 40) << "the new leader shares the account out";
  EXPECT_LE(static_cast<int64_t>(load.completions.size()), 50 * 4) << "at most 50 per 10-second window";
  EXPECT_EQ(load.http[200], static_cast<int64_t>(load.completions.size()));
  // The new leader's status shows each node's share: together the pool's capacity.
  grpc::ClientContext ctx;
  v1::GetStatusResponse status;
  ASSERT_TRUE((*c)->Stub(1)->GetStatus(&ctx, {}, &status).ok());
  int64_t shares = 0;
  int holders = 0;
  for (const auto& n : status.nodes()) {
    for (const auto& p : n.pools()) {
      if (p.scope_key() != "account:test-acc..." || p.pool() != "ORDERS_10S") continue;
      shares += p.capacity();
      holders += p.capacity() > 0 ? 1 : 0;
    }
  }
  EXPECT_EQ(holders, 3);
  EXPECT_EQ(shares, 50);
}

// A job made through the API lives in every coordinator. The leader killed
// with -9, its successor has the job, takes over the placement from what the
// nodes run (no stream opened again at the exchange, no gap in any unit),
// and a subscriber there gets the records.
TEST(FailoverTest, AnApiJobOutlivesAKilledLeaderWhoseSuccessorKeepsItsStreams) {
  GossipClusterOptions o;
  o.coordinators = 2;
  o.nodes = 2;
  o.subnet = 76;
  o.exchanges = {"binance_spot"};
  auto c = GossipCluster::Start(o);
  ASSERT_TRUE(c.ok()) << c.status();
  GossipCluster& g = **c;
  ASSERT_TRUE(g.WaitForLeader(1, 1, 2, absl::Seconds(10)).ok());
  // Made at the follower: forwarded to the leader, which answers once the
  // follower holds it too.
  auto collector = [&](int i) {
    return v1::Collector::NewStub(grpc::CreateChannel(g.coordinator_address(i), grpc::InsecureChannelCredentials()));
  };
  v1::CreateJobRequest create;
  v1::Job* job = create.mutable_job();
  job->set_name("api-trades");
  job->set_exchange("binance_spot");
  job->set_channel("trades");
  for (const char* s : {"BTCUSDT", "ETHUSDT", "SOLUSDT"}) job->add_symbols(s);
  {
    grpc::ClientContext ctx;
    v1::Job made;
    grpc::Status s = collector(1)->CreateJob(&ctx, create, &made);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  v1::SubscribeRequest trades;
  trades.set_exchange("binance_spot");
  trades.set_channel("trades");
  {
    Subscriber before(g.coordinator_address(0), trades);
    ASSERT_TRUE(WaitUntil([&] { return before.size() > 30; }, absl::Seconds(15))) << "no trades from the first leader";
  }
  auto opened = [&] {
    auto stats = g.sim().Stats();
    return stats.ok() ? (*stats)["exchanges"]["binance_spot"]["totals"]["ws_accepted"].get<int64_t>() : -1;
  };
  int64_t streams = opened();
  ASSERT_GT(streams, 0);

  g.coordinator(0).Signal(SIGKILL);
  auto after = g.WaitForLeader(1, 2, 2, absl::Seconds(10));
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->leader(), "coord-b");
  Subscriber at_new(g.coordinator_address(1), trades);
  ASSERT_TRUE(WaitUntil([&] { return at_new.size() > 30; }, absl::Seconds(15)))
      << "no trades from the new leader; " << (at_new.status() ? at_new.status()->error_message() : "");
  // Its plan (made once the fleet has gathered) places every unit where
  // it runs.
  v1::Job kept;
  auto placed = [&] {
    grpc::ClientContext ctx;
    v1::ListJobsResponse jobs;
    if (!collector(1)->ListJobs(&ctx, {}, &jobs).ok()) return false;
    for (const v1::Job& j : jobs.jobs()) {
      if (j.name() == "api-trades") kept = j;
    }
    if (kept.units_size() != 3) return false;
    for (const v1::Unit& u : kept.units()) {
      if (u.copies_size() == 0) return false;
    }
    return true;
  };
  ASSERT_TRUE(WaitUntil(placed, absl::Seconds(10))) << "the API's job, at the new leader: " << kept.DebugString();
  for (const v1::Unit& u : kept.units()) {
    ASSERT_EQ(u.copies_size(), 1) << u.key();
    EXPECT_EQ(u.copies(0).state(), "live") << u.key();
    EXPECT_EQ(u.copies(0).gaps_total(), 0) << u.key() << ": the stream was broken";
  }
  // Records go on a while longer under the new plan, on the same streams.
  size_t now = at_new.size();
  EXPECT_TRUE(WaitUntil([&] { return at_new.size() > now + 30; }, absl::Seconds(10)));
  EXPECT_EQ(opened(), streams) << "the new leader restarted healthy streams";
}

}  // namespace
}  // namespace marketprism::testing
