#include "coordinator/coordinator.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <chrono>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/config.h"
#include "common/gossip/membership.h"
#include "common/log.h"
#include "coordinator/health.h"
#include "marketprism/v1/coordinator.grpc.pb.h"
#include "marketprism/v1/node.grpc.pb.h"

namespace marketprism::coordinator {

namespace {

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

absl::Status ToAbsl(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

std::string StateOf(const NodeSnapshot& n) { return n.state; }

bool IdempotentRequest(const v1::ExecuteRequest& r) {
  ExecuteSpec spec;
  spec.method = r.method().empty() ? "GET" : r.method();
  spec.path = r.path();
  spec.body = r.body();
  return Idempotent(spec);
}

void FillGossip(const common::gossip::MemberView& m, v1::NodeInfo* info) {
  namespace g = common::gossip;
  info->set_role(g::RecordValue(m, g::kRoleRecord));
  info->set_gossip_state(std::string(g::MemberStateName(m.state)));
  info->set_incarnation(m.incarnation);
  info->set_gossip_last_seen_ms(m.self ? absl::ToUnixMillis(absl::Now())
                                : m.last_heard == absl::InfinitePast() ? 0
                                                                       : absl::ToUnixMillis(m.last_heard));
  info->set_gossip_address(m.addr);
  int64_t term = 0;
  if (absl::SimpleAtoi(g::RecordValue(m, g::kTermRecord), &term)) info->set_term(term);
  info->set_usage(g::RecordValue(m, g::kUsageRecord));
  if (info->egress_ip().empty()) info->set_egress_ip(g::RecordValue(m, g::kEgressRecord));
  if (info->grpc_address().empty()) info->set_grpc_address(g::RecordValue(m, g::kGrpcRecord));
  if (info->version().empty()) info->set_version(g::RecordValue(m, g::kVersionRecord));
}

void FillNodeInfo(const NodeSnapshot& n, v1::NodeInfo* info) {
  info->set_node_id(n.node_id);
  info->set_egress_ip(n.egress_ip);
  info->set_grpc_address(n.grpc_address);
  info->set_state(StateOf(n));
  info->set_version(n.version);
  info->set_registered_ms(absl::ToUnixMillis(n.registered));
  info->set_last_seen_ms(absl::ToUnixMillis(n.last_seen));
  info->set_in_flight(n.in_flight);
  info->set_requests_total(n.requests);
  for (const std::string& e : n.ready) info->add_ready_exchanges(e);
}

}  // namespace

// ---- node connections ---------------------------------------------------------------

struct Coordinator::NodeConn {
  std::string node_id;
  grpc::ServerContext* ctx = nullptr;
  grpc::ServerReaderWriter<v1::CoordinatorMessage, v1::NodeMessage>* stream = nullptr;
  absl::Mutex mu;
  bool closed ABSL_GUARDED_BY(mu) = false;

  bool Write(const v1::CoordinatorMessage& m) {
    absl::MutexLock lock(&mu);
    return !closed && stream->Write(m);
  }
  void Close() {
    absl::MutexLock lock(&mu);
    closed = true;
  }
};

class Coordinator::GrpcNodeClient final : public NodeClient {
 public:
  explicit GrpcNodeClient(common::Clock& clock) : clock_(clock) {}

  void SetNode(const std::string& id, const std::string& address) {
    absl::MutexLock lock(&mu_);
    auto& e = nodes_[id];
    if (e.address == address && e.stub) return;
    e.address = address;
    e.stub = std::shared_ptr<v1::Node::Stub>(
        v1::Node::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials())));
  }

  // Gossip says the node is dead: its calls in flight are cancelled (the
  // router then retries idempotent ones elsewhere) and it gets no more.
  void ForgetNode(const std::string& id) {
    std::vector<std::shared_ptr<grpc::ClientContext>> calls;
    {
      absl::MutexLock lock(&mu_);
      nodes_.erase(id);
      auto it = calls_.find(id);
      if (it != calls_.end()) calls.assign(it->second.begin(), it->second.end());
    }
    for (auto& c : calls) c->TryCancel();
  }

  void Dispatch(const std::string& node_id, v1::DispatchRequest request, absl::Time deadline,
                DispatchDone done) override {
    std::shared_ptr<v1::Node::Stub> stub;
    {
      absl::MutexLock lock(&mu_);
      auto it = nodes_.find(node_id);
      if (it != nodes_.end()) stub = it->second.stub;
    }
    if (!stub) {
      v1::DispatchResponse r;
      r.set_outcome(v1::DispatchResponse::NOT_SENT);
      r.set_detail("the node is not connected");
      done(absl::OkStatus(), std::move(r));
      return;
    }
    struct State {
      std::shared_ptr<grpc::ClientContext> ctx = std::make_shared<grpc::ClientContext>();
      v1::DispatchRequest req;
      v1::DispatchResponse resp;
      DispatchDone done;
      std::shared_ptr<v1::Node::Stub> stub;
    };
    auto* st = new State;
    st->req = std::move(request);
    st->done = std::move(done);
    st->stub = stub;
    // gRPC deadlines are real wall-clock times (STYLE rule 20).
    absl::Duration left = std::max(deadline - clock_.Now(), absl::Milliseconds(1));
    st->ctx->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMicroseconds(left));
    {
      absl::MutexLock lock(&mu_);
      calls_[node_id].insert(st->ctx);
    }
    stub->async()->Dispatch(st->ctx.get(), &st->req, &st->resp, [this, st, node_id](grpc::Status s) {
      {
        absl::MutexLock lock(&mu_);
        auto it = calls_.find(node_id);
        if (it != calls_.end()) {
          it->second.erase(st->ctx);
          if (it->second.empty()) calls_.erase(it);
        }
      }
      st->done(ToAbsl(s), std::move(st->resp));
      delete st;
    });
  }

 private:
  struct Entry {
    std::string address;
    std::shared_ptr<v1::Node::Stub> stub;
  };
  common::Clock& clock_;
  absl::Mutex mu_;
  std::map<std::string, Entry> nodes_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::set<std::shared_ptr<grpc::ClientContext>>> calls_ ABSL_GUARDED_BY(mu_);
};

// ---- the client-facing service ----------------------------------------------------

