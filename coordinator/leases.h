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
  // Pools with a window longer than this (Binance's ORDERS_1D) are handed out
  // in chunks of capacity / chunks as the shares get used, not split evenly:
  // a share taken back returns only when such a window ends, so a node that
  // joins or restarts takes a chunk from what was never handed out.
  absl::Duration long_window = absl::Minutes(5);
  // A holder out of view keeps its share this long before it is taken back
  // (a new leader's nodes take a moment to register with it; a share taken
  // back returns only a window later).
  absl::Duration absence_grace = absl::Seconds(3);
  int64_t chunks = 16;
};

struct LeaseKey {
  std::string exchange;
  std::string account;
  int pool = 0;
  auto operator<=>(const LeaseKey&) const = default;
};

// Units taken from a holder that still count as held for a while.
struct Freeing {
  uint64_t id = 0;          // the same reduction reported by several nodes counts once
  int64_t units = 0;
  absl::Duration left;      // until they are free (from when the lease was sent)
};

// One node's lease as sent, with the allocation it belongs to.
struct LeaseGrant {
  LeaseKey key;
  int64_t units = 0;
  int64_t version = 0;
  std::vector<std::pair<std::string, int64_t>> holders;  // node id -> units
  std::vector<Freeing> freeing;
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

  // A node registering reports the leases it holds; the allocation of each
  // pool reported is adopted, its holders taken to hold their shares until
  // `now` + duration + slack at least.
  void Adopt(absl::Time now, const std::vector<LeaseGrant>& reported);
  // `node` registered (again) reporting `reported`. A share it held here
  // that it does not report belongs to a process that is gone (restarted, or
  // its lease lapsed): what that one spent is unknown to the new one, so the
  // share is taken back (returning a window later) rather than handed on.
  void Registered(absl::Time now, const std::string& node, const std::vector<LeaseGrant>& reported);

  // Reallocates and renews. `in_view`, per exchange: the nodes with a
  // session here that serve it. Returns every lease each node in view is to
  // hold from now (an empty list withdraws all), for every node that should
  // hear now: all of them when a renewal is due or anything changed.
  // `used`: what each node's share has spent in the pool's current window
  // as far as the leader knows, for the chunked (long-window) pools.
  using Usage = std::map<std::pair<std::string, LeaseKey>, int64_t>;
  std::map<std::string, std::vector<LeaseGrant>> Tick(
      absl::Time now, const std::map<std::string, std::set<std::string>>& in_view, const Usage& used = {});

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
    absl::Time out_since = absl::InfiniteFuture();  // first seen out of view
  };
  struct Pool {
    int64_t capacity = 0;
    int64_t version = 0;
    std::map<std::string, Holding> holders;
    // Units taken from a holder that count as held until the time given.
    struct Pending {
      absl::Time at;
      int64_t units = 0;
      uint64_t id = 0;
    };
    std::vector<Pending> freeing;
    absl::Time usable_from = absl::InfinitePast();  // before it, no new allocation
  };

  absl::Duration WindowOf(int pool, const std::string& exchange) const;
  // Takes units from a holder: they free a window after its lease's end.
  void Reduce(Pool& p, const LeaseKey& key, const std::string& node, int64_t to);
  // Capacity neither held nor waiting to be freed at `now`.
  static int64_t Free(const Pool& p, absl::Time now);

  const common::RulesBook& rules_;
  LeaseOptions options_;
  std::map<LeaseKey, Pool> pools_;
  absl::Time led_since_ = absl::InfinitePast();
  bool fresh_ = true;
  uint64_t next_freeing_id_ = 1;
  absl::Time next_renewal_ = absl::InfinitePast();
};

}  // namespace marketprism::coordinator
