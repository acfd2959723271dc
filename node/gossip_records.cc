#include "node/gossip_records.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/gossip/membership.h"

namespace marketprism::node {

namespace g = common::gossip;

std::optional<LeaderClaim> BestLeaderClaim(const std::vector<g::MemberView>& members) {
  std::optional<LeaderClaim> best;
  for (const g::MemberView& m : members) {
    if (!g::Live(m) || g::RoleOf(m) != g::MemberRole::kCoordinator) continue;
    int64_t term = g::NumberRecord(m, g::kTermRecord);
    if (term <= 0) continue;
    if (best && (term < best->term || (term == best->term && m.name > best->name))) continue;
    best = LeaderClaim{term, m.name, g::RecordValue(m, g::kGrpcRecord)};
  }
  return best;
}

std::string UsageRecord(const Lanes& lanes) {
  std::vector<std::string> parts;
  for (const auto& [exchange, lane] : lanes) {
    const common::BudgetBook::PoolView* busiest = nullptr;
    std::vector<common::BudgetBook::PoolView> views = lane->Usage();
    for (const auto& v : views) {
      if (v.capacity <= 0 || v.used <= 0) continue;
      if (busiest == nullptr || v.used * busiest->capacity > busiest->used * v.capacity) {
        busiest = &v;
      }
    }
    if (busiest != nullptr) {
      parts.push_back(
          absl::StrCat(exchange, ":", busiest->name, "=", busiest->used, "/", busiest->capacity));
    }
  }
  return parts.empty() ? "idle" : absl::StrJoin(parts, " ");
}

}  // namespace marketprism::node