class Coordinator::ClientService final : public v1::Coordinator::CallbackService {
 public:
  explicit ClientService(Coordinator& c) : c_(c) {}

  grpc::ServerUnaryReactor* Execute(grpc::CallbackServerContext* ctx, const v1::ExecuteRequest* req,
                                    v1::ExecuteResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    auto remaining = ctx->deadline() - std::chrono::system_clock::now();
    absl::Duration left = remaining > std::chrono::hours(24 * 365)
                              ? c_.options_.default_deadline
                              : absl::FromChrono(std::chrono::duration_cast<std::chrono::microseconds>(remaining));
    std::string name = c_.options_.name;
    c_.Route(
        *req, c_.clock_.Now() + left,
        [ctx, reactor, resp, name](absl::StatusOr<v1::ExecuteResponse> r) {
          // Marks an answer from a coordinator, as against a broken connection.
          ctx->AddTrailingMetadata("mp-answered-by", name);
          if (r.ok()) {
            *resp = std::move(*r);
            reactor->Finish(grpc::Status::OK);
            return;
          }
          if (std::optional<absl::Duration> retry = RetryAfterOf(r.status())) {
            ctx->AddTrailingMetadata("retry-after-ms", absl::StrCat(absl::ToInt64Milliseconds(*retry)));
          }
          reactor->Finish(ToGrpc(r.status()));
        },
        [ctx] { return ctx->IsCancelled(); });
    return reactor;
  }

  // A follower passes the call to the leader. False when this coordinator
  // leads (the caller answers it).
  template <typename Req, typename Resp, typename Call>
  bool ForwardToLeader(grpc::CallbackServerContext* ctx, grpc::ServerUnaryReactor* reactor,
                       const Req* req, Resp* resp, Call call) {
    Leadership l = c_.leadership();
    if (l.leading) return false;
    if (l.leader_grpc.empty()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                   "no leader coordinator yet (an election is under way); retry shortly"));
      return true;
    }
    auto cctx = std::make_shared<grpc::ClientContext>();
    auto deadline = ctx->deadline();
    if (deadline - std::chrono::system_clock::now() > std::chrono::hours(1)) {
      deadline = std::chrono::system_clock::now() + std::chrono::seconds(30);
    }
    cctx->set_deadline(deadline);
    call(c_.StubFor(l.leader_grpc)->async(), cctx.get(), req, resp,
         [cctx, reactor](grpc::Status s) { reactor->Finish(s); });
    return true;
  }

  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* ctx, const v1::GetStatusRequest* req,
                                      v1::GetStatusResponse* resp) override {
    grpc::ServerUnaryReactor* forwarded = ctx->DefaultReactor();
    if (ForwardToLeader(ctx, forwarded, req, resp, [](auto* a, auto* c, auto* q, auto* r, auto cb) {
          a->GetStatus(c, q, r, std::move(cb));
        })) {
      return forwarded;
    }
    SchedulerSnapshot s = c_.scheduler_->Snapshot();
    absl::Time now = c_.clock_.Now();
    auto [available, total] = IpAvailability(s, now);
    resp->set_mode(total <= 1 ? "unified" : "distributed");
    resp->set_available_ips(available);
    resp->set_total_ips(total);
    resp->set_success_rate(s.success_rate);
    resp->set_queued(s.queued);
    resp->set_server_time_ms(absl::ToUnixMillis(now));
    for (const NodeSnapshot& n : s.nodes) {
      v1::NodeStatus* ns = resp->add_nodes();
      ns->set_node_id(n.node_id);
      ns->set_egress_ip(n.egress_ip);
      ns->set_state(StateOf(n));
      ns->set_in_flight(n.in_flight);
      ns->set_requests_total(n.requests);
      ns->set_failures_total(n.failures);
      ns->set_clock_offset_us(absl::ToInt64Microseconds(n.binance_offset));
      for (const auto& [exchange, pools] : n.pools) {
        for (const auto& p : pools) {
          v1::PoolUsage* u = ns->add_pools();
          u->set_exchange(exchange);
          u->set_pool(p.name);
          u->set_scope_key(n.egress_ip);
          u->set_window(std::string(common::WindowKindName(p.window)));
          u->set_used(p.used);
          u->set_reserved(p.reserved);
          u->set_capacity(p.capacity);
          if (p.window_start != absl::InfinitePast()) u->set_window_start_ms(absl::ToUnixMillis(p.window_start));
        }
      }
      for (const NodeSnapshot::Lease& lease : n.leases) {
        for (const auto& p : lease.pools) {
          v1::PoolUsage* u = ns->add_pools();
          u->set_exchange(lease.exchange);
          u->set_pool(p.name);
          // An API key is not a secret, but need not be shown whole.
          u->set_scope_key(absl::StrCat("account:", common::ShortAccount(lease.account)));
          u->set_window(std::string(common::WindowKindName(p.window)));
          u->set_used(p.used);
          u->set_reserved(p.reserved);
          u->set_capacity(p.capacity);
          if (p.window_start != absl::InfinitePast()) u->set_window_start_ms(absl::ToUnixMillis(p.window_start));
        }
      }
      for (const LaneStatus& l : n.lanes) {
        if (l.parked_until <= now) continue;
        v1::Ban* b = ns->add_bans();
        b->set_exchange(l.exchange);
        b->set_kind(l.park_kind);
        b->set_until_ms(absl::ToUnixMillis(l.parked_until));
      }
    }
    forwarded->Finish(grpc::Status::OK);
    return forwarded;
  }

  grpc::ServerUnaryReactor* GetHealth(grpc::CallbackServerContext* ctx, const v1::GetHealthRequest* req,
                                      v1::GetHealthResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    if (ForwardToLeader(ctx, reactor, req, resp, [](auto* a, auto* c, auto* q, auto* r, auto cb) {
          a->GetHealth(c, q, r, std::move(cb));
        })) {
      return reactor;
    }
    HealthReport h = EvaluateHealth(c_.scheduler_->Snapshot(), c_.options_.health, c_.clock_.Now());
    resp->set_overall_health(h.overall == "healthy"    ? v1::GetHealthResponse::HEALTHY
                             : h.overall == "degraded" ? v1::GetHealthResponse::DEGRADED
                                                       : v1::GetHealthResponse::UNHEALTHY);
    for (const HealthCheckResult& c : h.checks) {
      v1::HealthCheck* hc = resp->add_checks();
      hc->set_name(c.name);
      hc->set_status(c.status);
      hc->set_value(c.value);
      hc->set_threshold(c.threshold);
      hc->set_message(c.message);
    }
    for (const std::string& r : h.recommendations) resp->add_recommendations(r);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* ListNodes(grpc::CallbackServerContext* ctx, const v1::ListNodesRequest* req,
                                      v1::ListNodesResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    // A follower that knows the leader shows the leader's view; with none,
    // its own (gossip's members only).
    if (!c_.leadership().leader_grpc.empty() &&
        ForwardToLeader(ctx, reactor, req, resp, [](auto* a, auto* c, auto* q, auto* r, auto cb) {
          a->ListNodes(c, q, r, std::move(cb));
        })) {
      return reactor;
    }
    Leadership l = c_.leadership();
    resp->set_leader(l.leader);
    resp->set_term(l.term);
    resp->set_answered_by(c_.options_.name);
    std::map<std::string, v1::NodeInfo*> by_name;
    if (l.leading) {
      for (const NodeSnapshot& n : c_.scheduler_->Snapshot().nodes) {
        v1::NodeInfo* info = resp->add_nodes();
        FillNodeInfo(n, info);
        by_name[n.node_id] = info;
      }
    }
    if (c_.gossip_) {
      std::vector<common::gossip::MemberView> members = c_.gossip_->Members();
      // A restarted member is a new member under an old name: show the newest.
      std::sort(members.begin(), members.end(), [](const auto& a, const auto& b) {
        return a.name != b.name ? a.name < b.name : a.state_since < b.state_since;
      });
      for (const common::gossip::MemberView& m : members) {
        v1::NodeInfo*& info = by_name[m.name];
        if (info == nullptr) {
          info = resp->add_nodes();
          info->set_node_id(m.name);
        }
        FillGossip(m, info);
        bool gone = m.state == common::gossip::MemberState::kDead || m.state == common::gossip::MemberState::kLeft;
        if (info->state().empty()) {
          info->set_state(info->role() != "coordinator" ? "unregistered"
                          : gone                        ? "gone"
                          : m.name == l.leader          ? "leader"
                                                        : "follower");
        }
      }
    }
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* DrainNode(grpc::CallbackServerContext* ctx, const v1::DrainNodeRequest* req,
                                      v1::DrainNodeResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    if (ForwardToLeader(ctx, reactor, req, resp, [](auto* a, auto* c, auto* q, auto* r, auto cb) {
          a->DrainNode(c, q, r, std::move(cb));
        })) {
      return reactor;
    }
    if (req->node_id().empty()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "node_id: required"));
      return reactor;
    }
    absl::Status st = c_.scheduler_->SetDraining(req->node_id(), !req->undrain());
    if (!st.ok()) {
      reactor->Finish(ToGrpc(st));
      return reactor;
    }
    c_.PushDrain(req->node_id(), !req->undrain());
    common::Log(common::LogLevel::kInfo, "coordinator",
                absl::StrCat(req->undrain() ? "undrained " : "drained ", req->node_id()));
    for (const NodeSnapshot& n : c_.scheduler_->Snapshot().nodes) {
      if (n.node_id == req->node_id()) FillNodeInfo(n, resp->mutable_node());
    }
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  Coordinator& c_;
};

