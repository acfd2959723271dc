// Whole behaviours of coordinators in one process: routing across nodes, a
// node's death, a leader change and a lease hand-over, over in-process gRPC
// channels with a fake clock and fake gossip (tests/testing/mini_cluster.h).
#include "tests/testing/mini_cluster.h"

#include <gtest/gtest.h>

#include <map>
#include <thread>

#include "absl/synchronization/notification.h"

namespace marketprism::testing {
namespace {

// One Execute, on its own thread (the fake clock moves on the test's).
struct AsyncCall {
  AsyncCall(v1::Coordinator::Stub& stub, v1::ExecuteRequest req) {
    thread = std::thread([this, &stub, req] {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
      status = stub.Execute(&ctx, req, &resp);
      done.Notify();
    });
  }
  ~AsyncCall() { thread.join(); }
  std::thread thread;
  grpc::Status status;
  v1::ExecuteResponse resp;
  absl::Notification done;
};

v1::ExecuteRequest Ping() {
  v1::ExecuteRequest req;
  req.set_exchange("binance_spot");
  req.set_path("/api/v3/ping");
  return req;
}

v1::ExecuteRequest Order(const std::string& key) {
  v1::ExecuteRequest req;
  req.set_exchange("binance_spot");
  req.set_method("POST");
  req.set_path("/api/v3/order");
  v1::Header* h = req.add_headers();
  h->set_name("X-MBX-APIKEY");
  h->set_value(key);
  return req;
}

// Sends `n` pings one after another, advancing the clock while each waits;
// returns how many each node answered.
std::map<std::string, int> PingMany(MiniCluster& c, const std::string& coordinator, int n) {
  auto stub = c.Client(coordinator);
  std::map<std::string, int> by_node;
  for (int i = 0; i < n; ++i) {
    AsyncCall call(*stub, Ping());
    EXPECT_TRUE(c.AdvanceUntil([&] { return call.done.HasBeenNotified(); }, absl::Seconds(10)));
    call.done.WaitForNotification();
    EXPECT_TRUE(call.status.ok()) << call.status.error_message();
    if (call.status.ok()) ++by_node[call.resp.node_id()];
  }
  return by_node;
}

TEST(MiniClusterTest, RequestsAreRoutedAcrossEveryRegisteredNode) {
  MiniCluster c;
  c.AddCoordinator("coord-a", /*gossip=*/false);
  for (int i = 1; i <= 3; ++i) {
    FakeNode& n = c.AddNode("node-" + std::to_string(i), "127.0.0.1" + std::to_string(i), /*gossip=*/false);
    absl::StatusOr<v1::Registered> r = n.Register("coord-a:1");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->accepted()) << r->reason();
    EXPECT_EQ(r->term(), 1);
  }
  std::map<std::string, int> by_node = PingMany(c, "coord-a", 30);
  // The scheduler spreads load by headroom: every node takes a share.
  EXPECT_EQ(by_node.size(), 3u);
  for (const auto& [node, count] : by_node) EXPECT_GE(count, 3) << node;
}

TEST(MiniClusterTest, ADeadNodeGetsNoMoreWork) {
  MiniCluster c;
  c.AddCoordinator("coord-a", /*gossip=*/true);
  ASSERT_TRUE(c.AdvanceUntil([&] { return c.coordinator("coord-a").leadership().leading; }, absl::Seconds(5)));
  FakeNode& n1 = c.AddNode("node-1", "127.0.0.11", /*gossip=*/true);
  FakeNode& n2 = c.AddNode("node-2", "127.0.0.12", /*gossip=*/true);
  ASSERT_TRUE(n1.Register("coord-a:1").ok());
  ASSERT_TRUE(n2.Register("coord-a:1").ok());
  c.clock().AdvanceBy(absl::Seconds(4));  // past the takeover grace
  EXPECT_EQ(PingMany(c, "coord-a", 10).size(), 2u);

  c.gossip().Kill("node-1");
  // The coordinator ends the dead node's session and places nothing more there.
  c.clock().AdvanceBy(absl::Milliseconds(100));  // gossip's news is handled on the clock's timer
  EXPECT_TRUE(n1.AwaitSessionEnd());
  size_t before = n1.dispatched().size();
  std::map<std::string, int> after = PingMany(c, "coord-a", 10);
  EXPECT_EQ(after.size(), 1u);
  EXPECT_EQ(after["node-2"], 10);
  EXPECT_EQ(n1.dispatched().size(), before);
}

TEST(MiniClusterTest, ALeaderChangeMovesNodesAndWorkToTheNewTerm) {
  MiniCluster c;
  c.AddCoordinator("coord-a", /*gossip=*/true);
  c.AddCoordinator("coord-b", /*gossip=*/true);
  // The lower name claims term 1 after the hold-down.
  ASSERT_TRUE(c.AdvanceUntil([&] { return c.coordinator("coord-a").leadership().leading; }, absl::Seconds(5)));
  EXPECT_FALSE(c.coordinator("coord-b").leadership().leading);
  FakeNode& n1 = c.AddNode("node-1", "127.0.0.11", /*gossip=*/true);
  // A follower refuses, naming the leader; the node goes there.
  absl::StatusOr<v1::Registered> refused = n1.Register("coord-b:1");
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_FALSE(refused->accepted());
  EXPECT_EQ(refused->leader_address(), "coord-a:1");
  ASSERT_TRUE(n1.RegisterWithLeader("coord-b:1").ok());
  c.clock().AdvanceBy(absl::Seconds(4));
  // A client of the follower is forwarded to the leader.
  EXPECT_EQ(PingMany(c, "coord-b", 3)["node-1"], 3);
  EXPECT_EQ(n1.dispatched().back().term, 1);
  EXPECT_EQ(n1.dispatched().back().coordinator_id, "coord-a");

  c.KillCoordinator("coord-a");
  EXPECT_TRUE(n1.AwaitSessionEnd());
  ASSERT_TRUE(c.AdvanceUntil([&] { return c.coordinator("coord-b").leadership().leading; }, absl::Seconds(5)));
  EXPECT_EQ(c.coordinator("coord-b").leadership().term, 2);
  absl::StatusOr<v1::Registered> r = n1.RegisterWithLeader("coord-b:1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->accepted());
  EXPECT_EQ(r->term(), 2);
  EXPECT_EQ(PingMany(c, "coord-b", 3)["node-1"], 3);
  EXPECT_EQ(n1.dispatched().back().term, 2);
  EXPECT_EQ(n1.dispatched().back().coordinator_id, "coord-b");
}

TEST(MiniClusterTest, AccountLeasesAreHandedOverUnderTheNewTerm) {
  MiniCluster c;
  c.AddCoordinator("coord-a", /*gossip=*/true);
  c.AddCoordinator("coord-b", /*gossip=*/true);
  ASSERT_TRUE(c.AdvanceUntil([&] { return c.coordinator("coord-a").leadership().leading; }, absl::Seconds(5)));
  FakeNode& n1 = c.AddNode("node-1", "127.0.0.11", /*gossip=*/true);
  FakeNode& n2 = c.AddNode("node-2", "127.0.0.12", /*gossip=*/true);
  ASSERT_TRUE(n1.Register("coord-a:1").ok());
  ASSERT_TRUE(n2.Register("coord-a:1").ok());
  auto stub = c.Client("coord-a");
  {
    // An order names the account: its pools are leased out to both nodes,
    // and the order goes to a node whose lease has room.
    AsyncCall order(*stub, Order("key-1"));
    ASSERT_TRUE(c.AdvanceUntil([&] { return order.done.HasBeenNotified(); }, absl::Seconds(15)));
    EXPECT_TRUE(order.status.ok()) << order.status.error_message();
  }
  auto shares = [](FakeNode& n, int64_t term) {
    std::map<std::string, int64_t> out;
    for (const v1::Leases& l : n.leases()) {
      if (l.term() != term) continue;
      out.clear();  // the newest grant replaces the earlier ones
      for (const v1::AccountLease& a : l.leases()) out[a.pool()] = a.units();
    }
    return out;
  };
  std::map<std::string, int64_t> a1 = shares(n1, 1), a2 = shares(n2, 1);
  ASSERT_TRUE(a1.count("ORDERS_10S") && a2.count("ORDERS_10S"));
  EXPECT_LE(a1["ORDERS_10S"] + a2["ORDERS_10S"], 50);  // never more than the account's capacity

  c.KillCoordinator("coord-a");
  ASSERT_TRUE(c.AdvanceUntil([&] { return c.coordinator("coord-b").leadership().leading; }, absl::Seconds(5)));
  ASSERT_TRUE(n1.RegisterWithLeader("coord-b:1").ok());
  ASSERT_TRUE(n2.RegisterWithLeader("coord-b:1").ok());
  // The new leader renews the account's shares under term 2, within capacity.
  ASSERT_TRUE(c.AdvanceUntil(
      [&] {
        return shares(n1, 2).count("ORDERS_10S") && shares(n2, 2).count("ORDERS_10S");
      },
      absl::Seconds(60), absl::Milliseconds(250)));
  std::map<std::string, int64_t> b1 = shares(n1, 2), b2 = shares(n2, 2);
  EXPECT_LE(b1["ORDERS_10S"] + b2["ORDERS_10S"], 50);
  for (const v1::Leases& l : n1.leases()) {
    if (l.term() == 2) EXPECT_EQ(l.coordinator_id(), "coord-b");
  }
}

}  // namespace
}  // namespace marketprism::testing
