#include "coordinator/coordinator.h"

#include "common/net/curl_http_client.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/wire/node_api.h"

#ifndef MP_VERSION
#define MP_VERSION "dev"
#endif

namespace marketprism::coordinator {

namespace g = common::gossip;

namespace {
// The scheduler is polled at its next edge, and at least this often.
constexpr absl::Duration kTickAtLeast = absl::Seconds(1);
}  // namespace

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Create(CoordinatorOptions options, common::Clock& clock,
                                                                 CoordinatorTransports transports) {
  if (!options.rules) {
    std::string path = options.rules_file.empty() ? common::RulesBook::DefaultPath() : options.rules_file;
    absl::StatusOr<common::RulesBook> rules = common::RulesBook::LoadFile(path);
    if (!rules.ok()) return rules.status();
    for (const std::string& l : options.limits) {
      absl::Status st = rules->ApplyLimitOverride(l);
      if (!st.ok()) return st;
    }
    options.rules = std::move(*rules);
  }
  if (transports.in_process && options.advertise.empty()) {
    return absl::InvalidArgumentError("an in-process coordinator needs options.advertise (its name for others)");
  }
  if (!transports.channels) transports.channels = common::InsecureChannels();
  if (!transports.membership && options.membership.enabled()) {
    transports.membership = g::AgentMemberships(options.membership);
  }
  common::RulesBook rules = std::move(*options.rules);
  options.rules.reset();
  return std::unique_ptr<Coordinator>(
      new Coordinator(std::move(options), clock, std::move(transports), std::move(rules)));
}

Coordinator::Coordinator(CoordinatorOptions options, common::Clock& clock, CoordinatorTransports transports,
                         common::RulesBook rules)
    : options_(std::move(options)),
      clock_(clock),
      transports_(std::move(transports)),
      elected_(static_cast<bool>(transports_.membership)),
      ticker_(clock, [this] { Tick(); }) {
  SchedulerOptions so = options_.scheduler;
  so.await_published_limits = options_.exchange_info_refresh > absl::ZeroDuration();
  scheduler_ = std::make_unique<Scheduler>(std::move(rules), clock_, so);
  // An earlier edge than the ticker is armed for: poll then.
  scheduler_->SetWakeupHook([this](absl::Time at) { ticker_.ArmBy(clock_.SteadyNow() + (at - clock_.Now())); });
  node_client_ = std::make_unique<GrpcNodeClient>(clock_, transports_.channels);

  RouterOptions ro;
  ro.dispatch_margin = options_.dispatch_margin;
  // Without an election there is one coordinator: it leads term 1, with no
  // id (nodes accept any coordinator at that term).
  ro.term = elected_ ? 0 : 1;
  ro.coordinator_id = elected_ ? options_.name : "";
  ro.on_rejection = [this](const std::string& exchange) { refresher_->RequestRefresh(exchange); };
  ro.on_stale_term = [this](int64_t highest) { front_door_->ObserveTerm(highest); };
  ro.on_account = [this](const std::string& exchange, const std::string& account) {
    leases_->AddAccount(exchange, account);
  };
  router_ = std::make_unique<Router>(*scheduler_, *node_client_, ro);

  front_door_ = std::make_unique<FrontDoor>(
      FrontDoor::Options{options_.name, options_.dispatch_margin, options_.takeover_grace, options_.leader_hold_down},
      clock_, *router_, transports_.channels);

  NodeSessions::Hooks hooks;
  hooks.admit = [this](int64_t node_highest) {
    Leadership l = front_door_->leadership();
    if (!l.leading || node_highest <= l.term) return l;
    front_door_->ObserveTerm(node_highest);  // the node has worked for a newer leader: we are deposed
    return Leadership{};
  };
  hooks.on_register = [this](const v1::Register& r) { return registrar_->Register(r); };
  hooks.after_register = [this](const std::string& node) {
    collection_->NodeRegistered(node);
    leases_->Tick();
    front_door_->ReleaseHeld();  // requests that found no node may find this one
  };
  hooks.on_report = [this](const std::string& node, const v1::UsageReport& r) { registrar_->Report(node, r); };
  hooks.on_records = [this](const std::string& node, const v1::RecordBatch& b) {
    collection_->Observe(node, b);
    collection_->hub().Publish(b, clock_.Now());
  };
  hooks.on_end = [this](const std::string& node) {
    scheduler_->DisconnectNode(node);
    collection_->NodeGone();
    common::Log(common::LogLevel::kWarning, "coordinator", absl::StrCat("node ", node, " disconnected"));
  };
  sessions_ = std::make_unique<NodeSessions>(options_.name, std::move(hooks));

  leases_ = std::make_unique<LeasePusher>(LeasePusher::Options{options_.leases, ro.coordinator_id, elected_}, clock_,
                                          *scheduler_, *sessions_, [this] { return front_door_->leadership(); });
  registrar_ = std::make_unique<Registrar>(
      Registrar::Options{ro.coordinator_id, options_.exchange_urls, options_.ws_urls, options_.sinks}, *scheduler_, *node_client_,
      *leases_, [this] { return router_->term(); });
  refresher_ = std::make_unique<LimitsRefresher>(
      LimitsRefresher::Options{options_.exchange_info_refresh, options_.limits_wait}, clock_, *scheduler_,
      [this](const v1::ExecuteRequest& req, absl::Time deadline, LimitsRefresher::Done done) {
        router_->Execute(req, deadline, std::move(done), nullptr, /*limits_probe=*/true);
      },
      [this] { PushLimits(); });
  member_watch_ = std::make_unique<MemberWatch>(clock_, *scheduler_, *node_client_, *sessions_, *front_door_,
                                                [this](const FrontDoor::Change& c) { OnLeadershipChange(c); });
  collection_ = std::make_unique<Collection>(
      CollectionOptions{.jobs_file = options_.jobs_file, .coordinator_id = ro.coordinator_id}, clock_,
      scheduler_->rules(), *scheduler_,
      [this](const std::string& node_id, const v1::CoordinatorMessage& m) { return sessions_->Send(node_id, m); },
      [this](const v1::ExecuteRequest& req, const v1::RecordAs& record, absl::Time deadline, Router::Done done) {
        router_->Execute(req, deadline, std::move(done), nullptr, /*limits_probe=*/false, record);
      },
      [this] { return front_door_->leadership(); }, [this] { return router_->term(); },
      elected_ ? GrpcSyncJobs(transports_.channels) : nullptr);
  if (!options_.alert_webhook.empty()) {
    alert_pool_ = std::make_unique<common::ThreadPool>(1);
    alert_http_ = std::make_unique<common::CurlHttpClient>(common::CurlHttpOptions{});
  }
  monitor_ = std::make_unique<ExchangeMonitor>(
      ExchangeMonitorOptions{.interval = options_.monitor_interval,
                             .slow = options_.health.response_time,
                             .cluster = options_.name},
      clock_, *scheduler_,
      [this](const v1::ExecuteRequest& req, const v1::RecordAs& record, absl::Time deadline, Router::Done done) {
        router_->Execute(req, deadline, std::move(done), nullptr, /*limits_probe=*/false, record);
      },
      [this] { return front_door_->leadership().leading; },
      [this] { return EvaluateHealth(scheduler_->Snapshot(), options_.health, clock_.Now()); },
      options_.alert_webhook.empty() ? ExchangeMonitor::Alert{} : [this](std::string payload) { PostAlert(std::move(payload)); });
  collector_service_ = std::make_unique<CollectorService>(
      *collection_, [this] { return front_door_->leadership(); }, transports_.channels);
  job_replication_ = std::make_unique<JobReplicationService>(*collection_);
  client_service_ = std::make_unique<ClientService>(
      ClientService::Options{options_.name, options_.default_deadline, options_.health}, clock_, *front_door_,
      *scheduler_, *sessions_);
  client_service_->set_monitor(monitor_.get());
}

Coordinator::~Coordinator() { Shutdown(); }

void Coordinator::PostAlert(std::string payload) {
  alert_pool_->Schedule([this, payload = std::move(payload)] {
    common::HttpRequestSpec req;
    req.method = "POST";
    req.url = options_.alert_webhook;
    req.headers = {{"Content-Type", "application/json"}};
    req.body = payload;
    req.timeout = absl::Seconds(5);
    std::string why;
    for (int attempt = 1; attempt <= 3; ++attempt) {
      absl::StatusOr<common::HttpReply> r = alert_http_->Send(req);
      if (r.ok() && r->status >= 200 && r->status < 300) return;
      why = r.ok() ? absl::StrCat("HTTP ", r->status, " ", r->body.substr(0, 200)) : std::string(r.status().message());
      if (attempt < 3) absl::SleepFor(absl::Seconds(attempt));
    }
    common::Log(common::LogLevel::kWarning, "monitor",
                absl::StrCat("alert webhook ", options_.alert_webhook, " failed 3 times: ", why));
  });
}

std::string Coordinator::Advertise() const {
  if (!options_.advertise.empty()) return options_.advertise;
  std::string host = options_.listen.host;
  const g::MembershipConfig& m = options_.membership;
  if (host.empty() || host == "0.0.0.0") host = m.enabled() ? m.gossip.substr(0, m.gossip.find(':')) : "127.0.0.1";
  return absl::StrCat(host, ":", port_);
}

absl::Status Coordinator::Start() {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::string listen = options_.listen.ToString();
  if (!transports_.in_process) builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port_);
  builder.RegisterService(client_service_.get());
  builder.RegisterService(sessions_.get());
  builder.RegisterService(collector_service_.get());
  builder.RegisterService(job_replication_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || (!transports_.in_process && port_ == 0)) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen));
  }
  advertise_ = Advertise();
  if (elected_) {
    front_door_->StartElection(advertise_);
    absl::StatusOr<std::unique_ptr<g::Membership>> m =
        transports_.membership(options_.name, [this](const g::MemberEvent& e) { member_watch_->OnEvent(e); });
    if (!m.ok()) {
      server_->Shutdown();
      server_.reset();
      return m.status();
    }
    membership_ = std::move(*m);
    membership_->SetRecord(g::kRoleRecord, std::string(g::MemberRoleName(g::MemberRole::kCoordinator)));
    membership_->SetRecord(g::kGrpcRecord, advertise_);
    membership_->SetRecord(g::kVersionRecord, MP_VERSION);
    membership_->SetRecord(g::kTermRecord, "0");
    client_service_->set_membership(membership_.get());
    member_watch_->Start(*membership_);
    common::Log(common::LogLevel::kInfo, "coordinator",
                absl::StrCat(options_.name, ": gossip at ", membership_->addr(), ", serving at ", advertise_));
  } else {
    front_door_->LeadAlone(advertise_);
  }
  if (absl::Status st = collection_->Start(); !st.ok()) {
    server_->Shutdown();
    server_.reset();
    return st;
  }
  ticker_.ArmIn(absl::ZeroDuration());
  leases_->Start();
  refresher_->Start();
  monitor_->Start();
  return absl::OkStatus();
}

