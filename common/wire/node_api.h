// File: common/wire/node_api.h
//
// The node API's wire (marketprism/v1/node.proto and the shared messages of
// common.proto) against the domain types both sides use. Every conversion is
// written here once; the coordinator and the node call these and nothing
// else touches those fields.
//
// Pools travel by name and live by index: a charge or event naming a pool
// the rules do not know is dropped (an older peer's rules), never mapped to
// the wrong pool. Times are Unix microseconds on the wire, except bans and
// window starts (milliseconds, as the exchanges give them).
//
// Pure functions; thread-compatible.
#pragma once

#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/budget/budget_book.h"
#include "common/budget/usage_event.h"
#include "common/rules/rules.h"
#include "marketprism/v1/common.pb.h"
#include "marketprism/v1/node.pb.h"

namespace marketprism::wire {

namespace v1 = ::marketprism::v1;
template <typename T>
using Repeated = google::protobuf::RepeatedPtrField<T>;

// The method a request without one is sent with.
inline constexpr char kDefaultMethod[] = "GET";
inline std::string MethodOrDefault(const std::string& method) {
  return method.empty() ? kDefaultMethod : method;
}

// ---- cost ----
void CostToProto(const common::ExchangeRules& rules, const common::Cost& cost,
                 Repeated<v1::PoolCharge>* out);
common::Cost CostFromProto(const common::ExchangeRules& rules, const Repeated<v1::PoolCharge>& in);

// ---- a ledger's pools ----
// `scope_key`: the egress IP, or "account:<key>" for a lease.
void PoolUsageToProto(absl::string_view exchange, absl::string_view scope_key,
                      const std::vector<common::BudgetBook::PoolView>& pools,
                      Repeated<v1::PoolUsage>* out);

// ---- usage events ----
// The event's exchange is `rules.name()`.
void UsageEventToProto(const common::ExchangeRules& rules, const common::UsageEvent& event,
                       v1::UsageEvent* out);
// `rules` is the book of `in.exchange()`.
common::UsageEvent UsageEventFromProto(const common::ExchangeRules& rules, const v1::UsageEvent& in);

// ---- clocks and bans ----
void ClockToProto(const common::ExchangeClock& clock, v1::ClockEstimate* out);
std::vector<common::ExchangeClock> ClocksFromProto(const Repeated<v1::ClockEstimate>& in);
void BanToProto(const common::ExchangeBan& ban, v1::Ban* out);
common::ExchangeBan BanFromProto(const v1::Ban& in);

// ---- capacities the coordinator hands every ledger ----
using PoolLimits = std::vector<std::tuple<std::string, std::string, int64_t>>;  // exchange, pool, capacity
void LimitsToProto(const PoolLimits& limits, v1::Limits* out);
PoolLimits LimitsFromProto(const v1::Limits& in);

}  // namespace marketprism::wire
