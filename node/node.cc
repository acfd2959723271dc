#include "node/node.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/gossip/membership.h"
#include "common/log.h"
#include "common/net/curl_http_client.h"
#include "marketprism/v1/node.grpc.pb.h"
#include "node/proxy.h"

#ifndef MP_VERSION
#define MP_VERSION "dev"
#endif

namespace marketprism::node {

namespace v1 = ::marketprism::v1;

namespace {

int64_t UnixMicros(absl::Time t) { return absl::ToUnixMicros(t); }

void FillUsage(const std::string& exchange, const std::string& ip,
               const std::vector<common::BudgetBook::PoolView>& views,
               google::protobuf::RepeatedPtrField<v1::PoolUsage>* out) {
  for (const auto& v : views) {
    v1::PoolUsage* u = out->Add();
    u->set_exchange(exchange);
    u->set_pool(v.name);
    u->set_scope_key(ip);
    u->set_window(std::string(common::WindowKindName(v.window)));
    u->set_used(v.used);
    u->set_reserved(v.reserved);
    u->set_capacity(v.capacity);
    if (v.window_start != absl::InfinitePast()) u->set_window_start_ms(absl::ToUnixMillis(v.window_start));
  }
}

void FillBan(const std::string& exchange, const Park& p, v1::Ban* b) {
  b->set_exchange(exchange);
  b->set_kind(p.kind);
  b->set_until_ms(absl::ToUnixMillis(p.until));
  b->set_http_status(p.http_status);
}

}  // namespace

// ---- the session with the coordinator ---------------------------------------------

class Node::Session {
 public:
  explicit Session(Node& node) : node_(node) {}
  ~Session() { Stop(); }

