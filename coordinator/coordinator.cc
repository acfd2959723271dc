#include "coordinator/coordinator.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <chrono>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/config.h"
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
      grpc::ClientContext ctx;
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
    st->ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMicroseconds(left));
    stub->async()->Dispatch(&st->ctx, &st->req, &st->resp, [st](grpc::Status s) {
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
    c_.router_->Execute(
        *req, c_.clock_.Now() + left,
        [ctx, reactor, resp](absl::StatusOr<v1::ExecuteResponse> r) {
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

  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* ctx, const v1::GetStatusRequest*,
                                      v1::GetStatusResponse* resp) override {
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
      for (const LaneStatus& l : n.lanes) {
        if (l.parked_until <= now) continue;
        v1::Ban* b = ns->add_bans();
        b->set_exchange(l.exchange);
        b->set_kind(l.park_kind);
        b->set_until_ms(absl::ToUnixMillis(l.parked_until));
      }
    }
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* GetHealth(grpc::CallbackServerContext* ctx, const v1::GetHealthRequest*,
                                      v1::GetHealthResponse* resp) override {
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
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* ListNodes(grpc::CallbackServerContext* ctx, const v1::ListNodesRequest*,
                                      v1::ListNodesResponse* resp) override {
    for (const NodeSnapshot& n : c_.scheduler_->Snapshot().nodes) FillNodeInfo(n, resp->add_nodes());
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* DrainNode(grpc::CallbackServerContext* ctx, const v1::DrainNodeRequest* req,
                                      v1::DrainNodeResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
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
  ro.term = term_;
  ro.on_rejection = [this](const std::string& exchange) { RequestRefresh(exchange); };
  router_ = std::make_unique<Router>(*scheduler_, *node_client_, ro);
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
  timer_thread_ = std::thread([this] { TimerLoop(); });
  refresh_thread_ = std::thread([this] { RefreshLoop(); });
  return absl::OkStatus();
}

void Coordinator::TimerLoop() {
  while (true) {
    absl::Time next = scheduler_->Poll();
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    if (wakeup_moved_) {
      wakeup_moved_ = false;
      continue;
    }
    absl::Duration wait = std::min(next - clock_.Now(), absl::Seconds(1));
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
  for (const auto& [exchange, pools] : usage) scheduler_->SeedUsage(r.node_id(), exchange, pools);
  ApplyEvents(r.node_id(), r.events());
  for (const v1::Ban& b : r.bans()) {
    scheduler_->Park(r.node_id(), b.exchange(), absl::FromUnixMillis(b.until_ms()), b.kind());
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
  reg->set_term(term_);
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
