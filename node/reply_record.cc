// File: node/reply_record.cc
#include "node/reply_record.h"

#include "absl/strings/str_cat.h"
#include "node/exchange_lane.h"

namespace marketprism::node {

namespace v1 = ::marketprism::v1;

v1::MarketEvent RecordOfReply(const v1::DispatchRequest& req, const v1::DispatchResponse& resp,
                              const common::ExchangeRules* rules, absl::string_view node_id, absl::Time replied) {
  const v1::RecordAs& as = req.record();
  v1::MarketEvent e;
  e.set_exchange(req.exchange());
  e.set_channel(as.channel());
  e.set_symbol(as.symbol());
  e.set_key(as.key());
  e.set_node_id(std::string(node_id));
  e.set_exchange_time_us(as.slot_us());
  e.set_received_time_us(absl::ToUnixMicros(replied));
  const bool replied_ok = resp.outcome() == v1::DispatchResponse::REPLIED;
  if (as.channel() == "poll") {
    v1::PollResult* p = e.mutable_poll();
    p->set_path(req.path());
    p->set_slot_us(as.slot_us());
    p->set_http_status(replied_ok ? resp.http_status() : 0);
    p->set_body(replied_ok ? resp.body() : resp.detail());
    return e;
  }
  v1::ExchangeHealth* h = e.mutable_exchange_health();
  h->set_path(req.path());
  h->set_slot_us(as.slot_us());
  if (!replied_ok) {
    h->set_status("down");
    h->set_error(resp.detail().empty() ? "no reply" : resp.detail());
    return e;
  }
  h->set_http_status(resp.http_status());
  int64_t round_trip_us = std::max<int64_t>(0, resp.replied_exchange_us() - resp.sent_exchange_us());
  h->set_response_us(round_trip_us);
  if (resp.http_status() != 200) {
    h->set_status("down");
    h->set_error(absl::StrCat("HTTP ", resp.http_status(), " ", resp.body().substr(0, 200)));
    return e;
  }
  if (rules != nullptr && rules->server_time()) {
    absl::StatusOr<int64_t> server_ms = JsonPathInt(resp.body(), rules->server_time()->field);
    if (!server_ms.ok()) {
      h->set_status("down");
      h->set_error(absl::StrCat("no server time in the reply: ", server_ms.status().message()));
      return e;
    }
    h->set_server_time_ms(*server_ms);
    // Our clock at the round trip's middle, against the exchange's stamp.
    int64_t middle_ms = (absl::ToUnixMicros(replied) - round_trip_us / 2) / 1000;
    h->set_clock_offset_ms(*server_ms - middle_ms);
  }
  if (as.slow_us() > 0 && round_trip_us > as.slow_us()) {
    h->set_status("slow");
    h->set_error(absl::StrCat("answered in ", round_trip_us / 1000, " ms, more than ", as.slow_us() / 1000, " ms"));
  } else {
    h->set_status("up");
  }
  return e;
}

}  // namespace marketprism::node