// ---- the node-facing service -------------------------------------------------------

class Coordinator::ControlService final : public v1::NodeControl::Service {
 public:
  explicit ControlService(Coordinator& c) : c_(c) {}

  grpc::Status Session(grpc::ServerContext* ctx,
                       grpc::ServerReaderWriter<v1::CoordinatorMessage, v1::NodeMessage>* stream) override {
    v1::NodeMessage first;
    if (!stream->Read(&first)) return grpc::Status::OK;
    if (!first.has_register_()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the first message must be register");
    }
    const v1::Register& r = first.register_();
    std::string problem;
    if (r.node_id().empty()) problem = "register.node_id: required";
    if (problem.empty() && !common::IsIpLiteral(r.egress_ip())) {
      problem = absl::StrCat("register.egress_ip: \"", r.egress_ip(), "\" is not an IP address");
    }
    if (problem.empty() && !common::ParseHostPort(r.grpc_address(), "register.grpc_address").ok()) {
      problem = absl::StrCat("register.grpc_address: \"", r.grpc_address(), "\" is not ADDR:PORT");
    }
    if (!problem.empty()) {
      v1::CoordinatorMessage no;
      no.mutable_registered()->set_accepted(false);
      no.mutable_registered()->set_reason(problem);
      stream->Write(no);
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, problem);
    }
    Leadership l = c_.leadership();
    if (l.leading && r.highest_term() > l.term) {
      // The node has worked for a newer leader: this one is deposed.
      {
        absl::MutexLock lock(&c_.mu_);
        if (c_.election_) c_.election_->ObserveTerm(r.highest_term());
      }
      l = Leadership{};
    }
    if (!l.leading) {
      v1::CoordinatorMessage no;
      no.mutable_registered()->set_accepted(false);
      no.mutable_registered()->set_term(l.term);
      no.mutable_registered()->set_coordinator_id(l.leader);
      no.mutable_registered()->set_leader_address(l.leader_grpc);
      std::string why = l.leader.empty()
                            ? absl::StrCat(c_.options_.name, " does not lead and knows no leader yet")
                            : absl::StrCat(c_.options_.name, " does not lead; the leader is ", l.leader,
                                           " at ", l.leader_grpc, " (term ", l.term, ")");
      no.mutable_registered()->set_reason(why);
      stream->Write(no);
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, why);
    }
    auto conn = std::make_shared<NodeConn>();
    conn->node_id = r.node_id();
    conn->ctx = ctx;
    conn->stream = stream;
    c_.OnRegister(conn, r);
    v1::NodeMessage msg;
    while (stream->Read(&msg)) {
      if (msg.has_report()) c_.OnReport(conn->node_id, msg.report());
    }
    c_.OnSessionEnd(conn);
    return grpc::Status::OK;
  }

 private:
  Coordinator& c_;
};

