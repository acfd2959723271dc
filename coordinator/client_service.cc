#include "coordinator/client_service.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "common/metadata_keys.h"
#include "coordinator/client_wire.h"
#include "coordinator/forward.h"

namespace marketprism::coordinator {

ClientService::ClientService(Options options, common::Clock& clock, FrontDoor& front_door, Scheduler& scheduler,
                             NodeSessions& sessions)
    : options_(std::move(options)), clock_(clock), front_door_(front_door), scheduler_(scheduler), sessions_(sessions) {}

grpc::ServerUnaryReactor* ClientService::Execute(grpc::CallbackServerContext* ctx, const v1::ExecuteRequest* req,
                                                 v1::ExecuteResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  auto remaining = ctx->deadline() - std::chrono::system_clock::now();
  absl::Duration left = remaining > std::chrono::hours(24 * 365)
                            ? options_.default_deadline
                            : absl::FromChrono(std::chrono::duration_cast<std::chrono::microseconds>(remaining));
  std::string name = options_.name;
  front_door_.Route(
      *req, clock_.Now() + left,
      [ctx, reactor, resp, name](absl::StatusOr<v1::ExecuteResponse> r) {
        // Marks an answer from a coordinator, as against a broken connection.
        ctx->AddTrailingMetadata(common::kAnsweredByKey, name);
        if (r.ok()) {
          *resp = std::move(*r);
          reactor->Finish(grpc::Status::OK);
          return;
        }
        if (std::optional<absl::Duration> retry = RetryAfterOf(r.status())) {
          ctx->AddTrailingMetadata(common::kRetryAfterMsKey, absl::StrCat(absl::ToInt64Milliseconds(*retry)));
        }
        reactor->Finish(common::ToGrpc(r.status()));
      },
      [ctx] { return ctx->IsCancelled(); });
  return reactor;
}

template <typename Req, typename Resp, typename Call>
bool ClientService::ForwardToLeader(grpc::CallbackServerContext* ctx, grpc::ServerUnaryReactor* reactor,
                                    const Req* req, Resp* resp, Call call) {
  Leadership l = front_door_.leadership();
  if (l.leading) return false;
  if (l.leader_grpc.empty()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                 "no leader coordinator yet (an election is under way); retry shortly"));
    return true;
  }
  ForwardUnary(ctx, reactor, front_door_.StubFor(l.leader_grpc), req, resp, call);
  return true;
}

grpc::ServerUnaryReactor* ClientService::GetStatus(grpc::CallbackServerContext* ctx, const v1::GetStatusRequest* req,
                                                   v1::GetStatusResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (ForwardToLeader(ctx, reactor, req, resp,
                      [](auto* a, auto* c, auto* q, auto* r, auto cb) { a->GetStatus(c, q, r, std::move(cb)); })) {
    return reactor;
  }
  StatusToProto(scheduler_.Snapshot(), clock_.Now(), resp);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* ClientService::GetHealth(grpc::CallbackServerContext* ctx, const v1::GetHealthRequest* req,
                                                   v1::GetHealthResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (ForwardToLeader(ctx, reactor, req, resp,
                      [](auto* a, auto* c, auto* q, auto* r, auto cb) { a->GetHealth(c, q, r, std::move(cb)); })) {
    return reactor;
  }
  HealthReport report = EvaluateHealth(scheduler_.Snapshot(), options_.health, clock_.Now());
  if (monitor_ != nullptr) monitor_->AddChecks(report);
  HealthToProto(report, resp);
  if (monitor_ != nullptr) {
    for (const auto& [exchange, probes] : monitor_->History()) {
      for (const ExchangeProbe& p : probes) {
        v1::ExchangeProbe* out = resp->add_exchange_probes();
        out->set_exchange(exchange);
        out->set_at_unix_ms(absl::ToUnixMillis(p.at));
        out->set_status(p.status);
        out->set_http_status(p.http_status);
        out->set_response_ms(absl::ToDoubleMilliseconds(p.response));
        out->set_server_time_ms(p.server_time_ms);
        out->set_node_id(p.node_id);
        out->set_error(p.error);
      }
    }
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* ClientService::ListNodes(grpc::CallbackServerContext* ctx, const v1::ListNodesRequest* req,
                                                   v1::ListNodesResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  // A follower that knows the leader shows the leader's view; with none,
  // its own (gossip's members only).
  if (!front_door_.leadership().leader_grpc.empty() &&
      ForwardToLeader(ctx, reactor, req, resp,
                      [](auto* a, auto* c, auto* q, auto* r, auto cb) { a->ListNodes(c, q, r, std::move(cb)); })) {
    return reactor;
  }
  namespace g = common::gossip;
  Leadership l = front_door_.leadership();
  resp->set_leader(l.leader);
  resp->set_term(l.term);
  resp->set_answered_by(options_.name);
  std::map<std::string, v1::NodeInfo*> by_name;
  if (l.leading) {
    for (const NodeSnapshot& n : scheduler_.Snapshot().nodes) {
      v1::NodeInfo* info = resp->add_nodes();
      NodeInfoToProto(n, info);
      by_name[n.node_id] = info;
    }
  }
  if (membership_ != nullptr) {
    std::vector<g::MemberView> members = membership_->Members();
    // A restarted member is a new member under an old name: show the newest.
    std::sort(members.begin(), members.end(), [](const auto& a, const auto& b) {
      return a.name != b.name ? a.name < b.name : a.state_since < b.state_since;
    });
    for (const g::MemberView& m : members) {
      v1::NodeInfo*& info = by_name[m.name];
      if (info == nullptr) {
        info = resp->add_nodes();
        info->set_node_id(m.name);
      }
      GossipToProto(m, clock_.Now(), info);
      if (info->state().empty()) {
        info->set_state(g::RoleOf(m) != g::MemberRole::kCoordinator ? "unregistered"
                        : !g::Live(m)                                 ? "gone"
                        : m.name == l.leader                          ? "leader"
                                                                      : "follower");
      }
    }
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* ClientService::DrainNode(grpc::CallbackServerContext* ctx, const v1::DrainNodeRequest* req,
                                                   v1::DrainNodeResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (ForwardToLeader(ctx, reactor, req, resp,
                      [](auto* a, auto* c, auto* q, auto* r, auto cb) { a->DrainNode(c, q, r, std::move(cb)); })) {
    return reactor;
  }
  if (req->node_id().empty()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "node_id: required"));
    return reactor;
  }
  absl::Status st = scheduler_.SetDraining(req->node_id(), !req->undrain());
  if (!st.ok()) {
    reactor->Finish(common::ToGrpc(st));
    return reactor;
  }
  v1::CoordinatorMessage msg;
  msg.mutable_drain()->set_draining(!req->undrain());
  sessions_.Send(req->node_id(), msg);
  common::Log(common::LogLevel::kInfo, "coordinator",
              absl::StrCat(req->undrain() ? "undrained " : "drained ", req->node_id()));
  for (const NodeSnapshot& n : scheduler_.Snapshot().nodes) {
    if (n.node_id == req->node_id()) NodeInfoToProto(n, resp->mutable_node());
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace marketprism::coordinator
