#include "tests/testing/mini_cluster.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace marketprism::testing {

namespace {
// The harness cannot go on without its parts.
void CheckOk(const absl::Status& s) {
  if (s.ok()) return;
  std::fprintf(stderr, "mini-cluster: %s\n", s.ToString().c_str());
  std::abort();
}
}  // namespace

MiniCluster::MiniCluster() = default;

MiniCluster::~MiniCluster() {
  for (auto& [name, n] : nodes_) n->Shutdown();
  for (auto& [name, c] : coordinators_) c->Shutdown();
  nodes_.clear();
  coordinators_.clear();
}

void MiniCluster::Serve(const std::string& address, std::function<std::shared_ptr<grpc::Channel>()> channel) {
  absl::MutexLock lock(&mu_);
  servers_[address] = std::move(channel);
}

std::shared_ptr<grpc::Channel> MiniCluster::Channel(const std::string& address) {
  std::function<std::shared_ptr<grpc::Channel>()> make;
  {
    absl::MutexLock lock(&mu_);
    auto it = servers_.find(address);
    if (it != servers_.end()) make = it->second;
  }
  std::shared_ptr<grpc::Channel> channel = make ? make() : nullptr;
  // An address nobody serves (or a server shut down): a channel that never connects.
  return channel ? channel : grpc::CreateChannel("unix:/nonexistent/" + address, grpc::InsecureChannelCredentials());
}

coordinator::Coordinator& MiniCluster::AddCoordinator(const std::string& name, bool gossip,
                                                      coordinator::CoordinatorOptions options) {
  options.name = name;
  options.advertise = name + ":1";
  options.exchange_info_refresh = absl::ZeroDuration();  // the fake exchange publishes no limits
  coordinator::CoordinatorTransports t;
  t.in_process = true;
  t.channels = [this](const std::string& address) { return Channel(address); };
  if (gossip) t.membership = gossip_.Factory();
  auto c = coordinator::Coordinator::Create(std::move(options), clock_, std::move(t));
  CheckOk(c.status());
  coordinator::Coordinator* raw = c->get();
  coordinators_[name] = std::move(*c);
  coordinator_names_.push_back(name);
  // Served before it starts: whoever dials it first must reach it.
  Serve(name + ":1", [raw] { return raw->InProcessChannel(); });
  CheckOk(raw->Start());
  return *raw;
}

node::Node& MiniCluster::AddNode(const std::string& name, const std::string& egress_ip, bool gossip) {
  node::NodeOptions o;
  o.node_id = name;
  o.egress_ip = egress_ip;
  o.advertise = name + ":1";
  o.exchanges = {"binance_spot"};
  o.exchange_urls["binance_spot"] = "https://fake-exchange";
  for (const std::string& c : coordinator_names_) o.coordinators.push_back({c, 1});
  o.workers = 4;
  o.reconnect_max = absl::Milliseconds(200);
  auto rules = common::RulesBook::LoadDefault();
  CheckOk(rules.status());
  node::NodeTransports t;
  t.http = exchange_.Factory();
  t.channels = [this](const std::string& address) { return Channel(address); };
  if (gossip) t.membership = gossip_.Factory();
  t.in_process = true;
  auto n = node::Node::Create(std::move(o), std::move(*rules), clock_, std::move(t));
  CheckOk(n.status());
  node::Node* raw = n->get();
  nodes_[name] = std::move(*n);
  // Served before it starts: the coordinator dials it as soon as it registers.
  Serve(name + ":1", [raw] { return raw->InProcessChannel(); });
  CheckOk(raw->Start());
  return *raw;
}

void MiniCluster::KillCoordinator(const std::string& name) {
  gossip_.Kill(name);
  Serve(name + ":1", nullptr);
  coordinators_.at(name)->Shutdown();
}

void MiniCluster::KillNode(const std::string& name) {
  gossip_.Kill(name);
  Serve(name + ":1", nullptr);
  nodes_.at(name)->Shutdown();
}

std::unique_ptr<v1::Coordinator::Stub> MiniCluster::Client(const std::string& coordinator) {
  return v1::Coordinator::NewStub(Channel(coordinator + ":1"));
}

v1::GetStatusResponse MiniCluster::Status(const std::string& coordinator) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::GetStatusResponse resp;
  (void)Client(coordinator)->GetStatus(&ctx, v1::GetStatusRequest(), &resp);
  return resp;
}

int MiniCluster::ReadyNodes(const std::string& coordinator) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::ListNodesResponse resp;
  if (!Client(coordinator)->ListNodes(&ctx, v1::ListNodesRequest(), &resp).ok()) return 0;
  int ready = 0;
  for (const v1::NodeInfo& n : resp.nodes()) ready += n.state() == "active" && n.ready_exchanges_size() > 0;
  return ready;
}

bool MiniCluster::AdvanceUntil(const std::function<bool()>& done, absl::Duration limit, absl::Duration step) {
  for (absl::Duration passed; passed <= limit; passed += step) {
    if (done()) return true;
    clock_.AdvanceBy(step);
    // Real gRPC and node threads carry on what the timers started.
    absl::Time real_deadline = absl::Now() + absl::Milliseconds(20);
    while (!done() && absl::Now() < real_deadline) absl::SleepFor(absl::Milliseconds(1));  // polling, not waiting
  }
  return done();
}

}  // namespace marketprism::testing
