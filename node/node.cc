#include "node/node.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <cstring>
#include <functional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/gossip/membership.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "common/metadata_keys.h"
#include "common/retry_after.h"
#include "common/status_macros.h"
#include "node/gossip_records.h"
#include "node/proxy.h"
#include "marketprism/v1/coordinator.grpc.pb.h"

#ifndef MP_VERSION
#define MP_VERSION "dev"
#endif

namespace marketprism::node {

namespace g = common::gossip;

namespace {
// Book snapshots go before clients' calls (0 by default): a book waiting for
// its snapshot buffers diffs and collects nothing.
constexpr int kSnapshotPriority = 10;
}  // namespace

absl::StatusOr<std::unique_ptr<Node>> Node::Create(NodeOptions options, common::RulesBook rules,
                                                   common::Clock& clock, NodeTransports transports) {
  for (const std::string& e : options.exchanges) {
    if (rules.Find(e) == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown exchange \"", e, "\""));
    }
  }
  if (!transports.http) return absl::InvalidArgumentError("no HttpClient factory");
  if (transports.in_process && options.advertise.empty()) {
    return absl::InvalidArgumentError("an in-process node needs options.advertise (its Dispatch address)");
  }
  if (!transports.channels) transports.channels = InsecureChannelFactory();
  if (!transports.membership && options.membership.enabled()) {
    transports.membership = g::AgentMemberships(options.membership);
  }
  return std::unique_ptr<Node>(
      new Node(std::move(options), std::move(rules), clock, std::move(transports)));
}

Node::Node(NodeOptions options, common::RulesBook rules, common::Clock& clock,
           NodeTransports transports)
    : options_(std::move(options)),
      clock_(clock),
      rules_(std::move(rules)),
      transports_(std::move(transports)) {
  LaneOptions lane_options;
  lane_options.request_timeout = options_.request_timeout;
  lane_options.trace_ledger = options_.trace_ledger;
  lane_options.exposure = options_.exposure;
  lane_options.egress_ip = options_.egress_ip;
  for (const std::string& e :
       options_.exchanges.empty() ? rules_.ExchangeNames() : options_.exchanges) {
    lanes_[e] = std::make_unique<ExchangeLane>(*rules_.Find(e), lane_options, clock_);
  }
  pool_ = std::make_unique<common::ThreadPool>(options_.workers);
  prober_ = std::make_unique<ClockProber>(
      lanes_, clock_, options_.clock_probe_interval,
      [this](std::function<void()> probe) { pool_->Schedule(std::move(probe)); },
      [this] { session_->Nudge(); });
  SessionOptions session;
  session.node_id = options_.node_id;
  session.egress_ip = options_.egress_ip;
  session.coordinators = options_.coordinators;
  for (const auto& [exchange, url] : options_.exchange_urls) session.own_urls.insert(exchange);
  session.report_interval = options_.report_interval;
  session.reconnect_max = options_.reconnect_max;
  session_ = std::make_unique<CoordinatorSession>(
      std::move(session),
      SessionParts{.lanes = lanes_,
                   .fence = fence_,
                   .admit_term = std::bind_front(&Node::AdmitTerm, this),
                   .leader_claim = std::bind_front(&Node::GossipLeaderClaim, this),
                   .set_endpoint = std::bind_front(&Node::ConfigureEndpoint, this),
                   .set_ws_endpoint =
                       [this](const std::string& exchange, const std::string& url) {
                         absl::MutexLock lock(&mu_);
                         offered_ws_[exchange] = url;
                       },
                   .on_units =
                       [this](const v1::Units& units) {
                         if (collector_) collector_->SetUnits(units);
                       },
                   .on_reported = std::bind_front(&Node::PublishUsage, this),
                   .on_sinks =
                       [this](const std::vector<std::string>& specs) {
                         if (!options_.sinks.empty()) return;  // the node's own win
                         pool_->Schedule([this, specs] {
                           absl::Status s = UseSinks(specs);
                           if (!s.ok()) {
                             common::Log(common::LogLevel::kError, "node",
                                         absl::StrCat("the cluster's sinks: ", s.message()));
                           }
                         });
                       },
                   .sink_states = std::bind_front(&Node::SinkStates, this),
                   .channel = transports_.channels,
                   .clock = clock_});
  // Exchanges without a URL of our own wait for the coordinator's.
  for (const auto& [exchange, url] : options_.exchange_urls) {
    if (lanes_.contains(exchange)) ConfigureEndpoint(exchange, url);
  }
}

