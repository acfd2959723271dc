#include "coordinator/lease_pusher.h"

#include <map>
#include <set>
#include <vector>

namespace marketprism::coordinator {

namespace {

constexpr absl::Duration kTickEvery = absl::Milliseconds(250);

// The lease wire: v1::AccountLease <-> LeaseGrant, each way once.
std::vector<LeaseGrant> GrantsFromProto(const common::RulesBook& rules,
                                        const google::protobuf::RepeatedPtrField<v1::AccountLease>& in) {
  std::vector<LeaseGrant> out;
  for (const v1::AccountLease& l : in) {
    const common::ExchangeRules* r = rules.Find(l.exchange());
    if (r == nullptr || r->PoolIndex(l.pool()) < 0) continue;
    LeaseGrant g;
    g.key = {l.exchange(), l.account(), r->PoolIndex(l.pool())};
    g.units = l.units();
    g.version = l.version();
    for (const v1::LeaseHolder& h : l.holders()) g.holders.emplace_back(h.node_id(), h.units());
    for (const v1::LeaseFreeing& f : l.freeing()) g.freeing.push_back({f.id(), f.units(), absl::Milliseconds(f.ms_left())});
    out.push_back(std::move(g));
  }
  return out;
}

void GrantToProto(const common::RulesBook& rules, const LeaseGrant& g, v1::AccountLease* a) {
  a->set_exchange(g.key.exchange);
  a->set_account(g.key.account);
  a->set_pool(rules.Find(g.key.exchange)->pools()[g.key.pool].name);
  a->set_units(g.units);
  a->set_version(g.version);
  for (const auto& [holder, units] : g.holders) {
    v1::LeaseHolder* h = a->add_holders();
    h->set_node_id(holder);
    h->set_units(units);
  }
  for (const Freeing& f : g.freeing) {
    v1::LeaseFreeing* out = a->add_freeing();
    out->set_id(f.id);
    out->set_units(f.units);
    out->set_ms_left(absl::ToInt64Milliseconds(absl::Ceil(f.left, absl::Milliseconds(1))));
  }
}

}  // namespace

LeasePusher::LeasePusher(Options options, common::Clock& clock, Scheduler& scheduler, NodeSessions& sessions,
                         std::function<Leadership()> leadership)
    : options_(std::move(options)),
      clock_(clock),
      scheduler_(scheduler),
      sessions_(sessions),
      leadership_(std::move(leadership)),
      leases_(std::make_unique<AccountLeases>(scheduler.rules(), options_.leases)),
      timer_(clock, [this] {
        Tick();
        timer_.ArmIn(kTickEvery);
      }) {
  // Without gossip this coordinator leads term 1 from the start.
  if (!options_.elected) leases_->TakeLead(clock_.Now(), /*fresh=*/true);
}

LeasePusher::~LeasePusher() { Stop(); }

void LeasePusher::Start() { timer_.ArmIn(kTickEvery); }
void LeasePusher::Stop() { timer_.Stop(); }

void LeasePusher::AddAccount(const std::string& exchange, const std::string& account) {
  bool added;
  {
    absl::MutexLock lock(&mu_);
    added = leases_->AddAccount(exchange, account);
  }
  if (added) Tick();  // its shares go out before the request waits long
}

void LeasePusher::Registered(const std::string& node_id,
                             const google::protobuf::RepeatedPtrField<v1::AccountLease>& held) {
  std::vector<LeaseGrant> grants = GrantsFromProto(scheduler_.rules(), held);
  absl::MutexLock lock(&mu_);
  leases_->Registered(clock_.Now(), node_id, grants);
}

void LeasePusher::TakeLead(bool fresh) {
  absl::MutexLock lock(&mu_);
  leases_->TakeLead(clock_.Now(), fresh);
}

void LeasePusher::Tick() {
  absl::MutexLock lock(&mu_);
  if (leases_->empty()) return;
  Leadership l = leadership_();
  if (options_.elected && !l.leading) return;
  std::set<std::string> connected = sessions_.Connected();
  std::map<std::string, std::set<std::string>> in_view;
  SchedulerSnapshot snapshot = scheduler_.Snapshot();
  for (const NodeSnapshot& n : snapshot.nodes) {
    if (n.state == NodeState::kDisconnected || !connected.contains(n.node_id)) continue;
    for (const std::string& e : n.ready) in_view[e].insert(n.node_id);
  }
  AccountLeases::Usage used;
  for (const NodeSnapshot& n : snapshot.nodes) {
    for (const NodeSnapshot::Lease& lease : n.leases) {
      for (const common::BudgetBook::PoolView& p : lease.pools) {
        used[{n.node_id, LeaseKey{lease.exchange, lease.account, p.pool}}] = p.used;
      }
    }
  }
  std::map<std::string, std::vector<LeaseGrant>> grants = leases_->Tick(clock_.Now(), in_view, used);
  if (grants.empty()) return;
  Scheduler::LeaseShares shares;
  for (const auto& [holder, units] : leases_->Shares()) {
    const auto& [node, key] = holder;
    shares[{key.exchange, key.account, node}][key.pool] = units;
  }
  scheduler_.SetLeaseShares(shares);
  for (const auto& [node, list] : grants) {
    v1::CoordinatorMessage m;
    v1::Leases* out = m.mutable_leases();
    out->set_term(l.term);
    out->set_coordinator_id(options_.coordinator_id);
    out->set_duration_ms(absl::ToInt64Milliseconds(leases_->options().duration));
    for (const LeaseGrant& g : list) GrantToProto(scheduler_.rules(), g, out->add_leases());
    sessions_.Send(node, m);
  }
}

}  // namespace marketprism::coordinator