// ---- the coordinator ---------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Create(CoordinatorOptions options,
                                                                 common::Clock& clock) {
  std::string path = options.rules_file.empty() ? common::RulesBook::DefaultPath() : options.rules_file;
  absl::StatusOr<common::RulesBook> rules = common::RulesBook::LoadFile(path);
  if (!rules.ok()) return rules.status();
  for (const std::string& l : options.limits) {
    absl::Status st = rules->ApplyLimitOverride(l);
    if (!st.ok()) return st;
  }
  return std::unique_ptr<Coordinator>(new Coordinator(std::move(options), clock, std::move(*rules)));
}

Coordinator::Coordinator(CoordinatorOptions options, common::Clock& clock, common::RulesBook rules)
    : options_(std::move(options)), clock_(clock) {
  SchedulerOptions so = options_.scheduler;
  so.await_published_limits = options_.exchange_info_refresh > absl::ZeroDuration();
  scheduler_ = std::make_unique<Scheduler>(std::move(rules), clock_, so);
  scheduler_->SetWakeupHook([this](absl::Time) {
    absl::MutexLock lock(&mu_);
    wakeup_moved_ = true;
  });
  node_client_ = std::make_unique<GrpcNodeClient>(clock_);
  RouterOptions ro;
  ro.dispatch_margin = options_.dispatch_margin;
  // Without gossip there is one coordinator: it leads term 1, with no id
  // (nodes accept any coordinator at that term).
  ro.term = options_.membership.enabled() ? 0 : 1;
  ro.coordinator_id = options_.membership.enabled() ? options_.name : "";
  ro.on_rejection = [this](const std::string& exchange) { RequestRefresh(exchange); };
  ro.on_stale_term = [this](int64_t highest) {
    absl::MutexLock lock(&mu_);
    if (election_) election_->ObserveTerm(highest);
  };
  ro.on_account = [this](const std::string& exchange, const std::string& account) {
    bool added;
    {
      absl::MutexLock lock(&leases_mu_);
      added = leases_->AddAccount(exchange, account);
    }
    if (added) LeaseTick();  // its shares go out before the request waits long
  };
  router_ = std::make_unique<Router>(*scheduler_, *node_client_, ro);
  leases_ = std::make_unique<AccountLeases>(scheduler_->rules(), options_.leases);
  // Without gossip this coordinator leads term 1 from the start.
  if (!options_.membership.enabled()) leases_->TakeLead(clock_.Now(), /*fresh=*/true);
  client_service_ = std::make_unique<ClientService>(*this);
  control_service_ = std::make_unique<ControlService>(*this);
}

Coordinator::~Coordinator() { Shutdown(); }

absl::Status Coordinator::Start() {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::string listen = options_.listen.ToString();
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port_);
  builder.RegisterService(client_service_.get());
  builder.RegisterService(control_service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) return absl::UnavailableError(absl::StrCat("cannot listen on ", listen));
  const common::gossip::MembershipConfig& m = options_.membership;
  if (!options_.advertise.empty()) {
    advertise_ = options_.advertise;
  } else {
    std::string host = options_.listen.host;
    if (host.empty() || host == "0.0.0.0") {
      host = m.enabled() ? m.gossip.substr(0, m.gossip.find(':')) : "127.0.0.1";
    }
    advertise_ = absl::StrCat(host, ":", port_);
  }
  if (m.enabled()) {
    {
      absl::MutexLock lock(&mu_);
      election_ = std::make_unique<Election>(options_.name, advertise_, options_.leader_hold_down);
    }
    common::gossip::AgentOptions ao = common::gossip::ToAgentOptions(m, options_.name);
    ao.on_event = [this](const common::gossip::MemberEvent& e) {
      absl::MutexLock lock(&mu_);
      events_.push_back(e);
    };
    absl::StatusOr<std::unique_ptr<common::gossip::GossipAgent>> agent =
        common::gossip::GossipAgent::Start(std::move(ao));
    if (!agent.ok()) {
      server_->Shutdown();
      server_.reset();
      return agent.status();
    }
    gossip_ = std::move(*agent);
    gossip_->SetRecord(common::gossip::kRoleRecord, "coordinator");
    gossip_->SetRecord(common::gossip::kGrpcRecord, advertise_);
    gossip_->SetRecord(common::gossip::kVersionRecord, MP_VERSION);
    gossip_->SetRecord(common::gossip::kTermRecord, "0");
    common::Log(common::LogLevel::kInfo, "coordinator",
                absl::StrCat(options_.name, ": gossip at ", gossip_->addr(), ", serving at ", advertise_));
    gossip_thread_ = std::thread([this] { GossipLoop(); });
  } else {
    absl::MutexLock lock(&mu_);
    lead_.leading = true;
    lead_.term = 1;
    lead_.leader = options_.name;
    lead_.leader_grpc = advertise_;
    led_since_ = absl::InfinitePast();
  }
  timer_thread_ = std::thread([this] { TimerLoop(); });
  refresh_thread_ = std::thread([this] { RefreshLoop(); });
  return absl::OkStatus();
}

std::string Coordinator::gossip_address() const { return gossip_ ? gossip_->addr() : ""; }

Leadership Coordinator::leadership() {
  absl::MutexLock lock(&mu_);
  return lead_;
}

// ---- gossip and leadership --------------------------------------------------------

void Coordinator::GossipLoop() {
  while (true) {
    std::deque<common::gossip::MemberEvent> events;
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(+[](Coordinator* c) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                             return c->stopping_ || !c->events_.empty();
                                           }, this),
                           absl::Milliseconds(50));
      if (stopping_) return;
      events.swap(events_);
    }
    for (const common::gossip::MemberEvent& e : events) OnMemberEvent(e);
    Reelect();
    ExpireHeld();
  }
}