  void Start() {
    thread_ = std::thread([this] { Loop(); });
  }

  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      stop_ = true;
      if (ctx_) ctx_->TryCancel();
    }
    if (thread_.joinable()) thread_.join();
  }

  void Nudge() {
    absl::MutexLock lock(&mu_);
    nudge_ = true;
  }

  // Gossip changed what it knows of a coordinator: check who leads.
  void CheckLeader() {
    absl::MutexLock lock(&mu_);
    leader_check_ = true;
  }

 private:
  bool Stopping() {
    absl::MutexLock lock(&mu_);
    return stop_;
  }

  void Loop() {
    absl::Duration backoff = absl::Milliseconds(100);
    while (!Stopping()) {
      absl::Time started = node_.clock_.Now();
      RunOnce();
      if (node_.clock_.Now() - started > absl::Seconds(5)) backoff = absl::Milliseconds(100);
      absl::MutexLock lock(&mu_);
      if (!redirect_.empty()) {
        backoff = absl::Milliseconds(100);
        continue;  // a follower named the leader: go there now
      }
      // News of a leader from gossip ends the wait.
      mu_.AwaitWithTimeout(absl::Condition(+[](Session* s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                             return s->stop_ || s->leader_check_;
                                           }, this),
                           std::min(backoff, node_.options_.reconnect_max));
      leader_check_ = false;
      backoff = std::min(backoff * 2, node_.options_.reconnect_max);
    }
  }

  // Where to register: a leader a follower named, else the leader gossip
  // shows, else the configured coordinators in turn.
  std::string PickTarget() {
    {
      absl::MutexLock lock(&mu_);
      if (!redirect_.empty()) return std::exchange(redirect_, "");
    }
    if (std::optional<LeaderClaim> leader = node_.GossipLeader()) {
      if (!leader->grpc.empty()) return leader->grpc;
    }
    const auto& list = node_.options_.coordinators;
    if (list.empty()) return "";
    return list[next_target_++ % list.size()].ToString();
  }

  // Whether the session with (term, coordinator) should end: a newer claim
  // has been seen (from gossip or a dispatch).
  bool Superseded(int64_t term, const std::string& coordinator) {
    (void)node_.GossipLeader();  // raises the fence on a newer claim
    auto [highest, holder] = node_.fence_.highest();
    return highest > term || (highest == term && !holder.empty() && !coordinator.empty() && holder != coordinator);
  }

  void RunOnce() {
    std::string target = PickTarget();
    if (target.empty()) return;  // no coordinator known yet: gossip will tell
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10'000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5'000);
    auto channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
    auto stub = v1::NodeControl::NewStub(channel);
    auto ctx = std::make_shared<grpc::ClientContext>();
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      ctx_ = ctx;
    }
    auto stream = stub->Session(ctx.get());
    v1::NodeMessage hello;
    *hello.mutable_register_() = BuildRegister();
    v1::CoordinatorMessage first;
    if (!stream->Write(hello) || !stream->Read(&first) || !first.has_registered()) {
      Finish(*stream, ctx);
      return;
    }
    const v1::Registered& reg = first.registered();
    if (!reg.accepted()) {
      bool redirected = !reg.leader_address().empty() && reg.leader_address() != target;
      common::Log(redirected ? common::LogLevel::kInfo : common::LogLevel::kError, "node",
                  absl::StrCat(target, " refused registration: ", reg.reason()));
      if (redirected) {
        absl::MutexLock lock(&mu_);
        redirect_ = reg.leader_address();
      }
      Finish(*stream, ctx);
      return;
    }
    if (!node_.AdmitTerm(reg.term(), reg.coordinator_id())) {
      auto [highest, holder] = node_.fence_.highest();
      common::Log(common::LogLevel::kWarning, "node",
                  absl::StrCat(target, " leads term ", reg.term(), ", but this node has seen term ", highest,
                               holder.empty() ? "" : absl::StrCat(" of ", holder), ": not its node"));
      Finish(*stream, ctx);
      return;
    }
    const int64_t term = reg.term();
    const std::string leader = reg.coordinator_id();
    common::Log(common::LogLevel::kInfo, "node",
                absl::StrCat("registered with ", leader.empty() ? target : leader, " at ", target, " (term ",
                             term, ")"));
    Apply(first);
    std::atomic<bool> broken{false};
    std::thread reader([&] {
      v1::CoordinatorMessage msg;
      while (stream->Read(&msg)) Apply(msg);
      broken.store(true);
      absl::MutexLock lock(&mu_);
      nudge_ = true;  // wake the writer
    });
    while (true) {
      bool report_now = false, check = false;
      {
        absl::MutexLock lock(&mu_);
        mu_.AwaitWithTimeout(absl::Condition(+[](Session* s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                               return s->stop_ || s->nudge_ || s->leader_check_;
                                             }, this),
                             node_.options_.report_interval);
        if (stop_) break;
        check = leader_check_;
        report_now = nudge_ || !leader_check_;  // nudged, or the interval passed
        nudge_ = false;
        leader_check_ = false;
      }
      if (broken.load()) break;
      if ((check || report_now) && Superseded(term, leader)) {
        auto [highest, holder] = node_.fence_.highest();
        common::Log(common::LogLevel::kInfo, "node",
                    absl::StrCat("term ", highest, holder.empty() ? "" : absl::StrCat(" of ", holder),
                                 " supersedes term ", term, ": leaving ", target));
        break;
      }
      if (!report_now) continue;
      v1::NodeMessage report;
      *report.mutable_report() = BuildReport();
      if (!stream->Write(report)) break;
      node_.PublishUsage();
    }
    ctx->TryCancel();
    reader.join();
    Finish(*stream, ctx);
    common::Log(common::LogLevel::kWarning, "node", absl::StrCat("lost the coordinator at ", target));
  }

  template <typename Stream>
  void Finish(Stream& stream, const std::shared_ptr<grpc::ClientContext>& ctx) {
    ctx->TryCancel();
    (void)stream.Finish();
    absl::MutexLock lock(&mu_);
    ctx_.reset();
  }

  void Apply(const v1::CoordinatorMessage& msg) {
    auto apply_limits = [&](const v1::Limits& limits) {
      for (const v1::PoolLimit& l : limits.pools()) {
        if (ExchangeLane* lane = node_.Lane(l.exchange())) {
          (void)lane->SetCapacity(l.pool(), l.capacity());
        }
      }
    };
    if (msg.has_registered()) {
      const v1::Registered& r = msg.registered();
      apply_limits(r.limits());
      std::map<std::string, std::string> offered;
      for (const v1::ExchangeEndpoint& e : r.endpoints()) offered[e.exchange()] = e.rest_url();
      for (auto& [exchange, lane] : node_.lanes_) {
        if (node_.options_.exchange_urls.count(exchange)) continue;  // our own setting wins
        auto it = offered.find(exchange);
        std::string url = it != offered.end() ? it->second : lane->rules().rest_base();
        if (lane->rest_url() != url) node_.ConfigureEndpoint(exchange, url);
      }
    } else if (msg.has_limits()) {
      apply_limits(msg.limits());
    } else if (msg.has_leases()) {
      node_.ApplyLeases(msg.leases());
    } else if (msg.has_drain()) {
      common::Log(common::LogLevel::kInfo, "node",
                  msg.drain().draining() ? "drained by the coordinator" : "back in rotation");
    }
  }

  template <typename Msg>
  void FillCommon(Msg* m) {
    for (auto& [exchange, lane] : node_.lanes_) {
      ClockView c = lane->clock();
      if (c.measured) {
        v1::ClockEstimate* e = m->add_clocks();
        e->set_exchange(exchange);
        e->set_offset_us(absl::ToInt64Microseconds(c.offset));
        e->set_uncertainty_us(absl::ToInt64Microseconds(c.uncertainty));
      }
      if (std::optional<Park> p = lane->ActivePark()) FillBan(exchange, *p, m->add_bans());
      for (const UsageEventRecord& ev : lane->TakeEvents()) {
        v1::UsageEvent* u = m->add_events();
        u->set_exchange(exchange);
        for (const common::Cost::Charge& c : ev.cost.charges) {
          v1::PoolCharge* pc = u->add_charges();
          pc->set_pool(lane->rules().pools()[c.pool].name);
          pc->set_units(c.units);
        }
        u->set_sent_unix_us(UnixMicros(ev.sent_ex));
        u->set_replied_unix_us(UnixMicros(ev.replied_ex));
        u->set_observed_used(ev.observed ? ev.observed->second : -1);
        if (ev.observed) u->set_observed_pool(ev.observed->first);
      }
      FillUsage(exchange, node_.options_.egress_ip, lane->Usage(), m->mutable_usage());
    }
    m->set_node_time_unix_us(UnixMicros(node_.clock_.Now()));
  }

  v1::Register BuildRegister() {
    v1::Register r;
    r.set_node_id(node_.options_.node_id);
    r.set_egress_ip(node_.options_.egress_ip);
    r.set_grpc_address(node_.advertise_);
    r.set_version(MP_VERSION);
    for (auto& [exchange, lane] : node_.lanes_) r.add_exchanges(exchange);
    r.set_highest_term(node_.fence_.highest().first);
    FillCommon(&r);
    {
      // The leases still running, with the allocation they came from, so
      // a new leader shares out no account twice.
      absl::MutexLock lock(&node_.mu_);
      absl::Time now = node_.clock_.Now();
      if (now < node_.leases_expire_) {
        // What the leader was still taking back, counted from when it came.
        int64_t since = absl::ToInt64Milliseconds(now - node_.leases_received_);
        for (const v1::AccountLease& l : node_.leases_.leases()) {
          v1::AccountLease* out = r.add_leases();
          *out = l;
          for (v1::LeaseFreeing& f : *out->mutable_freeing()) f.set_ms_left(std::max<int64_t>(0, f.ms_left() - since));
        }
      }
    }
    for (auto& [exchange, lane] : node_.lanes_) {
      for (const UsageEventRecord& ev : lane->RecentRolling()) {
        v1::UsageEvent* u = r.add_recent();
        u->set_exchange(exchange);
        for (const common::Cost::Charge& c : ev.cost.charges) {
          v1::PoolCharge* pc = u->add_charges();
          pc->set_pool(lane->rules().pools()[c.pool].name);
          pc->set_units(c.units);
        }
        u->set_sent_unix_us(UnixMicros(ev.sent_ex));
        u->set_replied_unix_us(UnixMicros(ev.replied_ex));
        u->set_observed_used(-1);
      }
    }
    r.set_recent_complete(true);
    return r;
  }

  v1::UsageReport BuildReport() {
    v1::UsageReport r;
    FillCommon(&r);
    return r;
  }

  Node& node_;
  std::thread thread_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool nudge_ ABSL_GUARDED_BY(mu_) = false;
  bool leader_check_ ABSL_GUARDED_BY(mu_) = false;
  std::string redirect_ ABSL_GUARDED_BY(mu_);
  size_t next_target_ = 0;  // the session thread's own
  std::shared_ptr<grpc::ClientContext> ctx_ ABSL_GUARDED_BY(mu_);
};