Node::~Node() { Shutdown(); }

void Node::ConfigureEndpoint(const std::string& exchange, const std::string& url) {
  auto own = options_.exchange_proxies.find(exchange);
  HttpEndpoint endpoint{
      .exchange = exchange,
      .url = url,
      .source_ip = options_.egress_ip,
      .proxy = ResolveProxy(own == options_.exchange_proxies.end() ? "" : own->second,
                            options_.proxy, url, options_.proxy_env),
      .ca_bundle = options_.ca_bundle};
  lanes_.at(exchange)->SetEndpoint(url, transports_.http(endpoint));
  {
    absl::MutexLock lock(&mu_);
    rest_urls_[exchange] = url;
  }
  common::Log(common::LogLevel::kInfo, "node",
              absl::StrCat(exchange, " at ", url, " from ", options_.egress_ip,
                           endpoint.proxy.empty() ? "" : absl::StrCat(" via ", endpoint.proxy)));
  prober_->Reprobe();
}

std::optional<LeaderClaim> Node::GossipLeaderClaim() {
  if (!gossip_) return std::nullopt;
  return BestLeaderClaim(gossip_->Members());
}

bool Node::AdmitTerm(int64_t term, const std::string& coordinator) {
  int64_t highest = 0;
  bool ok = fence_.Admit(term, coordinator, &highest);
  if (gossip_ && published_fence_.exchange(highest) != highest) {
    gossip_->SetRecord(g::kFenceRecord, absl::StrCat(highest));
  }
  return ok;
}

void Node::PublishUsage() {
  if (gossip_) gossip_->SetRecord(g::kUsageRecord, UsageRecord(lanes_), /*urgent=*/false);
}

absl::Status Node::Start() {
  service_ = std::make_unique<DispatchService>(
      DispatchParts{.lanes = lanes_,
                    .fence = fence_,
                    .admit_term = std::bind_front(&Node::AdmitTerm, this),
                    .executor = *pool_,
                    .clock = clock_,
                    .report_now = [this] { session_->Nudge(); },
                    .egress_ip = options_.egress_ip,
                    .node_id = options_.node_id,
                    .on_record =
                        [this](v1::MarketEvent e) {
                          absl::MutexLock lock(&sinks_mu_);
                          if (sinks_) sinks_->Offer({std::move(e)});
                        }});
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::string listen = options_.listen.ToString();
  if (!transports_.in_process) {
    builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port_);
  }
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || (!transports_.in_process && port_ == 0)) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen));
  }
  if (!options_.advertise.empty()) {
    advertise_ = options_.advertise;
  } else {
    std::string host = options_.listen.host;
    if (host.empty() || host == "0.0.0.0" || host == "::" || host == "[::]") {
      host = options_.egress_ip;
    }
    advertise_ = absl::StrCat(host, ":", port_);
  }
  if (transports_.membership) {
    absl::Status st = StartGossip();
    if (!st.ok()) {
      server_->Shutdown();
      server_.reset();
      return st;
    }
  }
  absl::StatusOr<std::unique_ptr<common::WsClient>> ws =
      transports_.ws ? transports_.ws()
                     : absl::StatusOr<std::unique_ptr<common::WsClient>>(common::LwsWsClient::Create(
                           common::LwsWsClientOptions{options_.ca_bundle}));
  if (!ws.ok()) return ws.status();
  ws_ = *std::move(ws);
  CollectorOptions collect{options_.node_id, options_.egress_ip};
  // Streams take the same proxy as the exchange's REST (its own, the
  // node's, else the environment's for the URL's scheme: wss as https).
  collect.ws_proxy = [this](const std::string& exchange, const std::string& url) {
    std::string as_http = absl::StartsWith(url, "wss://")  ? absl::StrCat("https://", url.substr(6))
                          : absl::StartsWith(url, "ws://") ? absl::StrCat("http://", url.substr(5))
                                                           : url;
    auto own = options_.exchange_proxies.find(exchange);
    return ResolveProxy(own == options_.exchange_proxies.end() ? "" : own->second, options_.proxy, as_http,
                        options_.proxy_env);
  };
  for (const auto& [exchange, lane] : lanes_) {
    const common::ExchangeRules* rules = rules_.Find(exchange);
    if (rules != nullptr && rules->websocket().max_lifetime_seconds > 0) {
      collect.max_lifetime[exchange] = absl::Seconds(rules->websocket().max_lifetime_seconds);
    }
  }
  collector_ = std::make_unique<Collector>(
      std::move(collect), clock_, *ws_,
      std::bind_front(&Node::WsBase, this), std::bind_front(&Node::FetchSnapshot, this),
      [this](std::vector<v1::MarketEvent> events) {
        {
          absl::MutexLock lock(&sinks_mu_);
          if (sinks_) sinks_->Offer(events);
        }
        session_->Publish(std::move(events));
      },
      [this](const std::string& exchange, const std::string& path) -> absl::StatusOr<absl::Duration> {
        auto lane = lanes_.find(exchange);
        if (lane == lanes_.end()) return absl::ZeroDuration();  // no lane, no budget kept here
        return lane->second->SpendOwn("POST", path);
      });
  if (!options_.sinks.empty()) MP_RETURN_IF_ERROR(UseSinks(options_.sinks));
  collector_->Start();
  session_->Start(advertise_);
  prober_->Start();
  return absl::OkStatus();
}

