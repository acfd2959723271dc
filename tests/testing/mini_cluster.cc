#include "tests/testing/mini_cluster.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/gossip/membership.h"

namespace marketprism::testing {

namespace g = common::gossip;

namespace {
// The harness cannot go on without its parts.
void CheckOk(const absl::Status& s) {
  if (s.ok()) return;
  std::fprintf(stderr, "mini-cluster: %s\n", s.ToString().c_str());
  std::abort();
}
}  // namespace

// ---- the fake node's Dispatch service ----------------------------------------------

class FakeNode::Service final : public v1::Node::CallbackService {
 public:
  explicit Service(FakeNode& node) : node_(node) {}
  grpc::ServerUnaryReactor* Dispatch(grpc::CallbackServerContext* ctx, const v1::DispatchRequest* req,
                                     v1::DispatchResponse* resp) override {
    {
      absl::MutexLock lock(&node_.mu_);
      node_.dispatched_.push_back({req->path(), req->term(), req->coordinator_id(), req->account()});
      node_.highest_term_ = std::max(node_.highest_term_, req->term());
    }
    resp->set_outcome(v1::DispatchResponse::REPLIED);
    resp->set_http_status(200);
    resp->set_body(node_.name_);
    *resp->mutable_cost() = req->cost();
    resp->set_observed_used(-1);
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  FakeNode& node_;
};

FakeNode::FakeNode(MiniCluster& cluster, std::string name, std::string egress_ip)
    : cluster_(cluster), name_(std::move(name)), egress_ip_(std::move(egress_ip)), service_(new Service(*this)) {
  grpc::ServerBuilder builder;
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  grpc::Server* server = server_.get();
  cluster_.Serve(address(), [server] { return server->InProcessChannel(grpc::ChannelArguments()); });
}

FakeNode::~FakeNode() {
  EndSession();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
}

absl::StatusOr<v1::Registered> FakeNode::Register(const std::string& coordinator) {
  EndSession();
  auto stub = v1::NodeControl::NewStub(cluster_.Channel(coordinator));
  auto ctx = std::make_unique<grpc::ClientContext>();
  grpc::ClientContext* raw = ctx.get();
  std::shared_ptr<grpc::ClientReaderWriter<v1::NodeMessage, v1::CoordinatorMessage>> stream = stub->Session(raw);
  v1::NodeMessage hello;
  v1::Register* r = hello.mutable_register_();
  r->set_node_id(name_);
  r->set_egress_ip(egress_ip_);
  r->set_grpc_address(address());
  r->set_version("test");
  r->add_exchanges("binance_spot");
  v1::ClockEstimate* c = r->add_clocks();
  c->set_exchange("binance_spot");
  c->set_uncertainty_us(1000);
  r->set_highest_term(highest_term());
  r->set_recent_complete(true);
  {
    // The leases it still holds, as a real node reports them.
    absl::MutexLock lock(&mu_);
    if (!leases_.empty()) *r->mutable_leases() = leases_.back().leases();
  }
  v1::CoordinatorMessage first;
  if (!stream->Write(hello) || !stream->Read(&first) || !first.has_registered()) {
    grpc::Status s = stream->Finish();
    return absl::UnavailableError(absl::StrCat(coordinator, ": ", s.error_message()));
  }
  if (!first.registered().accepted()) {
    (void)stream->Finish();
    return first.registered();
  }
  {
    absl::MutexLock lock(&mu_);
    highest_term_ = std::max(highest_term_, first.registered().term());
    in_session_ = true;
    ctx_ = std::move(ctx);
  }
  reader_ = std::thread([this, stream, stub = std::shared_ptr<v1::NodeControl::Stub>(std::move(stub))] {
    v1::CoordinatorMessage m;
    while (stream->Read(&m)) {
      absl::MutexLock lock(&mu_);
      if (m.has_leases()) leases_.push_back(m.leases());
    }
    (void)stream->Finish();
    absl::MutexLock lock(&mu_);
    in_session_ = false;
  });
  return first.registered();
}

absl::StatusOr<v1::Registered> FakeNode::RegisterWithLeader(const std::string& first_try) {
  std::string target = first_try;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<v1::Registered> r = Register(target);
    if (!r.ok() || r->accepted() || r->leader_address().empty()) return r;
    target = r->leader_address();
  }
  return absl::UnavailableError("no leader accepted");
}

void FakeNode::EndSession() {
  {
    absl::MutexLock lock(&mu_);
    if (ctx_) ctx_->TryCancel();
  }
  if (reader_.joinable()) reader_.join();
  absl::MutexLock lock(&mu_);
  ctx_.reset();
}

bool FakeNode::AwaitSessionEnd() {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(+[](bool* in) { return !*in; }, &in_session_), absl::Seconds(10));
}