// ---- the Dispatch service --------------------------------------------------------

class Node::Service final : public v1::Node::CallbackService {
 public:
  explicit Service(Node& node) : node_(node) {}

  grpc::ServerUnaryReactor* Dispatch(grpc::CallbackServerContext* ctx,
                                     const v1::DispatchRequest* req,
                                     v1::DispatchResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    absl::Time received = node_.clock_.Now();
    // The exchange round trip blocks: hand it to the worker pool.
    node_.pool_->Schedule([this, ctx, req, resp, reactor, received] {
      Handle(ctx, *req, resp, received);
      resp->set_node_replied_unix_us(UnixMicros(node_.clock_.Now()));
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }

 private:
  void Handle(grpc::CallbackServerContext* ctx, const v1::DispatchRequest& req,
              v1::DispatchResponse* resp, absl::Time received) {
    resp->set_node_received_unix_us(UnixMicros(received));
    resp->set_observed_used(-1);
    if (!node_.AdmitTerm(req.term(), req.coordinator_id())) {
      auto [highest, holder] = node_.fence_.highest();
      resp->set_outcome(v1::DispatchResponse::STALE_TERM);
      resp->set_highest_term(highest);
      resp->set_detail(absl::StrCat("term ", req.term(), " of ", req.coordinator_id(),
                                    " is not the newest this node has seen: term ", highest, " of ", holder));
      return;
    }
    ExchangeLane* lane = node_.Lane(req.exchange());
    if (lane == nullptr) {
      resp->set_outcome(v1::DispatchResponse::NOT_SENT);
      resp->set_detail(absl::StrCat("this node does not serve ", req.exchange()));
      return;
    }
    if (ctx->IsCancelled()) {
      // Never sent late: the caller's deadline passed while it waited here.
      resp->set_outcome(v1::DispatchResponse::NOT_SENT);
      resp->set_detail("the deadline passed before it could be sent");
      return;
    }
    LaneRequest lr;
    lr.method = req.method();
    lr.path = req.path();
    for (const auto& q : req.query()) lr.query.emplace_back(q.key(), q.value());
    lr.body = req.body();
    for (const v1::Header& h : req.headers()) lr.headers.emplace_back(h.name(), h.value());
    LaneResult r = lane->Execute(lr);
    switch (r.outcome) {
      case LaneResult::Outcome::kReplied:
        resp->set_outcome(v1::DispatchResponse::REPLIED);
        break;
      case LaneResult::Outcome::kRefused:
        resp->set_outcome(v1::DispatchResponse::REFUSED);
        resp->set_account_refused(r.account_refusal);
        break;
      case LaneResult::Outcome::kParked:
        resp->set_outcome(v1::DispatchResponse::PARKED);
        break;
      case LaneResult::Outcome::kNotSent:
      case LaneResult::Outcome::kInvalid:
        resp->set_outcome(v1::DispatchResponse::NOT_SENT);
        break;
      case LaneResult::Outcome::kLost:
        resp->set_outcome(v1::DispatchResponse::LOST);
        break;
    }
    resp->set_http_status(r.reply.status);
    for (const auto& [name, value] : r.reply.headers) {
      v1::Header* h = resp->add_headers();
      h->set_name(name);
      h->set_value(value);
    }
    resp->set_body(std::move(r.reply.body));
    for (const common::Cost::Charge& c : r.cost.charges) {
      v1::PoolCharge* pc = resp->add_cost();
      pc->set_pool(lane->rules().pools()[c.pool].name);
      pc->set_units(c.units);
    }
    resp->set_sent_exchange_us(UnixMicros(r.sent_ex));
    resp->set_replied_exchange_us(UnixMicros(r.replied_ex));
    if (r.observed) {
      resp->set_observed_pool(r.observed->first);
      resp->set_observed_used(r.observed->second);
    }
    if (r.park) FillBan(req.exchange(), *r.park, resp->mutable_ban());
    resp->set_retry_after_ms(absl::ToInt64Milliseconds(r.retry_after));
    resp->set_detail(r.detail);
    FillUsage(req.exchange(), node_.options_.egress_ip, r.usage, resp->mutable_usage());
    if (r.park && r.outcome == LaneResult::Outcome::kReplied) {
      common::Log(common::LogLevel::kWarning, "node",
                  absl::StrCat(req.exchange(), " parked this IP: HTTP ", r.park->http_status, " ",
                               r.park->kind, " for ",
                               absl::FormatDuration(r.park->until - node_.clock_.Now())));
      node_.session_->Nudge();  // tell the coordinator at once
    }
  }

  Node& node_;
};

// ---- the node ---------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Node>> Node::Create(NodeOptions options, common::RulesBook rules,
                                                   common::Clock& clock) {
  for (const std::string& e : options.exchanges) {
    if (rules.Find(e) == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown exchange \"", e, "\""));
  }
  return std::unique_ptr<Node>(new Node(std::move(options), clock, std::move(rules)));
}

