#include "common/wire/node_api.h"

namespace marketprism::wire {

void CostToProto(const common::ExchangeRules& rules, const common::Cost& cost,
                 Repeated<v1::PoolCharge>* out) {
  for (const common::Cost::Charge& c : cost.charges) {
    v1::PoolCharge* pc = out->Add();
    pc->set_pool(rules.pools()[c.pool].name);
    pc->set_units(c.units);
  }
}

common::Cost CostFromProto(const common::ExchangeRules& rules, const Repeated<v1::PoolCharge>& in) {
  common::Cost cost;
  for (const v1::PoolCharge& c : in) {
    int index = rules.PoolIndex(c.pool());
    if (index >= 0) cost.charges.push_back({index, c.units()});
  }
  return cost;
}

void PoolUsageToProto(absl::string_view exchange, absl::string_view scope_key,
                      const std::vector<common::BudgetBook::PoolView>& pools,
                      Repeated<v1::PoolUsage>* out) {
  for (const common::BudgetBook::PoolView& p : pools) {
    v1::PoolUsage* u = out->Add();
    u->set_exchange(std::string(exchange));
    u->set_pool(p.name);
    u->set_scope_key(std::string(scope_key));
    u->set_window(std::string(common::WindowKindName(p.window)));
    u->set_used(p.used);
    u->set_reserved(p.reserved);
    u->set_capacity(p.capacity);
    if (p.window_start != absl::InfinitePast()) u->set_window_start_ms(absl::ToUnixMillis(p.window_start));
    if (p.previous) {
      u->set_previous_window_start_ms(absl::ToUnixMillis(p.previous->start));
      u->set_previous_window_own(p.previous->own);
      u->set_previous_window_observed(p.previous->observed);
    }
  }
}

void UsageEventToProto(const common::ExchangeRules& rules, const common::UsageEvent& event,
                       v1::UsageEvent* out) {
  out->set_exchange(rules.name());
  CostToProto(rules, event.cost, out->mutable_charges());
  out->set_sent_unix_us(absl::ToUnixMicros(event.sent_ex));
  out->set_replied_unix_us(absl::ToUnixMicros(event.replied_ex));
  out->set_observed_used(event.observed ? event.observed->second : -1);
  if (event.observed) out->set_observed_pool(event.observed->first);
}

common::UsageEvent UsageEventFromProto(const common::ExchangeRules& rules, const v1::UsageEvent& in) {
  common::UsageEvent e;
  e.cost = CostFromProto(rules, in.charges());
  e.sent_ex = absl::FromUnixMicros(in.sent_unix_us());
  e.replied_ex = absl::FromUnixMicros(in.replied_unix_us());
  if (in.observed_used() >= 0 && !in.observed_pool().empty()) {
    e.observed = std::make_pair(in.observed_pool(), in.observed_used());
  }
  return e;
}

void ClockToProto(const common::ExchangeClock& clock, v1::ClockEstimate* out) {
  out->set_exchange(clock.exchange);
  out->set_offset_us(absl::ToInt64Microseconds(clock.offset));
  out->set_uncertainty_us(absl::ToInt64Microseconds(clock.uncertainty));
}

std::vector<common::ExchangeClock> ClocksFromProto(const Repeated<v1::ClockEstimate>& in) {
  std::vector<common::ExchangeClock> out;
  for (const v1::ClockEstimate& c : in) {
    out.push_back({c.exchange(), absl::Microseconds(c.offset_us()), absl::Microseconds(c.uncertainty_us())});
  }
  return out;
}

void BanToProto(const common::ExchangeBan& ban, v1::Ban* out) {
  out->set_exchange(ban.exchange);
  out->set_kind(ban.kind);
  out->set_until_ms(absl::ToUnixMillis(ban.until));
  out->set_http_status(ban.http_status);
}

common::ExchangeBan BanFromProto(const v1::Ban& in) {
  return {in.exchange(), in.kind(), absl::FromUnixMillis(in.until_ms()), in.http_status()};
}

void LimitsToProto(const PoolLimits& limits, v1::Limits* out) {
  for (const auto& [exchange, pool, capacity] : limits) {
    v1::PoolLimit* l = out->add_pools();
    l->set_exchange(exchange);
    l->set_pool(pool);
    l->set_capacity(capacity);
  }
}

PoolLimits LimitsFromProto(const v1::Limits& in) {
  PoolLimits out;
  for (const v1::PoolLimit& l : in.pools()) out.emplace_back(l.exchange(), l.pool(), l.capacity());
  return out;
}

}  // namespace marketprism::wire
