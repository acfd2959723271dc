#include "coordinator/leases.h"

#include <algorithm>

namespace marketprism::coordinator {

AccountLeases::AccountLeases(const common::RulesBook& rules, LeaseOptions options)
    : rules_(rules), options_(options) {}

absl::Duration AccountLeases::WindowOf(int pool, const std::string& exchange) const {
  const common::PoolRule& r = rules_.Find(exchange)->pools()[pool];
  if (r.window == common::WindowKind::kBucket) {
    return absl::Seconds(static_cast<double>(r.capacity) / std::max<int64_t>(1, r.refill_per_second));
  }
  return r.length;
}

bool AccountLeases::AddAccount(const std::string& exchange, const std::string& account) {
  const common::ExchangeRules* rules = rules_.Find(exchange);
  if (rules == nullptr) return false;
  bool added = false;
  for (size_t i = 0; i < rules->pools().size(); ++i) {
    if (rules->pools()[i].scope != common::Scope::kAccount) continue;
    LeaseKey key{exchange, account, static_cast<int>(i)};
    if (pools_.contains(key)) continue;
    added = true;
    Pool& p = pools_[key];
    p.capacity = rules->pools()[i].capacity;
    // A previous leader may have handed this pool out to nodes that have
    // not told us: their leases must lapse and their spending leave the
    // window before the pool is ours to share.
    p.usable_from = fresh_ ? led_since_ + options_.fresh_wait
                           : led_since_ + options_.duration + options_.slack + WindowOf(key.pool, exchange);
  }
  return added;
}

void AccountLeases::TakeLead(absl::Time now, bool fresh) {
  pools_.clear();
  led_since_ = now;
  // Ids of this leadership's reductions, apart from any earlier leader's.
  next_freeing_id_ = static_cast<uint64_t>(absl::ToUnixNanos(now)) << 8;
  fresh_ = fresh;
  next_renewal_ = now;
}

void AccountLeases::Adopt(absl::Time now, const std::vector<LeaseGrant>& reported) {
  for (const LeaseGrant& g : reported) {
    const common::ExchangeRules* rules = rules_.Find(g.key.exchange);
    if (rules == nullptr || g.key.pool < 0 || g.key.pool >= static_cast<int>(rules->pools().size()) ||
        rules->pools()[g.key.pool].scope != common::Scope::kAccount) {
      continue;
    }
    Pool& p = pools_[g.key];
    if (p.capacity == 0) p.capacity = rules->pools()[g.key.pool].capacity;
    // Whatever anyone reports may be held: keep the larger share of each
    // holder (allocations seen at different times only ever over-count).
    for (const auto& [node, units] : g.holders) {
      Holding& h = p.holders[node];
      h.units = std::max(h.units, units);
      h.expires = std::max(h.expires, now + options_.duration + options_.slack);
    }
    // Units an earlier leader took back that may still be spent or count.
    for (const Freeing& f : g.freeing) {
      bool known = std::any_of(p.freeing.begin(), p.freeing.end(),
                               [&](const Pool::Pending& e) { return e.id == f.id; });
      if (!known) p.freeing.push_back({now + f.left + options_.slack, f.units, f.id});
    }
    p.version = std::max(p.version, g.version);
    p.usable_from = absl::InfinitePast();
  }
}

void AccountLeases::Registered(absl::Time now, const std::string& node, const std::vector<LeaseGrant>& reported) {
  for (auto& [pool_key, p] : pools_) {
    const LeaseKey& key = pool_key;
    auto h = p.holders.find(node);
    if (h == p.holders.end() || h->second.units == 0) continue;
    bool kept = std::any_of(reported.begin(), reported.end(), [&](const LeaseGrant& g) { return g.key == key; });
    if (!kept) Reduce(p, key, node, 0);
  }
  Adopt(now, reported);
}

void AccountLeases::Reduce(Pool& p, const LeaseKey& key, const std::string& node, int64_t to) {
  Holding& h = p.holders[node];
  if (to >= h.units) return;
  p.freeing.push_back({h.expires + WindowOf(key.pool, key.exchange), h.units - to, next_freeing_id_++});
  h.units = to;
  ++p.version;
}

int64_t AccountLeases::Free(const Pool& p, absl::Time now) {
  int64_t free = p.capacity;
  for (const auto& [node, h] : p.holders) free -= h.units;
  for (const Pool::Pending& f : p.freeing) free -= f.at > now ? f.units : 0;
  return free;
}

int64_t AccountLeases::Available(const LeaseKey& key, absl::Time now) const {
  auto it = pools_.find(key);
  return it == pools_.end() ? 0 : Free(it->second, now);
}

std::map<std::string, std::vector<LeaseGrant>> AccountLeases::Tick(
    absl::Time now, const std::map<std::string, std::set<std::string>>& in_view, const Usage& used) {
  static const std::set<std::string> kNone;
  bool changed = false;
  std::set<std::string> audience;
  std::map<std::string, std::vector<LeaseGrant>> out;
  std::vector<LeaseKey> renewed;
  for (auto& [key, p] : pools_) {
    auto v = in_view.find(key.exchange);
    const std::set<std::string>& view = v == in_view.end() ? kNone : v->second;
    audience.insert(view.begin(), view.end());
    std::erase_if(p.freeing, [now](const Pool::Pending& f) { return f.at <= now; });
    int holders = 0, seen = 0;
    for (const auto& [node, h] : p.holders) {
      if (h.units <= 0) continue;
      ++holders;
      if (view.contains(node)) ++seen;
    }
    int64_t before = p.version;
    if (holders > 0 && 2 * seen <= holders) {
      // No majority of the holders here: renew nothing, so whichever side
      // has one may take these shares back once they lapse. The nodes here
      // lose theirs now (the next message leaves the pool out).
      for (const std::string& node : view) Reduce(p, key, node, 0);
      changed |= p.version != before;
      continue;
    }
    if (holders == 0 && now < p.usable_from) continue;
    for (auto& [node, h] : p.holders) {
      if (view.contains(node)) {
        h.out_since = absl::InfiniteFuture();
        continue;
      }
      h.out_since = std::min(h.out_since, now);
      if (now - h.out_since >= options_.absence_grace) Reduce(p, key, node, 0);
    }
    std::erase_if(p.holders, [&](const auto& e) { return e.second.units == 0 && !view.contains(e.first); });
    if (!view.empty() && WindowOf(key.pool, key.exchange) > options_.long_window) {
      // A chunk more for each node whose share is running low.
      int64_t chunk = std::max<int64_t>(1, p.capacity / std::max<int64_t>(1, options_.chunks));
      int64_t avail = Free(p, now);
      for (const std::string& node : view) {
        Holding& h = p.holders[node];
        auto u = used.find({node, key});
        int64_t spent = u == used.end() ? 0 : u->second;
        if (h.units - spent > chunk / 2) continue;
        int64_t add = std::min(chunk, std::max<int64_t>(0, avail));
        if (add <= 0) continue;
        h.units += add;
        avail -= add;
        ++p.version;
      }
    } else if (!view.empty()) {
      // Equal shares among the nodes in view; the first ones take the remainder.
      int64_t n = static_cast<int64_t>(view.size());
      std::map<std::string, int64_t> target;
      int64_t i = 0;
      for (const std::string& node : view) target[node] = p.capacity / n + (i++ < p.capacity % n ? 1 : 0);
      for (const auto& [node, t] : target) Reduce(p, key, node, t);
      int64_t avail = Free(p, now);
      for (const auto& [node, t] : target) {
        Holding& h = p.holders[node];
        int64_t add = std::min(t - h.units, std::max<int64_t>(0, avail));
        if (add <= 0) continue;
        h.units += add;
        avail -= add;
        ++p.version;
      }
    }
    changed |= p.version != before;
    renewed.push_back(key);
  }
  if (!changed && now < next_renewal_) return out;
  next_renewal_ = now + options_.renew;
  for (const std::string& node : audience) out[node];  // an empty list withdraws everything
  for (const LeaseKey& key : renewed) {
    Pool& p = pools_[key];
    LeaseGrant proto;
    proto.key = key;
    proto.version = p.version;
    for (const auto& [node, h] : p.holders) proto.holders.emplace_back(node, h.units);
    for (const Pool::Pending& f : p.freeing) {
      if (f.at > now) proto.freeing.push_back({f.id, f.units, f.at - now});
    }
    auto v = in_view.find(key.exchange);
    if (v == in_view.end()) continue;
    for (const std::string& node : v->second) {
      Holding& h = p.holders[node];
      h.expires = now + options_.duration + options_.slack;
      LeaseGrant g = proto;
      g.units = h.units;
      out[node].push_back(std::move(g));
    }
  }
  return out;
}

std::map<std::pair<std::string, LeaseKey>, int64_t> AccountLeases::Shares() const {
  std::map<std::pair<std::string, LeaseKey>, int64_t> out;
  for (const auto& [key, p] : pools_) {
    for (const auto& [node, h] : p.holders) out[{node, key}] = h.units;
  }
  return out;
}

}  // namespace marketprism::coordinator
