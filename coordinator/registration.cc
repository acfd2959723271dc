#include "coordinator/registration.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/wire/node_api.h"

namespace marketprism::coordinator {

Registrar::Registrar(Options options, Scheduler& scheduler, GrpcNodeClient& nodes, LeasePusher& leases,
                     std::function<int64_t()> term)
    : options_(std::move(options)), scheduler_(scheduler), nodes_(nodes), leases_(leases), term_(std::move(term)) {}

void Registrar::ApplyEvents(const std::string& node_id,
                            const google::protobuf::RepeatedPtrField<v1::UsageEvent>& events) {
  for (const v1::UsageEvent& e : events) {
    const common::ExchangeRules* rules = scheduler_.rules().Find(e.exchange());
    if (rules == nullptr) continue;
    common::UsageEvent ev = wire::UsageEventFromProto(*rules, e);
    scheduler_.ApplyUsage(node_id, e.exchange(), ev.cost, ev.sent_ex, ev.replied_ex, ev.observed);
  }
}

void Registrar::ApplyBans(const std::string& node_id, const google::protobuf::RepeatedPtrField<v1::Ban>& bans) {
  for (const v1::Ban& b : bans) {
    common::ExchangeBan ban = wire::BanFromProto(b);
    scheduler_.Park(node_id, ban.exchange, ban.until, ban.kind);
  }
}

namespace {

std::vector<SinkView> SinksFromProto(const google::protobuf::RepeatedPtrField<v1::SinkState>& in) {
  std::vector<SinkView> out;
  for (const v1::SinkState& p : in) {
    out.push_back(SinkView{.name = p.name(),
                           .healthy = p.healthy(),
                           .last_error = p.last_error(),
                           .written = p.written_total(),
                           .queued = p.queued(),
                           .spool_records = p.spool_records(),
                           .spool_bytes = p.spool_bytes(),
                           .dropped = p.dropped_total(),
                           .spool_age = absl::Milliseconds(p.spool_age_ms())});
  }
  return out;
}

}  // namespace

v1::Registered Registrar::Register(const v1::Register& r) {
  std::vector<std::string> exchanges(r.exchanges().begin(), r.exchanges().end());
  scheduler_.UpsertNode(r.node_id(), r.egress_ip(), r.grpc_address(), r.version(), exchanges);
  nodes_.SetNode(r.node_id(), r.grpc_address());
  scheduler_.SetNodeClocks(r.node_id(), wire::ClocksFromProto(r.clocks()));
  std::map<std::string, std::vector<std::pair<std::string, int64_t>>> usage;
  for (const v1::PoolUsage& u : r.usage()) usage[u.exchange()].emplace_back(u.pool(), u.used());
  std::map<std::string, std::vector<common::UsageEvent>> recent;
  for (const v1::UsageEvent& e : r.recent()) {
    const common::ExchangeRules* rules = scheduler_.rules().Find(e.exchange());
    if (rules != nullptr) recent[e.exchange()].push_back(wire::UsageEventFromProto(*rules, e));
  }
  for (const auto& [exchange, pools] : usage) {
    scheduler_.SeedUsage(r.node_id(), exchange, pools, recent[exchange], r.recent_complete());
  }
  scheduler_.SetNodeSinks(r.node_id(), SinksFromProto(r.sinks()));
  ApplyEvents(r.node_id(), r.events());
  ApplyBans(r.node_id(), r.bans());
  // The leases it still holds (none: a new process, or they lapsed).
  leases_.Registered(r.node_id(), r.leases());

  v1::Registered reg;
  reg.set_accepted(true);
  reg.set_term(term_());
  reg.set_coordinator_id(options_.coordinator_id);
  wire::LimitsToProto(scheduler_.Limits(), reg.mutable_limits());
  for (const auto& [exchange, url] : options_.exchange_urls) {
    v1::ExchangeEndpoint* e = reg.add_endpoints();
    e->set_exchange(exchange);
    e->set_rest_url(url);
    auto ws = options_.ws_urls.find(exchange);
    if (ws != options_.ws_urls.end()) e->set_ws_url(ws->second);
  }
  for (const std::string& sink : options_.sinks) reg.add_sinks(sink);
  for (const NodeSnapshot& n : scheduler_.Snapshot().nodes) {
    if (n.node_id == r.node_id()) reg.set_draining(n.state == NodeState::kDraining);
  }
  common::Log(common::LogLevel::kInfo, "coordinator",
              absl::StrCat("node ", r.node_id(), " registered: egress ", r.egress_ip(), ", dispatch at ",
                           r.grpc_address(), ", ", exchanges.size(), " exchanges"));
  return reg;
}

void Registrar::Report(const std::string& node_id, const v1::UsageReport& r) {
  scheduler_.SetNodeSinks(node_id, SinksFromProto(r.sinks()));
  ApplyEvents(node_id, r.events());
  ApplyBans(node_id, r.bans());
  std::vector<NodeClock> clocks = wire::ClocksFromProto(r.clocks());
  if (!clocks.empty()) scheduler_.SetNodeClocks(node_id, clocks);
}

}  // namespace marketprism::coordinator
