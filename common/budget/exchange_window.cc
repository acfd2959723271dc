#include "common/budget/exchange_window.h"

#include <algorithm>

#include "common/int_math.h"

namespace marketprism::common {

namespace {
constexpr int64_t kMicrosPerCredit = 1'000'000;
}  // namespace

ExchangeWindow::ExchangeWindow(const PoolRule& rule)
    : kind_(rule.window),
      length_us_(absl::ToInt64Microseconds(rule.length)),
      capacity_(rule.capacity),
      refill_per_second_(rule.refill_per_second) {
  if (kind_ == WindowKind::kBucket) level_ucredits_ = capacity_ * kMicrosPerCredit;
}

void ExchangeWindow::Advance(int64_t now_us) {
  switch (kind_) {
    case WindowKind::kFixed: {
      int64_t index = FloorDiv(now_us, length_us_);
      if (index != window_index_) {
        window_index_ = index;
        used_ = 0;
      }
      break;
    }
    case WindowKind::kRolling:
      while (!spent_.empty() && now_us - spent_.front().first >= length_us_) {
        used_ -= spent_.front().second;
        spent_.pop_front();
      }
      break;
    case WindowKind::kBucket: {
      if (bucket_time_us_ == INT64_MIN || now_us <= bucket_time_us_) {
        if (bucket_time_us_ == INT64_MIN) bucket_time_us_ = now_us;
        break;
      }
      // refill_per_second credits/s == refill_per_second micro-credits/us.
      int64_t cap = capacity_ * kMicrosPerCredit;
      int64_t elapsed = now_us - bucket_time_us_;
      if (level_ucredits_ < cap) {
        int64_t room = cap - level_ucredits_;
        if (elapsed >= room / refill_per_second_ + 1) {
          level_ucredits_ = cap;
        } else {
          level_ucredits_ = std::min(cap, level_ucredits_ + elapsed * refill_per_second_);
        }
      } else {
        level_ucredits_ = cap;
      }
      bucket_time_us_ = now_us;
      break;
    }
  }
}

bool ExchangeWindow::TrySpend(absl::Time t, int64_t units) {
  int64_t now = absl::ToUnixMicros(t);
  Advance(now);
  if (kind_ == WindowKind::kBucket) {
    int64_t need = units * kMicrosPerCredit;
    if (need > level_ucredits_) return false;
    level_ucredits_ -= need;
    return true;
  }
  if (used_ + units > capacity_) return false;
  used_ += units;
  if (kind_ == WindowKind::kRolling) {
    if (!spent_.empty() && spent_.back().first == now) {
      spent_.back().second += units;
    } else {
      spent_.emplace_back(now, units);
    }
  }
  return true;
}

int64_t ExchangeWindow::Used(absl::Time t) {
  Advance(absl::ToUnixMicros(t));
  if (kind_ == WindowKind::kBucket) {
    int64_t left = level_ucredits_ / kMicrosPerCredit;
    return capacity_ - std::min(left, capacity_);
  }
  return used_;
}

absl::Time ExchangeWindow::WindowStart(absl::Time t) const {
  int64_t index = FloorDiv(absl::ToUnixMicros(t), length_us_);
  return absl::FromUnixMicros(index * length_us_);
}

absl::Duration ExchangeWindow::RetryAfter(absl::Time t, int64_t units) {
  int64_t now = absl::ToUnixMicros(t);
  Advance(now);
  switch (kind_) {
    case WindowKind::kFixed:
      if (used_ + units <= capacity_) return absl::ZeroDuration();
      return absl::Microseconds((window_index_ + 1) * length_us_ - now);
    case WindowKind::kRolling: {
      if (used_ + units <= capacity_) return absl::ZeroDuration();
      int64_t freed = 0;
      for (const auto& [when, spent] : spent_) {
        freed += spent;
        if (used_ - freed + units <= capacity_) {
          return absl::Microseconds(when + length_us_ - now);
        }
      }
      return spent_.empty() ? absl::ZeroDuration()
                            : absl::Microseconds(spent_.back().first + length_us_ - now);
    }
    case WindowKind::kBucket: {
      int64_t need = std::min(units, capacity_) * kMicrosPerCredit;
      if (need <= level_ucredits_) return absl::ZeroDuration();
      int64_t missing = need - level_ucredits_;
      return absl::Microseconds((missing + refill_per_second_ - 1) / refill_per_second_);
    }
  }
  return absl::ZeroDuration();
}

}  // namespace marketprism::common