void Coordinator::OnMemberEvent(const common::gossip::MemberEvent& e) {
  namespace g = common::gossip;
  using Kind = g::MemberEvent::Kind;
  if (g::RecordValue(e.member, g::kRoleRecord) != "node") return;
  const std::string& name = e.member.name;
  switch (e.kind) {
    case Kind::kSuspect:
      scheduler_->SetSuspect(name, true);
      common::Log(common::LogLevel::kWarning, "coordinator",
                  absl::StrCat("node ", name, " is suspect (", e.reason, "): no new work until it answers"));
      break;
    case Kind::kAlive:
    case Kind::kJoined:
      scheduler_->SetSuspect(name, false);
      break;
    case Kind::kDead:
    case Kind::kLeft: {
      // A node that restarted is a new member under the old name: the old
      // member's death is not the new one's.
      for (const g::MemberView& m : gossip_->Members()) {
        if (m.name == name && m.id != e.member.id &&
            (m.state == g::MemberState::kAlive || m.state == g::MemberState::kSuspect)) {
          return;
        }
      }
      scheduler_->SetSuspect(name, false);
      node_client_->ForgetNode(name);
      std::shared_ptr<NodeConn> conn;
      {
        absl::MutexLock lock(&mu_);
        auto it = sessions_.find(name);
        if (it != sessions_.end()) conn = it->second;
      }
      if (conn) conn->ctx->TryCancel();
      scheduler_->DisconnectNode(name);
      common::Log(common::LogLevel::kWarning, "coordinator",
                  absl::StrCat("node ", name, e.kind == Kind::kLeft ? " left" : " is dead",
                               e.reason.empty() ? "" : absl::StrCat(" (", e.reason, ")"),
                               ": its in-flight reads go to other nodes"));
      break;
    }
    default:
      break;
  }
}

void Coordinator::Reelect() {
  namespace g = common::gossip;
  std::vector<CoordinatorSeen> others;
  int64_t floor = 0;
  for (const g::MemberView& m : gossip_->Members()) {
    if (m.self) continue;
    std::string role = g::RecordValue(m, g::kRoleRecord);
    bool live = m.state == g::MemberState::kAlive || m.state == g::MemberState::kSuspect;
    int64_t value = 0;
    if (role == "coordinator") {
      CoordinatorSeen c;
      c.name = m.name;
      c.grpc = g::RecordValue(m, g::kGrpcRecord);
      (void)absl::SimpleAtoi(g::RecordValue(m, g::kTermRecord), &c.term);
      c.live = live;
      c.alive = m.state == g::MemberState::kAlive;
      others.push_back(std::move(c));
    } else if (role == "node" && absl::SimpleAtoi(g::RecordValue(m, g::kFenceRecord), &value)) {
      floor = std::max(floor, value);
    }
  }
  Leadership before, now;
  std::vector<std::shared_ptr<NodeConn>> sessions;
  {
    absl::MutexLock lock(&mu_);
    before = lead_;
    now = election_->Update(clock_.Now(), others, floor);
    lead_ = now;
    if (now.claimed_now) led_since_ = clock_.Now();
    if (before.leading && !now.leading) {
      for (auto& [id, c] : sessions_) sessions.push_back(c);
    }
  }
  if (now.claimed_now) {
    {
      absl::MutexLock lock(&leases_mu_);
      leases_->TakeLead(clock_.Now(), /*fresh=*/now.term == 1);
    }
    scheduler_->ForgetLedgers();
    router_->set_term(now.term);
    gossip_->SetRecord(g::kTermRecord, absl::StrCat(now.term));
    common::Log(common::LogLevel::kInfo, "coordinator",
                absl::StrCat(options_.name, " leads term ", now.term, "; nodes register with it"));
  }
  if (before.leading && !now.leading) {
    gossip_->SetRecord(g::kTermRecord, "0");
    // The nodes' sessions end: they find the new leader.
    for (auto& c : sessions) c->ctx->TryCancel();
    common::Log(common::LogLevel::kWarning, "coordinator",
                absl::StrCat(options_.name, " no longer leads (term ", before.term, "): a newer term exists"));
  }
  if (before.leader != now.leader || before.term != now.term || before.leading != now.leading) {
    if (!now.leading && !now.leader.empty()) {
      common::Log(common::LogLevel::kInfo, "coordinator",
                  absl::StrCat("the leader is ", now.leader, " at ", now.leader_grpc, " (term ", now.term, ")"));
    }
    ReleaseHeld();
  }
}

std::shared_ptr<v1::Coordinator::Stub> Coordinator::StubFor(const std::string& address) {
  absl::MutexLock lock(&mu_);
  auto& stub = stubs_[address];
  if (!stub) {
    stub = std::shared_ptr<v1::Coordinator::Stub>(
        v1::Coordinator::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials())));
  }
  return stub;
}

void Coordinator::Route(const v1::ExecuteRequest& req, absl::Time deadline, ExecuteDone done,
                        std::function<bool()> cancelled) {
  Leadership l;
  bool taking_over = false;
  {
    absl::MutexLock lock(&mu_);
    l = lead_;
    taking_over = l.leading && clock_.Now() - led_since_ < options_.takeover_grace;
  }
  auto again = [this, req, deadline, done, cancelled] { Route(req, deadline, done, cancelled); };
  if (l.leading && !taking_over) {
    router_->Execute(req, deadline, std::move(done), std::move(cancelled));
  } else if (l.leading) {
    // Just took over: nodes are still registering. A request that finds no
    // node waits for them rather than failing.
    router_->Execute(
        req, deadline,
        [this, deadline, done, again](absl::StatusOr<v1::ExecuteResponse> r) {
          if (r.ok() || r.status().code() != absl::StatusCode::kUnavailable) {
            done(std::move(r));
            return;
          }
          Hold(deadline, again, done);
        },
        cancelled);
  } else if (!l.leader_grpc.empty()) {
    Forward(req, deadline, l.leader_grpc, std::move(done), std::move(cancelled));
  } else {
    Hold(deadline, again, std::move(done));
  }
}