std::vector<FakeNode::Dispatched> FakeNode::dispatched() {
  absl::MutexLock lock(&mu_);
  return dispatched_;
}

std::vector<v1::Leases> FakeNode::leases() {
  absl::MutexLock lock(&mu_);
  return leases_;
}

int64_t FakeNode::highest_term() {
  absl::MutexLock lock(&mu_);
  return highest_term_;
}

// ---- the cluster -------------------------------------------------------------------

MiniCluster::MiniCluster() = default;

MiniCluster::~MiniCluster() {
  nodes_.clear();
  for (auto& [name, c] : coordinators_) c->Shutdown();
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
  // An address nobody serves: a channel that never connects.
  return make ? make() : grpc::CreateChannel("unix:/nonexistent/" + address, grpc::InsecureChannelCredentials());
}

coordinator::Coordinator& MiniCluster::AddCoordinator(const std::string& name, bool gossip,
                                                      coordinator::CoordinatorOptions options) {
  options.name = name;
  options.advertise = name + ":1";
  options.exchange_info_refresh = absl::ZeroDuration();  // nothing publishes limits here
  coordinator::CoordinatorTransports t;
  t.in_process = true;
  t.channels = [this](const std::string& address) { return Channel(address); };
  if (gossip) t.membership = gossip_.Factory();
  auto c = coordinator::Coordinator::Create(std::move(options), clock_, std::move(t));
  CheckOk(c.status());
  coordinator::Coordinator* raw = c->get();
  coordinators_[name] = std::move(*c);
  CheckOk(raw->Start());
  Serve(name + ":1", [raw] { return raw->InProcessChannel(); });
  return *raw;
}

FakeNode& MiniCluster::AddNode(const std::string& name, const std::string& egress_ip, bool gossip) {
  auto node = std::make_unique<FakeNode>(*this, name, egress_ip);
  FakeNode* raw = node.get();
  nodes_[name] = std::move(node);
  if (gossip) {
    auto m = gossip_.Factory()(name, nullptr);
    CheckOk(m.status());
    (*m)->SetRecord(g::kRoleRecord, std::string(g::MemberRoleName(g::MemberRole::kNode)));
    (*m)->SetRecord(g::kEgressRecord, egress_ip);
    node_members_.push_back(std::move(*m));
  }
  return *raw;
}

void MiniCluster::KillCoordinator(const std::string& name) {
  coordinators_.at(name)->Shutdown();
  gossip_.Kill(name);
}

std::unique_ptr<v1::Coordinator::Stub> MiniCluster::Client(const std::string& coordinator) {
  return v1::Coordinator::NewStub(Channel(coordinator + ":1"));
}

bool MiniCluster::AdvanceUntil(const std::function<bool()>& done, absl::Duration limit, absl::Duration step) {
  for (absl::Duration passed; passed <= limit; passed += step) {
    if (done()) return true;
    clock_.AdvanceBy(step);
    // Real gRPC threads carry what the timers started: give them a moment.
    absl::Time real_deadline = absl::Now() + absl::Milliseconds(20);
    while (!done() && absl::Now() < real_deadline) std::this_thread::yield();
  }
  return done();
}

}  // namespace marketprism::testing
