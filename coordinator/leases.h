// File: coordinator/leases.h
//
// Account leases: how the leader shares an account-scoped pool (Binance's
// ORDERS_10S and ORDERS_1D, counted per API key across every IP) among its
// nodes so that no partition, failover or crash can spend it twice.
//
// Each node holds a share (units per window of the pool) and refuses account
// requests beyond it, whoever dispatches them; the shares of one pool never
// add up to more than its capacity. A lease lasts `duration` from receipt
// unless renewed, so with no leader the nodes spend what they hold and then
// nothing. The rules that keep the sum safe:
//
//  * A share taken from a node (it died, left the leader's view, or a
//    newcomer needs its part) is handed to another only after the old share
//    can no longer be spent, and what it spent can no longer count: the old
//    lease's expiry (last renewal + duration + slack) plus the pool's window.
//  * The leader renews or changes leases only while it sees (has sessions
//    with) more than half of the pool's current holders. Sessions are exclusive
//    (a node registers with one leader), so two leaders on two sides of a
//    partition can never both do so: the side without a majority lets its
//    leases lapse while the other reclaims them.
//  * A new leader adopts the allocations its nodes report (each lease
//    carries the whole allocation); a pool no registered node knows is
//    first handed out a lease duration plus a window after taking the lead
//    (for the cluster's first term, after `fresh_wait`).
//
// Free of I/O and clocks: the caller passes local times. Not thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/time/time.h"
#include "common/rules/rules.h"

namespace marketprism::coordinator {

struct LeaseOptions {
  absl::Duration duration = absl::Seconds(10);  // a lease lasts this long from receipt
  absl::Duration renew = absl::Seconds(2);      // the leader resends leases this often
  // Bounds the send-to-receipt delay and the clock rates' difference.
  absl::Duration slack = absl::Seconds(1);
  // The first leader of a cluster (term 1) waits only this long for nodes
  // to report leases before sharing a pool out afresh: nobody led before it
  // but the same lone coordinator, restarted, whose nodes re-register at once.
  absl::Duration fresh_wait = absl::Seconds(3);
};

struct LeaseKey {
  std::string exchange;
  std::string account;
  int pool = 0;
  auto operator<=>(const LeaseKey&) const = default;
};

// One node's lease as sent, with the allocation it belongs to.
struct LeaseGrant {
  LeaseKey key;
  int64_t units = 0;
  int64_t version = 0;
  std::vector<std::pair<std::string, int64_t>> holders;  // node id -> units
};

class AccountLeases {
 public:
  // `rules` must outlive this.
  AccountLeases(const common::RulesBook& rules, LeaseOptions options = {});

  // A request for `account` arrived: its pools are to be leased out.
  // True when the account is new here.
  bool AddAccount(const std::string& exchange, const std::string& account);

  // This coordinator takes the lead at `now`: forgets what it held and waits
  // for adoption (or the safe delay) before creating allocations. `fresh`:
  // the cluster's first term (see fresh_wait).
  void TakeLead(absl::Time now, bool fresh);

  // A node registering reports the leases it holds; the newest allocation
  // of each pool (highest version) is adopted, its holders taken to hold
  // their shares until `now` + duration + slack at least.
  void Adopt(absl::Time now, const std::vector<LeaseGrant>& reported);

  // Reallocates and renews. `in_view`, per exchange: the nodes with a
  // session here that serve it. Returns every lease each node in view is to
  // hold from now (an empty list withdraws all), for every node that should
  // hear now: all of them when a renewal is due or anything changed.
  std::map<std::string, std::vector<LeaseGrant>> Tick(
      absl::Time now, const std::map<std::string, std::set<std::string>>& in_view);

  // Each node's current share of each pool (for placement).
  std::map<std::pair<std::string, LeaseKey>, int64_t> Shares() const;
  // Units of the pool not held by anyone now and not waiting to be freed.
  int64_t Available(const LeaseKey& key, absl::Time now) const;
  // No account has been seen: Tick has nothing to do.
  bool empty() const { return pools_.empty(); }

  const LeaseOptions& options() const { return options_; }

 private:
  struct Holding {
    int64_t units = 0;
    absl::Time expires = absl::InfinitePast();  // latest time it may still be spent
  };
  struct Pool {
    int64_t capacity = 0;
    int64_t version = 0;
    std::map<std::string, Holding> holders;
    // Units taken from a holder that count as held until the time given.
    std::vector<std::pair<absl::Time, int64_t>> freeing;
    absl::Time usable_from = absl::InfinitePast();  // before it, no new allocation
  };

  absl::Duration WindowOf(int pool, const std::string& exchange) const;
  // Takes units from a holder: they free a window after its lease's end.
  void Reduce(Pool& p, const LeaseKey& key, const std::string& node, int64_t to);
  int64_t Free(Pool& p, absl::Time now) const;

  const common::RulesBook& rules_;
  LeaseOptions options_;
  std::map<LeaseKey, Pool> pools_;
  absl::Time led_since_ = absl::InfinitePast();
  bool fresh_ = true;
  absl::Time next_renewal_ = absl::InfinitePast();
};

}  // namespace marketprism::coordinator