void Coordinator::Forward(const v1::ExecuteRequest& req, absl::Time deadline, const std::string& leader,
                          ExecuteDone done, std::function<bool()> cancelled) {
  struct Call {
    grpc::ClientContext ctx;
    v1::ExecuteRequest req;
    v1::ExecuteResponse resp;
  };
  auto call = std::make_shared<Call>();
  call->req = req;
  absl::Duration left = std::max(deadline - clock_.Now(), absl::Milliseconds(1));
  call->ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMicroseconds(left));
  StubFor(leader)->async()->Execute(
      &call->ctx, &call->req, &call->resp,
      [this, call, deadline, done, cancelled](grpc::Status s) {
        if (s.ok()) {
          done(std::move(call->resp));
          return;
        }
        const auto& md = call->ctx.GetServerTrailingMetadata();
        bool answered = md.find("mp-answered-by") != md.end();
        if (!answered && s.error_code() == grpc::StatusCode::UNAVAILABLE && IdempotentRequest(call->req) &&
            !(cancelled && cancelled())) {
          // The leader went away under the call: wait for the next one.
          Hold(deadline, [this, call, deadline, done, cancelled] { Route(call->req, deadline, done, cancelled); },
               done);
          return;
        }
        absl::Status out = ToAbsl(s);
        auto retry = md.find("retry-after-ms");
        int64_t ms = 0;
        if (retry != md.end() && absl::SimpleAtoi(absl::string_view(retry->second.data(), retry->second.size()), &ms)) {
          out = WithRetryAfter(out, absl::Milliseconds(ms));
        }
        done(std::move(out));
      });
}

void Coordinator::Hold(absl::Time deadline, std::function<void()> retry, ExecuteDone done) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      held_.push_back({deadline, std::move(retry), std::move(done), clock_.Now() + absl::Milliseconds(250)});
      return;
    }
  }
  done(absl::UnavailableError("the coordinator is shutting down"));
}

void Coordinator::ReleaseHeld() {
  std::vector<Held> held;
  {
    absl::MutexLock lock(&mu_);
    held.swap(held_);
  }
  for (Held& h : held) h.retry();
}

void Coordinator::ExpireHeld() {
  std::vector<Held> expired, retry;
  {
    absl::MutexLock lock(&mu_);
    absl::Time now = clock_.Now();
    std::vector<Held> keep;
    for (Held& h : held_) {
      if (now >= h.deadline - options_.dispatch_margin) {
        expired.push_back(std::move(h));
      } else if (now >= h.retry_at) {
        retry.push_back(std::move(h));
      } else {
        keep.push_back(std::move(h));
      }
    }
    held_.swap(keep);
  }
  for (Held& h : expired) {
    h.done(WithRetryAfter(absl::UnavailableError("no leader coordinator with a node for it before the deadline"),
                          absl::Milliseconds(500)));
  }
  for (Held& h : retry) h.retry();
}

void Coordinator::TimerLoop() {
  while (true) {
    LeaseTick();
    absl::Time next = scheduler_->Poll();
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    if (wakeup_moved_) {
      wakeup_moved_ = false;
      continue;
    }
    // Leases are looked at 4x a second (renewals, lapsed shares).
    absl::Duration wait = std::min(next - clock_.Now(), absl::Milliseconds(250));
    if (wait > absl::ZeroDuration()) {
      mu_.AwaitWithTimeout(absl::Condition(+[](Coordinator* c) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                             return c->stopping_ || c->wakeup_moved_;
                                           }, this),
                           wait);
    }
    wakeup_moved_ = false;
  }
}

void Coordinator::RequestRefresh(const std::string& exchange) {
  const common::ExchangeRules* rules = scheduler_->rules().Find(exchange);
  if (rules == nullptr || !rules->published_limits()) return;
  absl::MutexLock lock(&mu_);
  refresh_now_ = true;
}

void Coordinator::RefreshLoop() {
  std::set<std::string> done_once;
  std::map<std::string, absl::Time> first_ready;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(+[](Coordinator* c) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                             return c->stopping_ || c->refresh_now_;
                                           }, this),
                           absl::Seconds(1));
      if (stopping_) return;
    }
    bool requested = false;
    bool periodic = false;
    {
      absl::MutexLock lock(&mu_);
      absl::Time now = clock_.Now();
      // A 429 asks for a refresh; at most one every 5 s.
      requested = refresh_now_ && now - last_refresh_ >= absl::Seconds(5);
      if (requested || now - last_refresh_ >= absl::Seconds(5)) refresh_now_ = false;
      periodic = options_.exchange_info_refresh > absl::ZeroDuration() &&
                 now - last_refresh_ >= options_.exchange_info_refresh;
    }
    std::set<std::string> served;
    for (const NodeSnapshot& n : scheduler_->Snapshot().nodes) {
      if (n.state != "active") continue;
      served.insert(n.ready.begin(), n.ready.end());
    }
    for (const std::string& exchange : served) {
      absl::Time at = first_ready.emplace(exchange, clock_.Now()).first->second;
      if (!scheduler_->LimitsConfirmed(exchange) && clock_.Now() - at >= options_.limits_wait) {
        common::Log(common::LogLevel::kWarning, "coordinator",
                    absl::StrCat(exchange, ": no published limits after ",
                                 absl::FormatDuration(options_.limits_wait),
                                 "; using the rules' figures"));
        scheduler_->ConfirmLimits(exchange);
      }
    }
    bool any = false;
    for (const std::string& exchange : scheduler_->rules().ExchangeNames()) {
      const common::ExchangeRules& rules = *scheduler_->rules().Find(exchange);
      if (!rules.published_limits() || !served.count(exchange)) continue;
      bool first = !done_once.count(exchange) && options_.exchange_info_refresh > absl::ZeroDuration();
      if (!first && !periodic && !requested) continue;
      any = true;
      v1::ExecuteRequest req;
      req.set_exchange(exchange);
      req.set_method(rules.published_limits()->method);
      req.set_path(rules.published_limits()->path);
      req.set_priority(1000);
      struct Pending {
        absl::Notification finished;
        absl::StatusOr<v1::ExecuteResponse> result;
      };
      auto pending = std::make_shared<Pending>();
      router_->Execute(
          req, clock_.Now() + absl::Seconds(30),
          [pending](absl::StatusOr<v1::ExecuteResponse> r) {
            pending->result = std::move(r);
            pending->finished.Notify();
          },
          nullptr, /*limits_probe=*/true);
      while (!pending->finished.WaitForNotificationWithTimeout(absl::Milliseconds(200))) {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
      }
      absl::StatusOr<v1::ExecuteResponse>& result = pending->result;
      if (!result.ok() || result->http_status() != 200) {
        common::Log(common::LogLevel::kWarning, "coordinator",
                    absl::StrCat(exchange, " published limits: ",
                                 result.ok() ? absl::StrCat("HTTP ", result->http_status())
                                             : std::string(result.status().message())));
        continue;
      }
      auto limits = ParsePublishedLimits(rules, result->body());
      if (!limits.ok()) {
        common::Log(common::LogLevel::kWarning, "coordinator", std::string(limits.status().message()));
        continue;
      }
      done_once.insert(exchange);
      bool changed = false;
      for (const auto& [pool, capacity] : *limits) {
        int index = rules.PoolIndex(pool);
        if (rules.pools()[index].capacity == capacity) continue;
        common::Log(common::LogLevel::kInfo, "coordinator",
                    absl::StrCat(exchange, " publishes ", pool, " = ", capacity, " (was ",
                                 rules.pools()[index].capacity, ")"));
        (void)scheduler_->ApplyLimit(exchange, pool, capacity);
        changed = true;
      }
      if (changed) PushLimits();
      scheduler_->ConfirmLimits(exchange);
    }
    if (any) {
      absl::MutexLock lock(&mu_);
      last_refresh_ = clock_.Now();
    }
  }
}

