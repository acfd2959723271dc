#include "node/node.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <functional>

#include "absl/strings/str_cat.h"
#include "common/gossip/membership.h"
#include "common/log.h"
#include "node/gossip_records.h"
#include "node/proxy.h"

#ifndef MP_VERSION
#define MP_VERSION "dev"
#endif

namespace marketprism::node {

namespace g = common::gossip;

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
                   .on_reported = std::bind_front(&Node::PublishUsage, this),
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
                    .egress_ip = options_.egress_ip});
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
  session_->Start(advertise_);
  prober_->Start();
  return absl::OkStatus();
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
  session_->Stop();
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_.reset();
  }
  prober_->Stop();
  pool_.reset();
}

}  // namespace marketprism::node
