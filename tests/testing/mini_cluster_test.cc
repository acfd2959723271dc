// Whole behaviours of the cluster in one process: routing across nodes, a
// node's death, a leader change and an account-lease hand-over — real
// coordinators and nodes over in-process gRPC channels, a fake clock, fake
// gossip and a fake exchange (tests/testing/mini_cluster.h).
#include "tests/testing/mini_cluster.h"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"
#include "marketprism/v1/collector.grpc.pb.h"

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

// Sends `req` and advances the clock while it waits.
grpc::Status Call(MiniCluster& c, const std::string& coordinator, const v1::ExecuteRequest& req,
                  v1::ExecuteResponse* resp = nullptr) {
  auto stub = c.Client(coordinator);
  AsyncCall call(*stub, req);
  c.AdvanceUntil([&] { return call.done.HasBeenNotified(); }, absl::Seconds(30));
  call.done.WaitForNotification();
  if (resp != nullptr) *resp = call.resp;
  return call.status;
}

// `n` pings one after another; how many each node answered.
std::map<std::string, int> PingMany(MiniCluster& c, const std::string& coordinator, int n) {
  std::map<std::string, int> by_node;
  for (int i = 0; i < n; ++i) {
    v1::ExecuteResponse resp;
    grpc::Status s = Call(c, coordinator, Ping(), &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (s.ok()) ++by_node[resp.node_id()];
  }
  return by_node;
}

bool Leads(MiniCluster& c, const std::string& name) { return c.coordinator(name).leadership().leading; }

TEST(MiniClusterTest, RequestsAreRoutedAcrossEveryRegisteredNode) {
  MiniCluster c;
  c.AddCoordinator("coord-a", /*gossip=*/false);
  for (int i = 1; i <= 3; ++i) c.AddNode("node-" + std::to_string(i), "127.0.0.1" + std::to_string(i), false);
  ASSERT_TRUE(c.AdvanceUntil([&] { return c.ReadyNodes("coord-a") == 3; }, absl::Seconds(30)));
  std::map<std::string, int> by_node = PingMany(c, "coord-a", 30);
  // The scheduler spreads load by headroom: every node takes a share, and
  // each request left from its node's own IP.
  EXPECT_EQ(by_node.size(), 3u);
  for (int i = 1; i <= 3; ++i) {
    std::string ip = "127.0.0.1" + std::to_string(i);
    EXPECT_GE(by_node["node-" + std::to_string(i)], 3);
    EXPECT_EQ(c.exchange().Requests(ip, "/api/v3/ping"), by_node["node-" + std::to_string(i)]) << ip;
  }
}

TEST(MiniClusterTest, ADeadNodesWorkGoesToTheOthers) {
  MiniCluster c;
  c.AddCoordinator("coord-a", /*gossip=*/true);
  ASSERT_TRUE(c.AdvanceUntil([&] { return Leads(c, "coord-a"); }, absl::Seconds(5)));
  c.AddNode("node-1", "127.0.0.11", /*gossip=*/true);
  c.AddNode("node-2", "127.0.0.12", /*gossip=*/true);
  ASSERT_TRUE(c.AdvanceUntil([&] { return c.ReadyNodes("coord-a") == 2; }, absl::Seconds(30)));
  EXPECT_EQ(PingMany(c, "coord-a", 10).size(), 2u);

  c.KillNode("node-1");
  ASSERT_TRUE(c.AdvanceUntil([&] { return c.ReadyNodes("coord-a") == 1; }, absl::Seconds(5)));
  int64_t before = c.exchange().Requests("127.0.0.11");
  std::map<std::string, int> after = PingMany(c, "coord-a", 10);
  EXPECT_EQ(after.size(), 1u);
  EXPECT_EQ(after["node-2"], 10);
  EXPECT_EQ(c.exchange().Requests("127.0.0.11"), before);
}

TEST(MiniClusterTest, ALeaderChangeMovesNodesAndWorkToTheNewTerm) {
  MiniCluster c;
  c.AddCoordinator("coord-a", /*gossip=*/true);
  c.AddCoordinator("coord-b", /*gossip=*/true);
  // The lower name claims term 1 after the hold-down.
  ASSERT_TRUE(c.AdvanceUntil([&] { return Leads(c, "coord-a"); }, absl::Seconds(5)));
  EXPECT_FALSE(Leads(c, "coord-b"));
  c.AddNode("node-1", "127.0.0.11", /*gossip=*/true);
  ASSERT_TRUE(c.AdvanceUntil([&] { return c.ReadyNodes("coord-a") == 1; }, absl::Seconds(30)));
  // A client of the follower is forwarded to the leader.
  EXPECT_EQ(PingMany(c, "coord-b", 3)["node-1"], 3);
  EXPECT_EQ(c.gossip().Record("node-1", "fence"), "1");

  c.KillCoordinator("coord-a");
  ASSERT_TRUE(c.AdvanceUntil([&] { return Leads(c, "coord-b"); }, absl::Seconds(5)));
  EXPECT_EQ(c.coordinator("coord-b").leadership().term, 2);
  // The node follows gossip's news to the new leader and takes its term.
  ASSERT_TRUE(c.AdvanceUntil([&] { return c.ReadyNodes("coord-b") == 1; }, absl::Seconds(30)));
  EXPECT_EQ(PingMany(c, "coord-b", 3)["node-1"], 3);
  EXPECT_EQ(c.gossip().Record("node-1", "fence"), "2");
}

TEST(MiniClusterTest, AccountLeasesAreHandedOverWithinTheAccountsCapacity) {
  MiniCluster c;
  c.AddCoordinator("coord-a", /*gossip=*/true);
  c.AddCoordinator("coord-b", /*gossip=*/true);
  ASSERT_TRUE(c.AdvanceUntil([&] { return Leads(c, "coord-a"); }, absl::Seconds(5)));
  c.AddNode("node-1", "127.0.0.11", /*gossip=*/true);
  c.AddNode("node-2", "127.0.0.12", /*gossip=*/true);
  ASSERT_TRUE(c.AdvanceUntil([&] { return c.ReadyNodes("coord-a") == 2; }, absl::Seconds(30)));
  // An order names the account: its pools are leased out to the nodes, and
  // the order goes to one whose lease has room.
  grpc::Status first = Call(c, "coord-a", Order("key-1"));
  ASSERT_TRUE(first.ok()) << first.error_message();

  // The shares of ORDERS_10S the leader shows, per node.
  auto shares = [&](const std::string& coordinator) {
    std::map<std::string, int64_t> out;
    v1::GetStatusResponse status = c.Status(coordinator);
    for (const v1::NodeStatus& n : status.nodes()) {
      for (const v1::PoolUsage& p : n.pools()) {
        if (p.pool() == "ORDERS_10S" && absl::StartsWith(p.scope_key(), "account:")) out[n.node_id()] = p.capacity();
      }
    }
    return out;
  };
  auto total = [](const std::map<std::string, int64_t>& s) {
    int64_t sum = 0;
    for (const auto& [node, units] : s) sum += units;
    return sum;
  };
  std::map<std::string, int64_t> before = shares("coord-a");
  EXPECT_EQ(before.size(), 2u);
  EXPECT_LE(total(before), 50);  // never more than the account's capacity

  c.KillCoordinator("coord-a");
  ASSERT_TRUE(c.AdvanceUntil([&] { return Leads(c, "coord-b"); }, absl::Seconds(5)));
  ASSERT_TRUE(c.AdvanceUntil([&] { return c.ReadyNodes("coord-b") == 2; }, absl::Seconds(30)));
  // The new leader adopts the allocation the nodes report and renews it:
  // orders go on under term 2, the shares still within capacity.
  grpc::Status again = Call(c, "coord-b", Order("key-1"));
  ASSERT_TRUE(again.ok()) << again.error_message();
  std::map<std::string, int64_t> after = shares("coord-b");
  EXPECT_EQ(after.size(), 2u);
  EXPECT_LE(total(after), 50);
  EXPECT_GE(c.exchange().Requests("127.0.0.11", "/api/v3/order") +
                c.exchange().Requests("127.0.0.12", "/api/v3/order"),
            2);
}

// Runs `call` on its own thread and advances the clock until it returns.
template <typename Fn>
auto RunAdvancing(MiniCluster& c, Fn call) {
  decltype(call()) result;
  absl::Notification done;
  std::thread t([&] {
    result = call();
    done.Notify();
  });
  c.AdvanceUntil([&] { return done.HasBeenNotified(); }, absl::Seconds(30));
  t.join();
  return result;
}

std::unique_ptr<v1::Collector::Stub> Collector(MiniCluster& c, const std::string& coordinator) {
  return v1::Collector::NewStub(c.Channel(coordinator + ":1"));
}

// A poll job: the leader runs it every second through the scheduler.
v1::Job TimePoll(const std::string& name) {
  v1::Job job;
  job.set_name(name);
  job.set_exchange("binance_spot");
  job.set_channel("poll");
  job.set_path("/api/v3/ticker/24hr");
  job.set_every_ms(1000);
  return job;
}

grpc::Status CreateJob(MiniCluster& c, const std::string& coordinator, const v1::Job& job) {
  auto stub = Collector(c, coordinator);
  return RunAdvancing(c, [&] {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    v1::CreateJobRequest req;
    *req.mutable_job() = job;
    v1::Job created;
    return stub->CreateJob(&ctx, req, &created);
  });
}

// The names of the jobs `coordinator` answers with.
std::vector<std::string> JobNames(MiniCluster& c, const std::string& coordinator) {
  auto stub = Collector(c, coordinator);
  v1::ListJobsResponse resp = RunAdvancing(c, [&] {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    v1::ListJobsResponse r;
    grpc::Status s = stub->ListJobs(&ctx, v1::ListJobsRequest(), &r);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return r;
  });
  std::vector<std::string> names;
  for (const v1::Job& j : resp.jobs()) names.push_back(j.name());
  return names;
}

// A Subscribe read on its own thread until the stream ends.
class Subscription {
 public:
  Subscription(MiniCluster& c, const std::string& coordinator, const std::string& channel)
      : stub_(Collector(c, coordinator)) {
    v1::SubscribeRequest req;
    req.set_channel(channel);
    thread_ = std::thread([this, req] {
      auto reader = stub_->Subscribe(&ctx_, req);
      v1::MarketEvent e;
      while (reader->Read(&e)) {
        absl::MutexLock lock(&mu_);
        events_.push_back(e);
      }
      grpc::Status s = reader->Finish();
      absl::MutexLock lock(&mu_);
      status_ = s;
    });
  }
  ~Subscription() {
    ctx_.TryCancel();
    thread_.join();
  }
  size_t received() {
    absl::MutexLock lock(&mu_);
    return events_.size();
  }
  std::optional<grpc::Status> ended() {
    absl::MutexLock lock(&mu_);
    return status_;
  }
  std::vector<v1::MarketEvent> events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }

 private:
  std::unique_ptr<v1::Collector::Stub> stub_;
  grpc::ClientContext ctx_;
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<v1::MarketEvent> events_ ABSL_GUARDED_BY(mu_);
  std::optional<grpc::Status> status_ ABSL_GUARDED_BY(mu_);
};