void Coordinator::PushLimits() {
  v1::CoordinatorMessage msg;
  for (const auto& [exchange, pool, capacity] : scheduler_->Limits()) {
    v1::PoolLimit* l = msg.mutable_limits()->add_pools();
    l->set_exchange(exchange);
    l->set_pool(pool);
    l->set_capacity(capacity);
  }
  std::vector<std::shared_ptr<NodeConn>> conns;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, c] : sessions_) conns.push_back(c);
  }
  for (auto& c : conns) c->Write(msg);
}

void Coordinator::PushDrain(const std::string& node_id, bool draining) {
  std::shared_ptr<NodeConn> conn;
  {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(node_id);
    if (it != sessions_.end()) conn = it->second;
  }
  if (!conn) return;
  v1::CoordinatorMessage msg;
  msg.mutable_drain()->set_draining(draining);
  conn->Write(msg);
}

void Coordinator::ApplyEvents(const std::string& node_id,
                              const google::protobuf::RepeatedPtrField<v1::UsageEvent>& events) {
  for (const v1::UsageEvent& e : events) {
    const common::ExchangeRules* rules = scheduler_->rules().Find(e.exchange());
    if (rules == nullptr) continue;
    common::Cost cost;
    for (const v1::PoolCharge& c : e.charges()) {
      int index = rules->PoolIndex(c.pool());
      if (index >= 0) cost.charges.push_back({index, c.units()});
    }
    std::optional<std::pair<std::string, int64_t>> observed;
    if (e.observed_used() >= 0 && !e.observed_pool().empty()) {
      observed = std::make_pair(e.observed_pool(), e.observed_used());
    }
    scheduler_->ApplyUsage(node_id, e.exchange(), cost, absl::FromUnixMicros(e.sent_unix_us()),
                           absl::FromUnixMicros(e.replied_unix_us()), observed);
  }
}

void Coordinator::OnRegister(const std::shared_ptr<NodeConn>& conn, const v1::Register& r) {
  std::vector<std::string> exchanges(r.exchanges().begin(), r.exchanges().end());
  scheduler_->UpsertNode(r.node_id(), r.egress_ip(), r.grpc_address(), r.version(), exchanges);
  node_client_->SetNode(r.node_id(), r.grpc_address());
  std::vector<NodeClock> clocks;
  for (const v1::ClockEstimate& c : r.clocks()) {
    clocks.push_back({c.exchange(), absl::Microseconds(c.offset_us()), absl::Microseconds(c.uncertainty_us())});
  }
  scheduler_->SetNodeClocks(r.node_id(), clocks);
  std::map<std::string, std::vector<std::pair<std::string, int64_t>>> usage;
  for (const v1::PoolUsage& u : r.usage()) usage[u.exchange()].emplace_back(u.pool(), u.used());
  std::map<std::string, std::vector<Scheduler::RecentSend>> recent;
  for (const v1::UsageEvent& e : r.recent()) {
    const common::ExchangeRules* rules = scheduler_->rules().Find(e.exchange());
    if (rules == nullptr) continue;
    Scheduler::RecentSend send;
    for (const v1::PoolCharge& c : e.charges()) {
      int index = rules->PoolIndex(c.pool());
      if (index >= 0) send.cost.charges.push_back({index, c.units()});
    }
    send.sent_ex = absl::FromUnixMicros(e.sent_unix_us());
    send.replied_ex = absl::FromUnixMicros(e.replied_unix_us());
    recent[e.exchange()].push_back(std::move(send));
  }
  for (const auto& [exchange, pools] : usage) {
    scheduler_->SeedUsage(r.node_id(), exchange, pools, recent[exchange], r.recent_complete());
  }
  ApplyEvents(r.node_id(), r.events());
  for (const v1::Ban& b : r.bans()) {
    scheduler_->Park(r.node_id(), b.exchange(), absl::FromUnixMillis(b.until_ms()), b.kind());
  }
  {
    // The leases it still holds (none: a new process, or they lapsed).
    std::vector<LeaseGrant> held;
    for (const v1::AccountLease& l : r.leases()) {
      const common::ExchangeRules* rules = scheduler_->rules().Find(l.exchange());
      if (rules == nullptr || rules->PoolIndex(l.pool()) < 0) continue;
      LeaseGrant g;
      g.key = {l.exchange(), l.account(), rules->PoolIndex(l.pool())};
      g.units = l.units();
      g.version = l.version();
      for (const v1::LeaseHolder& h : l.holders()) g.holders.emplace_back(h.node_id(), h.units());
      for (const v1::LeaseFreeing& f : l.freeing()) {
        g.freeing.push_back({f.id(), f.units(), absl::Milliseconds(f.ms_left())});
      }
      held.push_back(std::move(g));
    }
    absl::MutexLock lock(&leases_mu_);
    leases_->Registered(clock_.Now(), r.node_id(), held);
  }
  std::shared_ptr<NodeConn> old;
  {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(r.node_id());
    if (it != sessions_.end()) old = it->second;
    sessions_[r.node_id()] = conn;
  }
  if (old) old->ctx->TryCancel();  // a node that reconnected: its old session is over

  v1::CoordinatorMessage welcome;
  v1::Registered* reg = welcome.mutable_registered();
  reg->set_accepted(true);
  reg->set_term(router_->term());
  if (gossip_) reg->set_coordinator_id(options_.name);
  for (const auto& [exchange, pool, capacity] : scheduler_->Limits()) {
    v1::PoolLimit* l = reg->mutable_limits()->add_pools();
    l->set_exchange(exchange);
    l->set_pool(pool);
    l->set_capacity(capacity);
  }
  for (const auto& [exchange, url] : options_.exchange_urls) {
    v1::ExchangeEndpoint* e = reg->add_endpoints();
    e->set_exchange(exchange);
    e->set_rest_url(url);
    auto ws = options_.ws_urls.find(exchange);
    if (ws != options_.ws_urls.end()) e->set_ws_url(ws->second);
  }
  for (const NodeSnapshot& n : scheduler_->Snapshot().nodes) {
    if (n.node_id == r.node_id()) reg->set_draining(n.state == "draining");
  }
  conn->Write(welcome);
  common::Log(common::LogLevel::kInfo, "coordinator",
              absl::StrCat("node ", r.node_id(), " registered: egress ", r.egress_ip(), ", dispatch at ",
                           r.grpc_address(), ", ", exchanges.size(), " exchanges"));
  LeaseTick();
  ReleaseHeld();  // requests that found no node may find this one
}

