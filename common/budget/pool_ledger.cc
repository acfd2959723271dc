#include "common/budget/pool_ledger.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/int_math.h"

namespace marketprism::common {

namespace {
constexpr int64_t kMicrosPerCredit = 1'000'000;
}  // namespace

void RebaseTicket(LedgerTicket& ticket, absl::Duration shift, absl::Duration uncertainty) {
  int64_t sent = absl::ToUnixMicros(ticket.sent);
  int64_t moved = sent + absl::ToInt64Microseconds(shift);
  int64_t u_now = absl::ToInt64Microseconds(uncertainty);
  int64_t lo = std::max(sent - ticket.uncertainty_us, moved - u_now);
  int64_t hi = std::min(sent + ticket.uncertainty_us, moved + u_now);
  if (lo > hi) {
    lo = std::min(sent - ticket.uncertainty_us, moved - u_now);
    hi = std::max(sent + ticket.uncertainty_us, moved + u_now);
  }
  ticket.sent = absl::FromUnixMicros(lo + (hi - lo) / 2);
  ticket.uncertainty_us = (hi - lo + 1) / 2;
}

PoolLedger::PoolLedger(const PoolRule& rule, absl::Duration uncertainty)
    : kind_(rule.window),
      length_us_(std::max<int64_t>(1, absl::ToInt64Microseconds(rule.length))),
      capacity_(rule.capacity),
      refill_per_second_(std::max<int64_t>(1, rule.refill_per_second)),
      uncertainty_us_(absl::ToInt64Microseconds(uncertainty)) {
  bucket_level_ = capacity_ * kMicrosPerCredit;
}

int64_t PoolLedger::WindowIndex(int64_t us) const { return FloorDiv(us, length_us_); }

absl::Time PoolLedger::WindowStart(absl::Time t) const {
  return absl::FromUnixMicros(WindowIndex(absl::ToUnixMicros(t)) * length_us_);
}

// ---- fixed -----------------------------------------------------------------

int64_t PoolLedger::FixedUsed(int64_t index) const {
  auto it = windows_.find(index);
  if (it == windows_.end()) return inflight_units_;
  const FixedWindow& w = it->second;
  if (w.spent) return capacity_;
  return std::max(w.settled, w.observed) + inflight_units_;
}

void PoolLedger::Prune(int64_t now_us) const {
  if (kind_ == WindowKind::kFixed) {
    int64_t oldest_needed = WindowIndex(now_us - uncertainty_us_) - 1;
    while (!windows_.empty() && windows_.begin()->first < oldest_needed) {
      windows_.erase(windows_.begin());
    }
  } else if (kind_ == WindowKind::kRolling) {
    while (!rolling_.empty() && rolling_.front().first <= now_us) {
      rolling_sum_ -= rolling_.front().second;
      rolling_.pop_front();
    }
  }
}

// ---- rolling ---------------------------------------------------------------

int64_t PoolLedger::RollingUsed(int64_t now_us) const {
  Prune(now_us);
  return rolling_sum_ + inflight_units_;
}

// ---- bucket ----------------------------------------------------------------

int64_t PoolLedger::SettledBucketLevel(int64_t now_us) const {
  int64_t cap = capacity_ * kMicrosPerCredit;
  int64_t level = bucket_level_;
  if (bucket_time_us_ != INT64_MIN && now_us > bucket_time_us_) {
    int64_t elapsed = now_us - bucket_time_us_;
    if (level >= cap || elapsed > (cap - level) / refill_per_second_ + 1) {
      level = cap;
    } else {
      level = std::min(cap, level + elapsed * refill_per_second_);
    }
  }
  return level;
}

int64_t PoolLedger::BucketLevel(int64_t now_us) const {
  return SettledBucketLevel(now_us) - inflight_units_ * kMicrosPerCredit;
}

// ---- common ----------------------------------------------------------------

int64_t PoolLedger::Used(absl::Time t) const {
  int64_t now = absl::ToUnixMicros(t);
  switch (kind_) {
    case WindowKind::kFixed:
      Prune(now);
      return FixedUsed(WindowIndex(now));
    case WindowKind::kRolling:
      return RollingUsed(now);
    case WindowKind::kBucket: {
      int64_t level = BucketLevel(now);
      int64_t used = capacity_ - FloorDiv(level, kMicrosPerCredit);
      return std::max<int64_t>(0, used);
    }
  }
  return 0;
}

int64_t PoolLedger::MostExplained(absl::Time sent, absl::Time replied) const {
  if (kind_ != WindowKind::kFixed) return Used(replied);
  int64_t first = WindowIndex(absl::ToUnixMicros(sent) - uncertainty_us_);
  int64_t last = WindowIndex(std::max(absl::ToUnixMicros(replied), absl::ToUnixMicros(sent)) + uncertainty_us_);
  int64_t most = 0;
  for (int64_t w = first; w <= last; ++w) most = std::max(most, FixedUsed(w));
  return most;
}

double PoolLedger::SpendRate(absl::Time t, int64_t units) const {
  if (units <= 0) return 0;
  double per_second = 0;
  switch (kind_) {
    case WindowKind::kFixed: {
      int64_t now = absl::ToUnixMicros(t);
      int64_t left_us = std::max<int64_t>(1000, (WindowIndex(now) + 1) * length_us_ - now);
      int64_t left_units = std::max<int64_t>(0, capacity_ - Used(t));
      per_second = static_cast<double>(left_units) * 1e6 / static_cast<double>(left_us);
      break;
    }
    case WindowKind::kRolling:
      per_second = static_cast<double>(capacity_) * 1e6 / static_cast<double>(length_us_);
      break;
    case WindowKind::kBucket:
      per_second = static_cast<double>(refill_per_second_);
      break;
  }
  return per_second / static_cast<double>(units);
}

bool PoolLedger::Fits(absl::Time t, int64_t units) const {
  int64_t now = absl::ToUnixMicros(t);
  switch (kind_) {
    case WindowKind::kFixed: {
      Prune(now);
      int64_t first = WindowIndex(now - uncertainty_us_);
      int64_t last = WindowIndex(now + uncertainty_us_);
      for (int64_t w = first; w <= last; ++w) {
        if (FixedUsed(w) + units > capacity_) return false;
      }
      return true;
    }
    case WindowKind::kRolling:
      return RollingUsed(now) + units <= capacity_;
    case WindowKind::kBucket:
      return BucketLevel(now) >= units * kMicrosPerCredit;
  }
  return false;
}

absl::Time PoolLedger::EarliestFit(absl::Time t, int64_t units) const {
  if (Fits(t, units)) return t;
  if (units + inflight_units_ > capacity_) return absl::InfiniteFuture();
  int64_t now = absl::ToUnixMicros(t);
  switch (kind_) {
    case WindowKind::kFixed: {
      // It does not fit while [t - u, t + u] touches the window holding
      // now - u; the next candidate is when that range has left it: the
      // next window's start + u (which may be the window holding now + u).
      int64_t w = WindowIndex(now - uncertainty_us_) + 1;
      for (int i = 0; i < 4; ++i, ++w) {
        int64_t at = w * length_us_ + uncertainty_us_;
        if (Fits(absl::FromUnixMicros(at), units)) return absl::FromUnixMicros(at);
      }
      return absl::InfiniteFuture();
    }
    case WindowKind::kRolling: {
      Prune(now);
      int64_t need = rolling_sum_ + inflight_units_ + units - capacity_;
      for (const auto& [expiry, spent] : rolling_) {
        need -= spent;
        if (need <= 0) return absl::FromUnixMicros(expiry);
      }
      return absl::InfiniteFuture();
    }
    case WindowKind::kBucket: {
      int64_t missing = units * kMicrosPerCredit - BucketLevel(now);
      return absl::FromUnixMicros(now + (missing + refill_per_second_ - 1) / refill_per_second_);
    }
  }
  return absl::InfiniteFuture();
}

LedgerTicket PoolLedger::Charge(absl::Time t, int64_t units) {
  inflight_units_ += units;
  ++inflight_count_;
  return LedgerTicket{units, t, uncertainty_us_};
}

void PoolLedger::Cancel(const LedgerTicket& ticket) {
  inflight_units_ -= ticket.units;
  --inflight_count_;
}

void PoolLedger::Complete(const LedgerTicket& ticket, absl::Time replied,
                          std::optional<int64_t> observed_used) {
  inflight_units_ -= ticket.units;
  --inflight_count_;
  int64_t lo = absl::ToUnixMicros(ticket.sent) - ticket.uncertainty_us;
  int64_t hi = std::max(absl::ToUnixMicros(replied), absl::ToUnixMicros(ticket.sent)) +
               uncertainty_us_;
  switch (kind_) {
    case WindowKind::kFixed: {
      int64_t first = WindowIndex(lo);
      int64_t last = WindowIndex(hi);
      bool verified = first == last && observed_used.has_value();
      for (int64_t w = first; w <= last; ++w) {
        FixedWindow& win = windows_[w];
        win.settled += ticket.units;
        win.own += ticket.units;
        if (!verified) win.unverified += ticket.units;
      }
      if (verified) {
        FixedWindow& win = windows_[first];
        win.observed = std::max(win.observed, *observed_used);
      }
      if (inflight_count_ == 0) {
        // Every request that may land in these windows has been answered, so
        // the highest usage the exchange reported is its count (plus the
        // requests no header confirms); it replaces ours, up or down.
        for (auto& [index, win] : windows_) {
          if (win.observed >= 0 && !win.spent) win.settled = win.observed + win.unverified;
        }
      }
      Prune(hi);
      break;
    }
    case WindowKind::kRolling: {
      int64_t expiry = hi + length_us_;
      if (!rolling_.empty() && rolling_.back().first > expiry) {
        // Replies are completed in time order; guard against a caller that
        // passes an older reply time by keeping the deque sorted.
        expiry = rolling_.back().first;
      }
      rolling_.emplace_back(expiry, ticket.units);
      rolling_sum_ += ticket.units;
      break;
    }
    case WindowKind::kBucket: {
      // Replay the completed request at its latest possible arrival.
      int64_t at = std::max(hi, bucket_time_us_ == INT64_MIN ? hi : bucket_time_us_);
      bucket_level_ = SettledBucketLevel(at) - ticket.units * kMicrosPerCredit;
      bucket_time_us_ = at;
      break;
    }
  }
}

std::optional<PoolLedger::WindowTally> PoolLedger::PreviousWindow(absl::Time t) const {
  if (kind_ != WindowKind::kFixed) return std::nullopt;
  int64_t index = WindowIndex(absl::ToUnixMicros(t)) - 1;
  auto it = windows_.find(index);
  if (it == windows_.end()) return std::nullopt;
  return WindowTally{absl::FromUnixMicros(index * length_us_), it->second.own, it->second.observed};
}

std::string PoolLedger::DebugString(absl::Time t) const {
  int64_t now = absl::ToUnixMicros(t);
  std::string out = absl::StrCat("kind=", WindowKindName(kind_), " cap=", capacity_,
                                 " inflight=", inflight_units_, "/", inflight_count_,
                                 " u=", uncertainty_us_, "us");
  if (kind_ == WindowKind::kFixed) {
    for (const auto& [index, w] : windows_) {
      absl::StrAppend(&out, " [w", index - WindowIndex(now), ": settled=", w.settled,
                      " unverified=", w.unverified, " observed=", w.observed,
                      w.spent ? " spent" : "", "]");
    }
  }
  return out;
}

void PoolLedger::MarkSpent(absl::Time t) {
  int64_t now = absl::ToUnixMicros(t);
  switch (kind_) {
    case WindowKind::kFixed:
      windows_[WindowIndex(now)].spent = true;
      break;
    case WindowKind::kRolling: {
      int64_t expiry = now + length_us_;
      if (!rolling_.empty() && rolling_.back().first > expiry) expiry = rolling_.back().first;
      rolling_.emplace_back(expiry, capacity_);
      rolling_sum_ += capacity_;
      break;
    }
    case WindowKind::kBucket: {
      int64_t at = std::max(bucket_time_us_, now);
      bucket_level_ = std::min<int64_t>(SettledBucketLevel(at), 0);
      bucket_time_us_ = at;
      break;
    }
  }
}

}  // namespace marketprism::common
