#include "common/budget/budget_book.h"

#include <algorithm>

namespace marketprism::common {

BudgetBook::BudgetBook(const ExchangeRules& rules, absl::Duration uncertainty, Scope scope)
    : rules_(rules), uncertainty_(uncertainty) {
  ledgers_.resize(rules.pools().size());
  for (size_t i = 0; i < rules.pools().size(); ++i) {
    if (rules.pools()[i].scope == scope) ledgers_[i].emplace(rules.pools()[i], uncertainty);
  }
}

const PoolLedger* BudgetBook::ledger(int pool) const {
  if (pool < 0 || pool >= static_cast<int>(ledgers_.size()) || !ledgers_[pool]) return nullptr;
  return &*ledgers_[pool];
}

bool BudgetBook::Fits(absl::Time t, const Cost& cost) const {
  for (const Cost::Charge& c : cost.charges) {
    const PoolLedger* l = ledger(c.pool);
    if (l != nullptr && !l->Fits(t, c.units)) return false;
  }
  return true;
}

absl::Time BudgetBook::EarliestFit(absl::Time t, const Cost& cost) const {
  // With no new charges a pool only gets freer as time passes, so the latest
  // of the pools' earliest fits is the earliest time all of them fit.
  absl::Time at = t;
  for (const Cost::Charge& c : cost.charges) {
    const PoolLedger* l = ledger(c.pool);
    if (l != nullptr) at = std::max(at, l->EarliestFit(t, c.units));
  }
  return at;
}

double BudgetBook::Headroom(absl::Time t, const Cost& cost) const {
  double h = 1.0;
  for (const Cost::Charge& c : cost.charges) {
    const PoolLedger* l = ledger(c.pool);
    if (l == nullptr || l->capacity() <= 0) continue;
    double left = static_cast<double>(l->capacity() - l->Used(t) - c.units) /
                  static_cast<double>(l->capacity());
    h = std::min(h, left);
  }
  return h;
}

double BudgetBook::SpendRate(absl::Time t, const Cost& cost) const {
  double rate = -1;
  for (const Cost::Charge& c : cost.charges) {
    const PoolLedger* l = ledger(c.pool);
    if (l == nullptr || c.units <= 0) continue;
    double r = l->SpendRate(t, c.units);
    rate = rate < 0 ? r : std::min(rate, r);
  }
  return std::max(0.0, rate);
}

BudgetBook::Ticket BudgetBook::Charge(absl::Time t, const Cost& cost) {
  Ticket ticket;
  for (const Cost::Charge& c : cost.charges) {
    if (ledger(c.pool) == nullptr) continue;
    ticket.parts.emplace_back(c.pool, ledgers_[c.pool]->Charge(t, c.units));
  }
  return ticket;
}

void BudgetBook::Complete(const Ticket& ticket, absl::Time replied,
                          std::optional<std::pair<int, int64_t>> observed) {
  for (const auto& [pool, part] : ticket.parts) {
    std::optional<int64_t> seen;
    if (observed && observed->first == pool) seen = observed->second;
    ledgers_[pool]->Complete(part, replied, seen);
  }
}

void BudgetBook::Cancel(const Ticket& ticket) {
  for (const auto& [pool, part] : ticket.parts) ledgers_[pool]->Cancel(part);
}

void BudgetBook::MarkSpent(int pool, absl::Time t) {
  for (size_t i = 0; i < ledgers_.size(); ++i) {
    if (ledgers_[i] && (pool < 0 || static_cast<int>(i) == pool)) ledgers_[i]->MarkSpent(t);
  }
}

void BudgetBook::SyncCapacities() {
  for (size_t i = 0; i < ledgers_.size(); ++i) {
    if (ledgers_[i]) ledgers_[i]->set_capacity(rules_.pools()[i].capacity);
  }
}

void BudgetBook::SetCapacity(int pool, int64_t capacity) {
  if (pool >= 0 && pool < static_cast<int>(ledgers_.size()) && ledgers_[pool]) {
    ledgers_[pool]->set_capacity(capacity);
  }
}

void BudgetBook::set_uncertainty(absl::Duration u) {
  uncertainty_ = u;
  for (auto& l : ledgers_) {
    if (l) l->set_uncertainty(u);
  }
}

std::vector<BudgetBook::PoolView> BudgetBook::Snapshot(absl::Time t) const {
  std::vector<PoolView> out;
  for (size_t i = 0; i < ledgers_.size(); ++i) {
    if (!ledgers_[i]) continue;
    const PoolLedger& l = *ledgers_[i];
    PoolView v;
    v.pool = static_cast<int>(i);
    v.name = rules_.pools()[i].name;
    v.window = l.kind();
    v.used = l.Used(t);
    v.reserved = l.InFlight();
    v.capacity = l.capacity();
    if (l.kind() == WindowKind::kFixed) v.window_start = l.WindowStart(t);
    v.previous = l.PreviousWindow(t);
    out.push_back(std::move(v));
  }
  return out;
}

// ---- OffsetEstimator --------------------------------------------------------

void OffsetEstimator::AddBounds(absl::Duration lo, absl::Duration hi) {
  if (hi < lo) std::swap(lo, hi);
  samples_.emplace_back(lo, hi);
  if (samples_.size() > window_) samples_.erase(samples_.begin());
}

const std::pair<absl::Duration, absl::Duration>* OffsetEstimator::Best() const {
  const std::pair<absl::Duration, absl::Duration>* best = nullptr;
  for (const auto& s : samples_) {
    if (best == nullptr || s.second - s.first <= best->second - best->first) best = &s;
  }
  return best;
}

absl::Duration OffsetEstimator::offset() const {
  const auto* b = Best();
  return b == nullptr ? absl::ZeroDuration() : (b->first + b->second) / 2;
}

absl::Duration OffsetEstimator::uncertainty() const {
  const auto* b = Best();
  return b == nullptr ? absl::InfiniteDuration() : (b->second - b->first) / 2;
}

}  // namespace marketprism::common
