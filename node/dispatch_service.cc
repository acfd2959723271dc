#include "node/dispatch_service.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/wire/node_api.h"
#include "node/reply_record.h"

namespace marketprism::node {

namespace v1 = ::marketprism::v1;

namespace {

LaneRequest LaneRequestFromProto(const v1::DispatchRequest& req) {
  LaneRequest lr;
  lr.method = req.method();
  lr.path = req.path();
  for (const v1::QueryParam& q : req.query()) lr.query.emplace_back(q.key(), q.value());
  lr.body = req.body();
  for (const v1::Header& h : req.headers()) lr.headers.emplace_back(h.name(), h.value());
  return lr;
}

v1::DispatchResponse::Outcome OutcomeToProto(LaneResult::Outcome outcome) {
  switch (outcome) {
    case LaneResult::Outcome::kReplied:
      return v1::DispatchResponse::REPLIED;
    case LaneResult::Outcome::kRefused:
      return v1::DispatchResponse::REFUSED;
    case LaneResult::Outcome::kParked:
      return v1::DispatchResponse::PARKED;
    case LaneResult::Outcome::kNotSent:
    case LaneResult::Outcome::kInvalid:
      return v1::DispatchResponse::NOT_SENT;
    case LaneResult::Outcome::kLost:
      return v1::DispatchResponse::LOST;
  }
  return v1::DispatchResponse::NOT_SENT;
}

// The lane's result as the coordinator reads it; `exchange` is the lane's.
void LaneResultToProto(const std::string& exchange, const common::ExchangeRules& rules,
                       absl::string_view egress_ip, LaneResult r, v1::DispatchResponse* resp) {
  resp->set_outcome(OutcomeToProto(r.outcome));
  if (r.outcome == LaneResult::Outcome::kRefused) {
    resp->set_account_refused(r.account_refusal);
    resp->set_exposure_refused(r.exposure_refusal);
  }
  resp->set_exposure(r.exposure);
  resp->set_foreign_units(r.foreign_units);
  resp->set_http_status(r.reply.status);
  for (auto& [name, value] : r.reply.headers) {
    v1::Header* h = resp->add_headers();
    h->set_name(std::move(name));
    h->set_value(std::move(value));
  }
  resp->set_body(std::move(r.reply.body));
  wire::CostToProto(rules, r.cost, resp->mutable_cost());
  resp->set_sent_exchange_us(common::ToUnixMicros(r.sent_ex));
  resp->set_replied_exchange_us(common::ToUnixMicros(r.replied_ex));
  if (r.observed) {
    resp->set_observed_pool(r.observed->first);
    resp->set_observed_used(r.observed->second);
  }
  if (r.park) wire::BanToProto(r.park->ToBan(exchange), resp->mutable_ban());
  resp->set_retry_after_ms(absl::ToInt64Milliseconds(r.retry_after));
  resp->set_detail(std::move(r.detail));
  wire::PoolUsageToProto(exchange, egress_ip, r.usage, resp->mutable_usage());
}

}  // namespace

grpc::ServerUnaryReactor* DispatchService::Dispatch(grpc::CallbackServerContext* ctx,
                                                    const v1::DispatchRequest* req,
                                                    v1::DispatchResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  resp->set_node_received_unix_us(common::ToUnixMicros(parts_.clock.Now()));
  // The exchange round trip blocks: hand it to the worker pool.
  parts_.executor.Schedule([this, ctx, req, resp, reactor] {
    Handle(ctx, *req, resp);
    absl::Time replied = parts_.clock.Now();
    resp->set_node_replied_unix_us(common::ToUnixMicros(replied));
    // Written when the exchange replied, or the request went out and no
    // reply came (a probe's "down"); not when it was never sent, as the
    // router then places it again, on this node or another.
    bool sent = resp->outcome() == v1::DispatchResponse::REPLIED || resp->outcome() == v1::DispatchResponse::LOST;
    if (req->has_record() && parts_.on_record && sent) {
      ExchangeLane* lane = FindLane(parts_.lanes, req->exchange());
      parts_.on_record(RecordOfReply(*req, *resp, lane != nullptr ? &lane->rules() : nullptr, parts_.node_id, replied));
    }
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

void DispatchService::Handle(grpc::CallbackServerContext* ctx, const v1::DispatchRequest& req,
                             v1::DispatchResponse* resp) {
  resp->set_observed_used(-1);
  if (!parts_.admit_term(req.term(), req.coordinator_id())) {
    auto [highest, holder] = parts_.fence.highest();
    resp->set_outcome(v1::DispatchResponse::STALE_TERM);
    resp->set_highest_term(highest);
    resp->set_detail(absl::StrCat("term ", req.term(), " of ", req.coordinator_id(),
                                  " is not the newest this node has seen: term ", highest, " of ",
                                  holder));
    return;
  }
  ExchangeLane* lane = FindLane(parts_.lanes, req.exchange());
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
  LaneResult r = lane->Execute(LaneRequestFromProto(req));
  std::optional<Park> parked_by_reply;
  if (r.park && r.outcome == LaneResult::Outcome::kReplied) parked_by_reply = r.park;
  LaneResultToProto(req.exchange(), lane->rules(), parts_.egress_ip, std::move(r), resp);
  if (parked_by_reply) {
    common::Log(common::LogLevel::kWarning, "node",
                absl::StrCat(req.exchange(), " parked this IP: HTTP ", parked_by_reply->http_status,
                             " ", parked_by_reply->kind, " for ",
                             absl::FormatDuration(parked_by_reply->until - parts_.clock.Now())));
    if (parts_.report_now) parts_.report_now();  // tell the coordinator at once
  }
}

}  // namespace marketprism::node