Node::Node(NodeOptions options, common::Clock& clock, common::RulesBook rules)
    : options_(std::move(options)), clock_(clock), rules_(std::move(rules)) {
  std::vector<std::string> exchanges = options_.exchanges;
  if (exchanges.empty()) exchanges = rules_.ExchangeNames();
  LaneOptions lane_options;
  lane_options.request_timeout = options_.request_timeout;
  lane_options.trace_ledger = options_.trace_ledger;
  for (const std::string& e : exchanges) {
    lanes_[e] = std::make_unique<ExchangeLane>(*rules_.Find(e), lane_options, clock_);
    auto url = options_.exchange_urls.find(e);
    // Exchanges without a URL of our own wait for the coordinator's.
    if (url != options_.exchange_urls.end()) ConfigureEndpoint(e, url->second);
  }
  service_ = std::make_unique<Service>(*this);
  session_ = std::make_unique<Session>(*this);
}

Node::~Node() { Shutdown(); }

ExchangeLane* Node::Lane(const std::string& exchange) {
  auto it = lanes_.find(exchange);
  return it == lanes_.end() ? nullptr : it->second.get();
}

void Node::ConfigureEndpoint(const std::string& exchange, const std::string& url) {
  auto proxy_it = options_.exchange_proxies.find(exchange);
  std::string proxy = ResolveProxy(proxy_it == options_.exchange_proxies.end() ? "" : proxy_it->second,
                                   options_.proxy, url, options_.proxy_env);
  common::CurlHttpOptions http;
  http.source_ip = options_.egress_ip;
  http.proxy = proxy;
  http.ca_bundle = options_.ca_bundle;
  lanes_[exchange]->SetEndpoint(url, std::make_shared<common::CurlHttpClient>(http));
  common::Log(common::LogLevel::kInfo, "node",
              absl::StrCat(exchange, " at ", url, " from ", options_.egress_ip,
                           proxy.empty() ? "" : absl::StrCat(" via ", proxy)));
  absl::MutexLock lock(&mu_);
  reprobe_ = true;
}

