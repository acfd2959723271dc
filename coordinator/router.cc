#include "coordinator/router.h"

#include "absl/strings/str_cat.h"
#include "common/wire/node_api.h"
#include "coordinator/client_wire.h"

namespace marketprism::coordinator {

struct Router::Call {
  v1::ExecuteRequest request;
  absl::Time deadline;
  Done done;
  std::function<bool()> cancelled;
  v1::RecordAs record;
};

Router::Router(Scheduler& scheduler, NodeClient& nodes, RouterOptions options)
    : scheduler_(scheduler), nodes_(nodes), options_(std::move(options)), term_(options_.term) {}

void Router::Execute(const v1::ExecuteRequest& request, absl::Time deadline, Done done,
                     std::function<bool()> cancelled, bool limits_probe, v1::RecordAs record) {
  auto call = std::make_shared<Call>();
  call->record = std::move(record);
  call->request = request;
  call->deadline = deadline;
  call->done = std::move(done);
  call->cancelled = std::move(cancelled);
  ExecuteSpec spec = SpecOf(request);
  spec.deadline = deadline - options_.dispatch_margin;
  spec.limits_probe = limits_probe;
  if (const common::ExchangeRules* rules = scheduler_.rules().Find(spec.exchange)) {
    std::vector<std::pair<std::string, std::string>> headers;
    for (const auto& h : request.headers()) headers.emplace_back(h.name(), h.value());
    spec.account = common::AccountOf(*rules, headers);
    if (!spec.account.empty() && options_.on_account) options_.on_account(spec.exchange, spec.account);
  }
  absl::Status st = scheduler_.Submit(
      std::move(spec), [this, call](absl::StatusOr<Placement> p) { OnPlaced(call, std::move(p)); });
  if (!st.ok()) call->done(st);
}

void Router::OnPlaced(const std::shared_ptr<Call>& call, absl::StatusOr<Placement> placement) {
  if (!placement.ok()) {
    call->done(placement.status());
    return;
  }
  if (call->cancelled && call->cancelled()) {
    scheduler_.Abandon(*placement);
    call->done(absl::CancelledError("the caller went away"));
    return;
  }
  v1::DispatchRequest req;
  req.set_request_id(absl::StrCat(placement->id, "-", placement->attempt));
  req.set_exchange(call->request.exchange());
  req.set_method(wire::MethodOrDefault(call->request.method()));
  req.set_path(call->request.path());
  *req.mutable_query() = call->request.query();
  req.set_body(call->request.body());
  *req.mutable_headers() = call->request.headers();
  req.set_account(placement->account);
  if (!call->record.key().empty()) *req.mutable_record() = call->record;
  wire::CostToProto(*scheduler_.rules().Find(placement->exchange), placement->cost, req.mutable_cost());
  req.set_term(term_.load());
  req.set_coordinator_id(options_.coordinator_id);
  Placement pl = *placement;
  nodes_.Dispatch(pl.node_id, std::move(req), call->deadline,
                  [this, call, pl](absl::Status status, v1::DispatchResponse response) {
                    OnDispatched(call, pl, std::move(status), std::move(response));
                  });
}

DispatchOutcome ToOutcome(const absl::Status& status, const v1::DispatchResponse& r) {
  DispatchOutcome o;
  if (!status.ok()) {
    // The node may have sent it before the call failed: keep it charged.
    o.kind = DispatchOutcome::Kind::kLost;
    o.deadline_passed = status.code() == absl::StatusCode::kDeadlineExceeded;
    o.detail = std::string(status.message());
    return o;
  }
  switch (r.outcome()) {
    case v1::DispatchResponse::REPLIED:
      o.kind = DispatchOutcome::Kind::kReplied;
      break;
    case v1::DispatchResponse::REFUSED:
      o.kind = DispatchOutcome::Kind::kRefused;
      break;
    case v1::DispatchResponse::PARKED:
      o.kind = DispatchOutcome::Kind::kParked;
      break;
    case v1::DispatchResponse::LOST:
      o.kind = DispatchOutcome::Kind::kLost;
      break;
    default:
      o.kind = DispatchOutcome::Kind::kNotSent;
      break;
  }
  o.http_status = r.http_status();
  if (r.observed_used() >= 0 && !r.observed_pool().empty()) {
    o.observed = std::make_pair(r.observed_pool(), r.observed_used());
  }
  if (r.has_ban() && r.ban().until_ms() > 0) {
    o.park_until = absl::FromUnixMillis(r.ban().until_ms());
    o.park_kind = r.ban().kind();
  }
  o.retry_after = absl::Milliseconds(r.retry_after_ms());
  if (r.replied_exchange_us() > r.sent_exchange_us()) {
    o.exchange_time = absl::Microseconds(r.replied_exchange_us() - r.sent_exchange_us());
  }
  if (r.node_received_unix_us() > 0 && r.node_replied_unix_us() > 0) {
    o.node_received = absl::FromUnixMicros(r.node_received_unix_us());
    o.node_replied = absl::FromUnixMicros(r.node_replied_unix_us());
  }
  o.detail = r.detail();
  o.account_refused = r.account_refused();
  o.exposure_refused = r.exposure_refused();
  o.exposure = r.exposure();
  o.foreign_units = r.foreign_units();
  return o;
}

void Router::OnDispatched(const std::shared_ptr<Call>& call, const Placement& pl,
                          absl::Status status, v1::DispatchResponse response) {
  DispatchOutcome outcome = ToOutcome(status, response);
  if (status.ok() && response.outcome() == v1::DispatchResponse::STALE_TERM && options_.on_stale_term) {
    options_.on_stale_term(response.highest_term());
  }
  if (outcome.park_until && options_.on_rejection) options_.on_rejection(pl.exchange);
  if (scheduler_.Report(pl, outcome) == Scheduler::ReportResult::kRequeued) return;
  v1::ExecuteResponse out;
  out.set_http_status(response.http_status());
  *out.mutable_headers() = std::move(*response.mutable_headers());
  out.set_body(std::move(*response.mutable_body()));
  out.set_node_id(pl.node_id);
  out.set_egress_ip(pl.egress_ip);
  *out.mutable_cost() = response.cost();
  out.set_queued_us(absl::ToInt64Microseconds(pl.placed - pl.enqueued));
  out.set_exchange_us(absl::ToInt64Microseconds(outcome.exchange_time));
  out.set_attempts(pl.attempt);
  call->done(std::move(out));
}

}  // namespace marketprism::coordinator