// coord-a leading, coord-b following, node-1 ready.
void LeaderFollowerAndNode(MiniCluster& c) {
  c.AddCoordinator("coord-a", /*gossip=*/true);
  c.AddCoordinator("coord-b", /*gossip=*/true);
  ASSERT_TRUE(c.AdvanceUntil([&] { return Leads(c, "coord-a"); }, absl::Seconds(5)));
  c.AddNode("node-1", "127.0.0.11", /*gossip=*/true);
  ASSERT_TRUE(c.AdvanceUntil([&] { return c.ReadyNodes("coord-a") == 1; }, absl::Seconds(30)));
}

TEST(MiniClusterTest, AJobCreatedAtAFollowerIsHeldByEveryCoordinatorBeforeItIsAnswered) {
  MiniCluster c;
  ASSERT_NO_FATAL_FAILURE(LeaderFollowerAndNode(c));
  // coord-b has asked for the leader's jobs at least once.
  ASSERT_TRUE(c.AdvanceUntil([&] { return !c.coordinator("coord-b").leadership().leader_grpc.empty(); },
                             absl::Seconds(5)));
  c.AdvanceUntil([] { return false; }, absl::Milliseconds(500));

  // Created at the follower: forwarded, and answered once coord-b holds it.
  grpc::Status created = CreateJob(c, "coord-b", TimePoll("time"));
  ASSERT_TRUE(created.ok()) << created.error_message();
  EXPECT_EQ(CreateJob(c, "coord-a", TimePoll("time")).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(JobNames(c, "coord-b"), std::vector<std::string>{"time"});

  // The leader dies the moment it answered: the job lives on in coord-b.
  c.KillCoordinator("coord-a");
  ASSERT_TRUE(c.AdvanceUntil([&] { return Leads(c, "coord-b"); }, absl::Seconds(5)));
  EXPECT_EQ(JobNames(c, "coord-b"), std::vector<std::string>{"time"});
  ASSERT_TRUE(c.AdvanceUntil([&] { return c.ReadyNodes("coord-b") == 1; }, absl::Seconds(30)));
  // And it runs under the new leader.
  int64_t before = c.exchange().Requests("127.0.0.11", "/api/v3/ticker/24hr");
  EXPECT_TRUE(c.AdvanceUntil(
      [&] { return c.exchange().Requests("127.0.0.11", "/api/v3/ticker/24hr") > before; }, absl::Seconds(5)));

  auto stub = Collector(c, "coord-b");
  grpc::Status deleted = RunAdvancing(c, [&] {
    grpc::ClientContext ctx;
    v1::DeleteJobRequest req;
    req.set_name("time");
    v1::DeleteJobResponse resp;
    return stub->DeleteJob(&ctx, req, &resp);
  });
  EXPECT_TRUE(deleted.ok()) << deleted.error_message();
  EXPECT_TRUE(JobNames(c, "coord-b").empty());
}

TEST(MiniClusterTest, AFollowerRelaysTheLeadersRecordsAndEndsTheStreamWhenTheLeaderGoes) {
  MiniCluster c;
  ASSERT_NO_FATAL_FAILURE(LeaderFollowerAndNode(c));
  ASSERT_TRUE(CreateJob(c, "coord-a", TimePoll("time")).ok());

  Subscription at_follower(c, "coord-b", "poll");
  Subscription at_leader(c, "coord-a", "poll");
  ASSERT_TRUE(c.AdvanceUntil([&] { return at_follower.received() >= 3 && at_leader.received() >= 3; },
                             absl::Seconds(10)));
  // The same records, by key, through either door.
  std::vector<v1::MarketEvent> relayed = at_follower.events();
  EXPECT_EQ(relayed[0].poll().http_status(), 200);
  std::set<std::string> keys_at_leader;
  for (const v1::MarketEvent& e : at_leader.events()) keys_at_leader.insert(e.key());
  EXPECT_TRUE(keys_at_leader.count(relayed[1].key())) << relayed[1].key();

  c.KillCoordinator("coord-a");
  ASSERT_TRUE(c.AdvanceUntil([&] { return at_follower.ended().has_value(); }, absl::Seconds(10)));
  EXPECT_EQ(at_follower.ended()->error_code(), grpc::StatusCode::UNAVAILABLE) << at_follower.ended()->error_message();

  // Subscribed again, at the new leader: the job goes on.
  ASSERT_TRUE(c.AdvanceUntil([&] { return Leads(c, "coord-b") && c.ReadyNodes("coord-b") == 1; },
                             absl::Seconds(30)));
  Subscription again(c, "coord-b", "poll");
  EXPECT_TRUE(c.AdvanceUntil([&] { return again.received() >= 2; }, absl::Seconds(10)));
}

}  // namespace
}  // namespace marketprism::testing