std::optional<Node::LeaderClaim> Node::GossipLeader() {
  namespace g = common::gossip;
  if (!gossip_) return std::nullopt;
  std::optional<LeaderClaim> best;
  for (const g::MemberView& m : gossip_->Members()) {
    if (m.state != g::MemberState::kAlive && m.state != g::MemberState::kSuspect) continue;
    if (g::RecordValue(m, g::kRoleRecord) != "coordinator") continue;
    int64_t term = 0;
    if (!absl::SimpleAtoi(g::RecordValue(m, g::kTermRecord), &term) || term <= 0) continue;
    if (best && (term < best->term || (term == best->term && m.name > best->name))) continue;
    best = LeaderClaim{term, m.name, g::RecordValue(m, g::kGrpcRecord)};
  }
  if (best) (void)AdmitTerm(best->term, best->name);
  return best;
}

void Node::ApplyLeases(const v1::Leases& leases) {
  // Only the newest leader hands out shares of an account.
  if (!AdmitTerm(leases.term(), leases.coordinator_id())) return;
  absl::Time expires = clock_.Now() + absl::Milliseconds(leases.duration_ms());
  std::map<std::string, std::vector<LeasedPool>> by_exchange;
  for (const v1::AccountLease& l : leases.leases()) {
    by_exchange[l.exchange()].push_back({l.account(), l.pool(), l.units()});
  }
  for (auto& [exchange, lane] : lanes_) lane->SetLeases(by_exchange[exchange], expires);
  absl::MutexLock lock(&mu_);
  leases_ = leases;
  leases_received_ = clock_.Now();
  leases_expire_ = expires;
}

bool Node::AdmitTerm(int64_t term, const std::string& coordinator) {
  int64_t highest = 0;
  bool ok = fence_.Admit(term, coordinator, &highest);
  if (gossip_ && published_fence_.exchange(highest) != highest) {
    gossip_->SetRecord(common::gossip::kFenceRecord, absl::StrCat(highest));
  }
  return ok;
}