std::shared_ptr<grpc::Channel> Coordinator::InProcessChannel() {
  return server_ ? server_->InProcessChannel(grpc::ChannelArguments()) : nullptr;
}

std::string Coordinator::gossip_address() const { return membership_ ? membership_->addr() : ""; }

void Coordinator::Tick() {
  absl::Time next = scheduler_->Poll();
  absl::Duration wait = std::clamp(next - clock_.Now(), absl::ZeroDuration(), kTickAtLeast);
  ticker_.ArmBy(clock_.SteadyNow() + wait);
}

void Coordinator::OnLeadershipChange(const FrontDoor::Change& c) {
  if (c.gained()) {
    leases_->TakeLead(/*fresh=*/c.now.term == 1);
    scheduler_->ForgetLedgers();
    membership_->SetRecord(g::kTermRecord, absl::StrCat(c.now.term));
    common::Log(common::LogLevel::kInfo, "coordinator",
                absl::StrCat(options_.name, " leads term ", c.now.term, "; nodes register with it"));
  }
  if (c.lost()) {
    membership_->SetRecord(g::kTermRecord, "0");
    sessions_->EndAll();  // the nodes find the new leader
    collection_->hub().CutAll(absl::UnavailableError(
        absl::StrCat(options_.name, " no longer leads: subscribe again (any coordinator answers)")));
    common::Log(common::LogLevel::kWarning, "coordinator",
                absl::StrCat(options_.name, " no longer leads (term ", c.before.term, "): a newer term exists"));
  }
  if (c.changed() && !c.now.leading && !c.now.leader.empty()) {
    common::Log(common::LogLevel::kInfo, "coordinator",
                absl::StrCat("the leader is ", c.now.leader, " at ", c.now.leader_grpc, " (term ", c.now.term, ")"));
  }
}

void Coordinator::PushLimits() {
  v1::CoordinatorMessage msg;
  wire::LimitsToProto(scheduler_->Limits(), msg.mutable_limits());
  sessions_->SendAll(msg);
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
  refresher_->Stop();
  monitor_->Stop();
  collection_->Stop();
  member_watch_->Stop();
  leases_->Stop();
  if (membership_) {
    membership_->Leave();  // the others elect at once rather than after a death
    membership_->Stop();
  }
  front_door_->Shutdown();
  sessions_->EndAll();  // node sessions would keep the server from stopping
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_.reset();
  }
  ticker_.Stop();
}

}  // namespace marketprism::coordinator