absl::Status Node::UseSinks(const std::vector<std::string>& specs) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::OkStatus();
  }
  {
    absl::MutexLock lock(&sinks_mu_);
    if (specs == sink_specs_) return absl::OkStatus();
  }
  std::unique_ptr<Sinks> fresh;
  if (!specs.empty()) {
    SinksOptions o{.specs = specs, .node_id = options_.node_id, .spool_dir = absl::StrCat(options_.spool_dir, "/", options_.node_id),
                   .spool_max_bytes = options_.spool_max_bytes,
                   .memory_records = static_cast<size_t>(options_.sink_queue)};
    MP_ASSIGN_OR_RETURN(fresh, Sinks::Create(o, clock_));
    fresh->Start();
  }
  std::unique_ptr<Sinks> old;
  {
    absl::MutexLock lock(&sinks_mu_);
    old = std::move(sinks_);
    sinks_ = std::move(fresh);
    sink_specs_ = specs;
  }
  common::Log(common::LogLevel::kInfo, "node",
              specs.empty() ? std::string("records go to no sink")
                            : absl::StrCat("records go to ", absl::StrJoin(specs, ", "), " (spool ",
                                           options_.spool_dir, ")"));
  if (old) old->Stop();
  return absl::OkStatus();
}

std::vector<v1::SinkState> Node::SinkStates() {
  std::vector<SinkStatus> states;
  {
    absl::MutexLock lock(&sinks_mu_);
    if (sinks_) states = sinks_->Status();
  }
  std::vector<v1::SinkState> out;
  for (const SinkStatus& s : states) {
    v1::SinkState& p = out.emplace_back();
    p.set_name(s.name);
    p.set_healthy(s.healthy);
    p.set_last_error(s.last_error);
    p.set_written_total(s.written_total);
    p.set_queued(s.queued);
    p.set_spool_records(s.spool_records);
    p.set_spool_bytes(s.spool_bytes);
    p.set_spool_age_ms(absl::ToInt64Milliseconds(s.spool_age));
    p.set_dropped_total(s.dropped_total);
  }
  return out;
}

std::string Node::WsBase(const std::string& exchange) {
  if (auto own = options_.ws_urls.find(exchange); own != options_.ws_urls.end()) return own->second;
  absl::MutexLock lock(&mu_);
  if (auto offered = offered_ws_.find(exchange); offered != offered_ws_.end()) return offered->second;
  const common::ExchangeRules* rules = rules_.Find(exchange);
  if (auto rest = rest_urls_.find(exchange); rest != rest_urls_.end() && rules && rest->second != rules->rest_base()) {
    for (auto [from, to] : {std::pair{"http://", "ws://"}, std::pair{"https://", "wss://"}}) {
      if (absl::StartsWith(rest->second, from)) return absl::StrCat(to, rest->second.substr(strlen(from)));
    }
  }
  return rules ? rules->ws_base() : "";
}

