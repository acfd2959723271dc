// File: common/budget/pool_ledger.h
//
// The client's mirror of one exchange limit pool (for one scope key, such as
// one egress IP). Nodes keep one per pool of their own IP and refuse to send
// what would not fit; the coordinator keeps one per (exchange, pool, scope
// key) to place requests. It must never be more optimistic than the exchange
// (that gets IPs banned) and should be no more pessimistic than it has to be
// (that wastes budget). What it cannot know, it assumes the worst of:
//
//  * A request in flight may land in any window from the one it was sent in
//    onwards, so it counts against every window until its reply settles it.
//  * A reply bounds the arrival time to [sent - u, replied + u] (u: clock
//    uncertainty). A request whose bounds straddle a fixed-window edge is
//    charged to both windows.
//  * A rolling-window entry counts until (reply time + length).
//  * For a bucket, delaying an earlier arrival can only lower the bucket's
//    level, so completed requests are replayed at their reply time and those
//    in flight are taken to arrive right now.
//
// Ground truth wins: a usage header seen on a reply raises the count; once
// nothing is in flight, the highest header seen in a window (plus the
// requests no header confirms) replaces our own count, up or down. A rejection marks the pool
// spent until the exchange's window moves on.
//
// All times are the exchange's time as the caller best knows it (local time
// plus the estimated clock offset). Not thread-safe; the owner serialises.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "common/rules/rules.h"

namespace marketprism::common {

// What Charge() hands back; give it to exactly one of Complete() or Cancel().
struct LedgerTicket {
  int64_t units = 0;
  absl::Time sent;
  // The clock uncertainty when it was sent: it bounds how early the request
  // may have arrived, however the estimate has changed since.
  int64_t uncertainty_us = 0;
};

// The clock estimate moved by `shift` while the request was out and is now
// good to `uncertainty`: re-expresses the ticket's send time in the new time
// base. Both estimates bound the true send time, so it keeps what both allow
// (or, should they disagree, what either allows).
void RebaseTicket(LedgerTicket& ticket, absl::Duration shift, absl::Duration uncertainty);

class PoolLedger {
 public:
  explicit PoolLedger(const PoolRule& rule, absl::Duration uncertainty = absl::Milliseconds(1));

  // Whether `units` fit if sent at `t`.
  bool Fits(absl::Time t, int64_t units) const;

  // The earliest time >= t at which `units` fit given what is known now.
  // absl::InfiniteFuture() when only replies to requests in flight (or
  // nothing, for units > capacity) can make room.
  absl::Time EarliestFit(absl::Time t, int64_t units) const;

  // Records a request sent at `t`. The caller has checked Fits().
  LedgerTicket Charge(absl::Time t, int64_t units);

  // The exchange replied at `replied`. `observed_used` is the pool's usage
  // the exchange reported on the reply, if it reports one.
  void Complete(const LedgerTicket& ticket, absl::Time replied,
                std::optional<int64_t> observed_used = std::nullopt);

  // The request never reached the exchange: refund it.
  void Cancel(const LedgerTicket& ticket);

  // The exchange refused a request at `t` for this pool: treat the pool as
  // spent until its window moves on (fixed: the window's end; rolling: one
  // length; bucket: the level is zero at t).
  void MarkSpent(absl::Time t);

  // The pool's state is unknown (e.g. at start-up, another process may have
  // used it): assume it was spent at `t`, exactly as MarkSpent.
  void AssumeSpentAt(absl::Time t) { MarkSpent(t); }

  // Units we count as used at `t`, including those in flight.
  int64_t Used(absl::Time t) const;
  // The most this ledger can explain of a usage header on a reply to a
  // request sent at `sent` and answered at `replied`: the highest count
  // (with everything in flight) of any window the request may have landed
  // in. A header above it is someone else's use of the IP.
  int64_t MostExplained(absl::Time sent, absl::Time replied) const;
  // Requests of `units` per second that spend this pool: what is left of a
  // fixed window over the time left of it; the capacity over the length for
  // a rolling window; the refill for a bucket.
  double SpendRate(absl::Time t, int64_t units) const;
  int64_t InFlight() const { return inflight_units_; }
  int64_t capacity() const { return capacity_; }
  void set_capacity(int64_t capacity) { capacity_ = capacity; }
  WindowKind kind() const { return kind_; }
  absl::Duration length() const { return absl::Microseconds(length_us_); }
  absl::Duration uncertainty() const { return absl::Microseconds(uncertainty_us_); }
  void set_uncertainty(absl::Duration u) { uncertainty_us_ = absl::ToInt64Microseconds(u); }

  // Fixed windows: the start of the window holding `t`.
  absl::Time WindowStart(absl::Time t) const;

  // Fixed windows: the window before the one holding `t`, as this ledger
  // counted it itself (`own`: the units of its answered requests that may
  // have landed there, a request charged to each window it may have landed
  // in; no usage header changes it) beside the highest usage header seen for
  // it (`observed`, -1 if none). What `own` misses or adds is the ledger's
  // drift from the exchange. Empty for other kinds or before any use.
  struct WindowTally {
    absl::Time start;
    int64_t own = 0;
    int64_t observed = -1;
  };
  std::optional<WindowTally> PreviousWindow(absl::Time t) const;

  // The ledger's state around `t`, for diagnostics.
  std::string DebugString(absl::Time t) const;

 private:
  struct FixedWindow {
    int64_t settled = 0;     // completed requests that may have landed here
    int64_t unverified = 0;  // the part of `settled` no usage header confirms:
                             // requests that may also be in another window,
                             // or whose reply carried no usage
    int64_t observed = -1;   // highest usage header seen for this window
    int64_t own = 0;         // `settled` before any header replaced it
    bool spent = false;      // the exchange refused in this window
  };

  int64_t WindowIndex(int64_t us) const;
  int64_t FixedUsed(int64_t index) const;
  void Prune(int64_t now_us) const;
  int64_t RollingUsed(int64_t now_us) const;
  // Micro-credits left at `now_us` from completed requests only, and after
  // also taking those in flight; either may be negative.
  int64_t SettledBucketLevel(int64_t now_us) const;
  int64_t BucketLevel(int64_t now_us) const;

  WindowKind kind_;
  int64_t length_us_;
  int64_t capacity_;
  int64_t refill_per_second_;
  int64_t uncertainty_us_;

  int64_t inflight_units_ = 0;
  int64_t inflight_count_ = 0;

  // kFixed: per window index. Old windows are pruned lazily.
  mutable std::map<int64_t, FixedWindow> windows_;

  // kRolling: completed entries (expiry time, units) in completion order,
  // which is expiry order.
  mutable std::deque<std::pair<int64_t, int64_t>> rolling_;
  mutable int64_t rolling_sum_ = 0;

  // kBucket: level (micro-credits) after replaying completed requests up to
  // `bucket_time_us_`.
  int64_t bucket_level_ = 0;
  int64_t bucket_time_us_ = INT64_MIN;
};

}  // namespace marketprism::common