void Node::PublishUsage() {
  if (!gossip_) return;
  std::vector<std::string> parts;
  for (auto& [exchange, lane] : lanes_) {
    const common::BudgetBook::PoolView* busiest = nullptr;
    std::vector<common::BudgetBook::PoolView> views = lane->Usage();
    for (const auto& v : views) {
      if (v.capacity <= 0 || v.used <= 0) continue;
      if (busiest == nullptr || v.used * busiest->capacity > busiest->used * v.capacity) busiest = &v;
    }
    if (busiest != nullptr) {
      parts.push_back(absl::StrCat(exchange, ":", busiest->name, "=", busiest->used, "/", busiest->capacity));
    }
  }
  gossip_->SetRecord(common::gossip::kUsageRecord, parts.empty() ? "idle" : absl::StrJoin(parts, " "),
                     /*urgent=*/false);
}

absl::Status Node::Start() {
  pool_ = std::make_unique<common::ThreadPool>(options_.workers);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::string listen = options_.listen.ToString();
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port_);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen));
  }
  if (!options_.advertise.empty()) {
    advertise_ = options_.advertise;
  } else {
    std::string host = options_.listen.host;
    if (host.empty() || host == "0.0.0.0" || host == "::" || host == "[::]") host = options_.egress_ip;
    advertise_ = absl::StrCat(host, ":", port_);
  }
  if (options_.membership.enabled()) {
    namespace g = common::gossip;
    g::AgentOptions ao = g::ToAgentOptions(options_.membership, options_.node_id);
    ao.on_event = [this](const g::MemberEvent& e) {
      if (g::RecordValue(e.member, g::kRoleRecord) == "coordinator") session_->CheckLeader();
    };
    absl::StatusOr<std::unique_ptr<g::GossipAgent>> agent = g::GossipAgent::Start(std::move(ao));
    if (!agent.ok()) {
      server_->Shutdown();
      server_.reset();
      return agent.status();
    }
    gossip_ = std::move(*agent);
    gossip_->SetRecord(g::kRoleRecord, "node");
    gossip_->SetRecord(g::kGrpcRecord, advertise_);
    gossip_->SetRecord(g::kEgressRecord, options_.egress_ip);
    gossip_->SetRecord(g::kVersionRecord, MP_VERSION);
    gossip_->SetRecord(g::kFenceRecord, "0");
    PublishUsage();
    common::Log(common::LogLevel::kInfo, "node", absl::StrCat(options_.node_id, ": gossip at ", gossip_->addr()));
  }
  session_->Start();
  probe_thread_ = std::thread([this] { ProbeLoop(); });
  return absl::OkStatus();
}

void Node::ProbeLoop() {
  std::map<std::string, absl::Time> last;
  while (true) {
    bool force = false;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      force = reprobe_;
      reprobe_ = false;
    }
    bool probed = false;
    for (auto& [exchange, lane] : lanes_) {
      if (!lane->has_endpoint()) continue;
      auto it = last.find(exchange);
      if (!force && it != last.end() && clock_.Now() - it->second < options_.clock_probe_interval) continue;
      last[exchange] = clock_.Now();
      absl::Status st = lane->ProbeClock();
      probed = true;
      if (!st.ok()) {
        common::Log(common::LogLevel::kWarning, "node", std::string(st.message()));
      } else {
        ClockView c = lane->clock();
        common::Log(common::LogLevel::kDebug, "node",
                    absl::StrCat(exchange, " clock offset ", absl::FormatDuration(c.offset), " +- ",
                                 absl::FormatDuration(c.uncertainty)));
      }
    }
    if (probed) session_->Nudge();
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(+[](Node* n) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                           return n->stopping_ || n->reprobe_;
                                         }, this),
                         absl::Seconds(1));
  }
}

void Node::Wait() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&stopping_));
}

void Node::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && server_ == nullptr) return;
    stopping_ = true;
  }
  if (gossip_) {
    gossip_->Leave();  // the coordinator moves its work at once
    gossip_->Stop();
  }
  if (session_) session_->Stop();
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_.reset();
  }
  if (probe_thread_.joinable()) probe_thread_.join();
  pool_.reset();
}

}  // namespace marketprism::node