void Node::FetchSnapshot(const std::string& exchange, const std::string& path, const common::QueryParams& query,
                         std::function<void(absl::StatusOr<std::string>)> done) {
  std::string target = session_->current_target();
  if (target.empty()) {
    // Not on the caller's thread: the collector asks under its lock.
    pool_->Schedule([done = std::move(done)] { done(absl::UnavailableError("no coordinator session: the snapshot waits")); });
    return;
  }
  struct Call {
    grpc::ClientContext ctx;
    v1::ExecuteRequest req;
    v1::ExecuteResponse resp;
    std::unique_ptr<v1::Coordinator::Stub> stub;
    std::function<void(absl::StatusOr<std::string>)> done;
  };
  auto* c = new Call;
  c->stub = v1::Coordinator::NewStub(transports_.channels(target));
  c->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  c->req.set_exchange(exchange);
  c->req.set_method("GET");
  c->req.set_path(path);
  c->req.set_priority(kSnapshotPriority);
  for (const auto& [k, v] : query) {
    v1::QueryParam* q = c->req.add_query();
    q->set_key(k);
    q->set_value(v);
  }
  c->done = std::move(done);
  c->stub->async()->Execute(&c->ctx, &c->req, &c->resp, [c](grpc::Status s) {
    if (!s.ok()) {
      absl::Status from = common::FromGrpc(s);
      absl::Status failed(from.code(), absl::StrCat("snapshot: ", from.message()));
      // No budget yet (or no leader): the coordinator says when to ask again.
      const auto& trailers = c->ctx.GetServerTrailingMetadata();
      auto retry = trailers.find(common::kRetryAfterMsKey);
      int64_t ms = 0;
      if (retry != trailers.end() && absl::SimpleAtoi(absl::string_view(retry->second.data(), retry->second.size()), &ms)) {
        failed = common::WithRetryAfter(std::move(failed), absl::Milliseconds(ms));
      }
      c->done(std::move(failed));
    } else if (c->resp.http_status() != 200) {
      // A 5xx, 429 or 418 may pass; another 4xx is the request's own fault
      // (an unknown symbol, a depth not allowed) and waits longer each time.
      int http = c->resp.http_status();
      bool transient = http >= 500 || http == 429 || http == 418;
      c->done(absl::Status(transient ? absl::StatusCode::kUnavailable : absl::StatusCode::kFailedPrecondition,
                           absl::StrCat("snapshot: HTTP ", http, ": ", c->resp.body().substr(0, 200))));
    } else {
      c->done(std::move(*c->resp.mutable_body()));
    }
    delete c;
  });
}

absl::Status Node::StartGossip() {
  absl::StatusOr<std::unique_ptr<g::Membership>> m =
      transports_.membership(options_.node_id, [this](const g::MemberEvent& e) {
        if (g::RoleOf(e.member) == g::MemberRole::kCoordinator) session_->CheckLeader();
      });
  if (!m.ok()) return m.status();
  gossip_ = std::move(*m);
  gossip_->SetRecord(g::kRoleRecord, std::string(g::MemberRoleName(g::MemberRole::kNode)));
  gossip_->SetRecord(g::kGrpcRecord, advertise_);
  gossip_->SetRecord(g::kEgressRecord, options_.egress_ip);
  gossip_->SetRecord(g::kVersionRecord, MP_VERSION);
  gossip_->SetRecord(g::kFenceRecord, "0");
  PublishUsage();
  common::Log(common::LogLevel::kInfo, "node",
              absl::StrCat(options_.node_id, ": gossip at ", gossip_->addr()));
  return absl::OkStatus();
}

std::shared_ptr<grpc::Channel> Node::InProcessChannel() {
  return server_ ? server_->InProcessChannel(grpc::ChannelArguments()) : nullptr;
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
  if (collector_) collector_->Stop();
  std::unique_ptr<Sinks> sinks;
  {
    absl::MutexLock lock(&sinks_mu_);
    sinks = std::move(sinks_);
  }
  if (sinks) sinks->Stop();  // what the sinks do not take now waits in their spools
  session_->Stop();
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_.reset();
  }
  prober_->Stop();
  pool_.reset();
}

}  // namespace marketprism::node
