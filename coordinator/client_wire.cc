#include "coordinator/client_wire.h"

#include "absl/strings/str_cat.h"
#include "common/gossip/membership.h"
#include "common/wire/node_api.h"

namespace marketprism::coordinator {

ExecuteSpec SpecOf(const v1::ExecuteRequest& request) {
  ExecuteSpec spec;
  spec.exchange = request.exchange();
  spec.method = wire::MethodOrDefault(request.method());
  spec.path = request.path();
  for (const auto& q : request.query()) spec.query.emplace_back(q.key(), q.value());
  spec.body = request.body();
  spec.priority = request.priority();
  return spec;
}

bool IsIdempotent(const v1::ExecuteRequest& request) { return Idempotent(SpecOf(request)); }

void NodeInfoToProto(const NodeSnapshot& n, v1::NodeInfo* out) {
  out->set_node_id(n.node_id);
  out->set_egress_ip(n.egress_ip);
  out->set_grpc_address(n.grpc_address);
  out->set_state(std::string(NodeStateName(n.state)));
  out->set_version(n.version);
  out->set_registered_ms(absl::ToUnixMillis(n.registered));
  out->set_last_seen_ms(absl::ToUnixMillis(n.last_seen));
  out->set_in_flight(n.in_flight);
  out->set_requests_total(n.requests);
  for (const std::string& e : n.ready) out->add_ready_exchanges(e);
}

void GossipToProto(const common::gossip::MemberView& m, absl::Time now, v1::NodeInfo* out) {
  namespace g = common::gossip;
  out->set_role(std::string(g::MemberRoleName(g::RoleOf(m))));
  out->set_gossip_state(std::string(g::MemberStateName(m.state)));
  out->set_incarnation(m.incarnation);
  out->set_gossip_last_seen_ms(m.self                              ? absl::ToUnixMillis(now)
                               : m.last_heard == absl::InfinitePast() ? 0
                                                                      : absl::ToUnixMillis(m.last_heard));
  out->set_gossip_address(m.addr);
  out->set_term(g::NumberRecord(m, g::kTermRecord));
  out->set_usage(g::RecordValue(m, g::kUsageRecord));
  if (out->egress_ip().empty()) out->set_egress_ip(g::RecordValue(m, g::kEgressRecord));
  if (out->grpc_address().empty()) out->set_grpc_address(g::RecordValue(m, g::kGrpcRecord));
  if (out->version().empty()) out->set_version(g::RecordValue(m, g::kVersionRecord));
}

void StatusToProto(const SchedulerSnapshot& s, absl::Time now, v1::GetStatusResponse* out) {
  auto [available, total] = IpAvailability(s, now);
  out->set_mode(total <= 1 ? "unified" : "distributed");
  out->set_available_ips(available);
  out->set_total_ips(total);
  out->set_success_rate(s.success_rate);
  out->set_queued(s.queued);
  out->set_server_time_ms(absl::ToUnixMillis(now));
  for (const NodeSnapshot& n : s.nodes) {
    v1::NodeStatus* ns = out->add_nodes();
    ns->set_node_id(n.node_id);
    ns->set_egress_ip(n.egress_ip);
    ns->set_state(std::string(NodeStateName(n.state)));
    ns->set_in_flight(n.in_flight);
    ns->set_requests_total(n.requests);
    ns->set_failures_total(n.failures);
    for (const auto& [exchange, pools] : n.pools) wire::PoolUsageToProto(exchange, n.egress_ip, pools, ns->mutable_pools());
    for (const NodeSnapshot::Lease& lease : n.leases) {
      // An API key is not a secret, but need not be shown whole.
      wire::PoolUsageToProto(lease.exchange, absl::StrCat("account:", common::ShortAccount(lease.account)),
                             lease.pools, ns->mutable_pools());
    }
    for (const LaneStatus& l : n.lanes) {
      (*ns->mutable_clock_offsets_us())[l.exchange] = absl::ToInt64Microseconds(l.clock_offset);
      v1::LaneExposure* x = ns->add_lanes();
      x->set_exchange(l.exchange);
      x->set_exposure(l.exposure);
      x->set_in_flight(l.in_flight);
      x->set_foreign_units(l.foreign_units);
      if (l.foreign_units > 0) x->set_foreign_seen_ms(absl::ToUnixMillis(l.foreign_seen));
      if (l.parked_until <= now) continue;
      v1::Ban* b = ns->add_bans();
      b->set_exchange(l.exchange);
      b->set_kind(l.park_kind);
      b->set_until_ms(absl::ToUnixMillis(l.parked_until));
    }
    for (const SinkView& v : n.sinks) {
      v1::SinkState* p = ns->add_sinks();
      p->set_name(v.name);
      p->set_healthy(v.healthy);
      p->set_last_error(v.last_error);
      p->set_written_total(v.written);
      p->set_queued(v.queued);
      p->set_spool_records(v.spool_records);
      p->set_spool_bytes(v.spool_bytes);
      p->set_spool_age_ms(absl::ToInt64Milliseconds(v.spool_age));
      p->set_dropped_total(v.dropped);
    }
    if (!ns->clock_offsets_us().empty()) {
      std::string first = ns->clock_offsets_us().begin()->first;
      for (const auto& [e, us] : ns->clock_offsets_us()) first = std::min(first, e);
      ns->set_clock_offset_us(ns->clock_offsets_us().at(first));
    }
  }
}

void HealthToProto(const HealthReport& h, v1::GetHealthResponse* out) {
  auto level = [](HealthLevel l) {
    switch (l) {
      case HealthLevel::kHealthy:
        return v1::GetHealthResponse::HEALTHY;
      case HealthLevel::kDegraded:
        return v1::GetHealthResponse::DEGRADED;
      case HealthLevel::kUnhealthy:
        break;
    }
    return v1::GetHealthResponse::UNHEALTHY;
  };
  out->set_overall_health(level(h.overall));
  for (const HealthCheckResult& c : h.checks) {
    v1::HealthCheck* hc = out->add_checks();
    hc->set_name(c.name);
    hc->set_status(std::string(HealthLevelName(c.status)));
    hc->set_value(c.value);
    hc->set_threshold(c.threshold);
    hc->set_message(c.message);
  }
  for (const std::string& r : h.recommendations) out->add_recommendations(r);
}

}  // namespace marketprism::coordinator
