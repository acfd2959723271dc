// File: common/budget/budget_book.h
//
// The client-side ledgers of one exchange for one scope key (an egress IP,
// or an account): one PoolLedger per pool of that scope, charged together. A
// request fits only if it fits in every pool it touches. Nodes keep one per
// exchange for their own IP; the coordinator keeps one per (exchange, IP).
//
// Times are the exchange's clock as the caller best knows it. Not
// thread-safe; the owner serialises.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "common/budget/pool_ledger.h"
#include "common/rules/rules.h"

namespace marketprism::common {

class BudgetBook {
 public:
  struct Ticket {
    std::vector<std::pair<int, LedgerTicket>> parts;  // pool index -> ledger ticket
  };

  struct PoolView {
    int pool = 0;
    std::string name;
    WindowKind window = WindowKind::kFixed;
    int64_t used = 0;      // including in flight
    int64_t reserved = 0;  // in flight
    int64_t capacity = 0;
    absl::Time window_start = absl::InfinitePast();  // fixed windows
    // Fixed windows: the window before, as the ledger counted it itself
    // beside the highest usage header seen for it (PoolLedger::PreviousWindow).
    std::optional<PoolLedger::WindowTally> previous;
  };

  // Keeps a reference to `rules`, which must outlive the book. Only pools
  // of `scope` are tracked (ip: an egress IP's book; account: one account's
  // pools, or a node's lease of them); charges to other pools are ignored.
  BudgetBook(const ExchangeRules& rules, absl::Duration uncertainty, Scope scope = Scope::kIp);

  bool Fits(absl::Time t, const Cost& cost) const;
  // The latest of the pools' earliest fits; InfiniteFuture when in-flight
  // replies (or nothing) must come first.
  absl::Time EarliestFit(absl::Time t, const Cost& cost) const;
  // The smallest share of capacity left in the pools `cost` touches, after
  // charging it: 1 = untouched, 0 = exactly full. For placement.
  double Headroom(absl::Time t, const Cost& cost) const;

  // Requests like `cost` per second that spend the budget: the slowest of
  // the pools it touches (PoolLedger::SpendRate); 0 when it touches none.
  double SpendRate(absl::Time t, const Cost& cost) const;

  Ticket Charge(absl::Time t, const Cost& cost);
  // `observed`: (pool index, used) from the exchange's usage header.
  void Complete(const Ticket& ticket, absl::Time replied,
                std::optional<std::pair<int, int64_t>> observed = std::nullopt);
  void Cancel(const Ticket& ticket);

  // The exchange refused at `t`: pool `pool` (or every pool, for -1) is spent.
  void MarkSpent(int pool, absl::Time t);

  // Keeps the ledgers' capacities in step with the rules (after an override).
  void SyncCapacities();
  // Sets one pool's capacity in this book only.
  void SetCapacity(int pool, int64_t capacity);
  void set_uncertainty(absl::Duration u);
  absl::Duration uncertainty() const { return uncertainty_; }

  std::vector<PoolView> Snapshot(absl::Time t) const;
  const ExchangeRules& rules() const { return rules_; }
  const PoolLedger* ledger(int pool) const;

 private:
  const ExchangeRules& rules_;
  absl::Duration uncertainty_;
  std::vector<std::optional<PoolLedger>> ledgers_;  // by pool index; ip-scoped only
};

// An estimate of a clock offset from bounds: each sample says the true offset
// lies within [lo, hi] (e.g. an exchange's server time taken between our send
// and our reply). The narrowest of the recent samples wins.
class OffsetEstimator {
 public:
  explicit OffsetEstimator(size_t window = 16) : window_(window) {}

  void AddBounds(absl::Duration lo, absl::Duration hi);
  bool has_estimate() const { return !samples_.empty(); }
  absl::Duration offset() const;
  absl::Duration uncertainty() const;

 private:
  const std::pair<absl::Duration, absl::Duration>* Best() const;

  size_t window_;
  std::vector<std::pair<absl::Duration, absl::Duration>> samples_;  // oldest first
};

}  // namespace marketprism::common