void Coordinator::OnReport(const std::string& node_id, const v1::UsageReport& r) {
  ApplyEvents(node_id, r.events());
  for (const v1::Ban& b : r.bans()) {
    scheduler_->Park(node_id, b.exchange(), absl::FromUnixMillis(b.until_ms()), b.kind());
  }
  std::vector<NodeClock> clocks;
  for (const v1::ClockEstimate& c : r.clocks()) {
    clocks.push_back({c.exchange(), absl::Microseconds(c.offset_us()), absl::Microseconds(c.uncertainty_us())});
  }
  if (!clocks.empty()) scheduler_->SetNodeClocks(node_id, clocks);
}

void Coordinator::OnSessionEnd(const std::shared_ptr<NodeConn>& conn) {
  conn->Close();
  bool current = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(conn->node_id);
    if (it != sessions_.end() && it->second == conn) {
      sessions_.erase(it);
      current = true;
    }
  }
  if (current) {
    scheduler_->DisconnectNode(conn->node_id);
    common::Log(common::LogLevel::kWarning, "coordinator", absl::StrCat("node ", conn->node_id, " disconnected"));
  }
}

void Coordinator::LeaseTick() {
  absl::MutexLock lease_lock(&leases_mu_);
  if (leases_->empty()) return;
  Leadership l;
  std::map<std::string, std::shared_ptr<NodeConn>> sessions;
  {
    absl::MutexLock lock(&mu_);
    l = lead_;
    sessions = sessions_;
  }
  if (gossip_ && !l.leading) return;
  std::map<std::string, std::set<std::string>> in_view;
  SchedulerSnapshot snapshot = scheduler_->Snapshot();
  for (const NodeSnapshot& n : snapshot.nodes) {
    if (n.state == "disconnected" || !sessions.contains(n.node_id)) continue;
    for (const std::string& e : n.ready) in_view[e].insert(n.node_id);
  }
  AccountLeases::Usage used;
  for (const NodeSnapshot& n : snapshot.nodes) {
    for (const NodeSnapshot::Lease& lease : n.leases) {
      for (const common::BudgetBook::PoolView& p : lease.pools) {
        used[{n.node_id, LeaseKey{lease.exchange, lease.account, p.pool}}] = p.used;
      }
    }
  }
  absl::Time now = clock_.Now();
  std::map<std::string, std::vector<LeaseGrant>> grants = leases_->Tick(now, in_view, used);
  if (grants.empty()) return;
  Scheduler::LeaseShares shares;
  for (const auto& [holder, units] : leases_->Shares()) {
    const auto& [node, key] = holder;
    shares[{key.exchange, key.account, node}][key.pool] = units;
  }
  scheduler_->SetLeaseShares(shares);
  for (const auto& [node, list] : grants) {
    auto conn = sessions.find(node);
    if (conn == sessions.end()) continue;
    v1::CoordinatorMessage m;
    v1::Leases* out = m.mutable_leases();
    out->set_term(router_->term());
    if (gossip_) out->set_coordinator_id(options_.name);
    out->set_duration_ms(absl::ToInt64Milliseconds(leases_->options().duration));
    for (const LeaseGrant& g : list) {
      v1::AccountLease* a = out->add_leases();
      a->set_exchange(g.key.exchange);
      a->set_account(g.key.account);
      a->set_pool(scheduler_->rules().Find(g.key.exchange)->pools()[g.key.pool].name);
      a->set_units(g.units);
      a->set_version(g.version);
      for (const auto& [holder, units] : g.holders) {
        v1::LeaseHolder* h = a->add_holders();
        h->set_node_id(holder);
        h->set_units(units);
      }
      for (const Freeing& f : g.freeing) {
        v1::LeaseFreeing* out = a->add_freeing();
        out->set_id(f.id);
        out->set_units(f.units);
        out->set_ms_left(absl::ToInt64Milliseconds(absl::Ceil(f.left, absl::Milliseconds(1))));
      }
    }
    conn->second->Write(m);
  }
}

void Coordinator::Wait() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&stopping_));
}

void Coordinator::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && server_ == nullptr) return;
    stopping_ = true;
  }
  if (refresh_thread_.joinable()) refresh_thread_.join();
  if (gossip_thread_.joinable()) gossip_thread_.join();
  if (gossip_) {
    gossip_->Leave();  // the others elect at once rather than after a death
    gossip_->Stop();
  }
  std::vector<Held> held;
  {
    absl::MutexLock lock(&mu_);
    held.swap(held_);
  }
  for (Held& h : held) h.done(absl::UnavailableError("the coordinator is shutting down"));
  {
    // Node sessions block in Read: end them so the server can stop at once.
    absl::MutexLock lock(&mu_);
    for (auto& [id, conn] : sessions_) conn->ctx->TryCancel();
  }
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_.reset();
  }
  if (timer_thread_.joinable()) timer_thread_.join();
}

}  // namespace marketprism::coordinator
