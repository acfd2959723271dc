// File: common/budget/exposure.h
//
// How many requests one egress IP may have in flight to one exchange.
//
// The ledger keeps an IP within the limits the rules (and the exchange's
// published limits) state. When the exchange surprises us — a limit lowered
// without notice, another program spending on the same IP — the first sign
// is a refusal, or a usage header above what the ledger explains. Every
// request already in flight then arrives at an exchange that refuses it,
// during the Retry-After of the first refusal: exactly what earns a ban.
// What a surprise costs is therefore the number of requests in flight when
// it happens, and that is what this bounds:
//
//  * The bound starts at one, grows by one with every reply that confirms
//    the ledger, and falls back to one on any surprise (a refusal, an
//    unexplained usage header, a request lost or timed out). A reply to a
//    request sent before the last surprise (or restart) confirms nothing:
//    it was out when the exchange changed.
//  * It is never more than what the budget needs: the fewest requests in
//    flight that still spend what is left of the window in the time left of
//    it, at the measured round trip (NeededInFlight). At a round trip of a
//    millisecond that is one, so a surprise costs one refused request; it is
//    more only where one at a time could not spend the budget.
//  * Another party's bound (the node's, reported on each reply) caps it.
//
// Not thread-safe; the owner serialises (the scheduler and the lane hold
// their own locks).
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace marketprism::common {

struct ExposureOptions {
  // Off: no bound beyond the budget (tests of other behaviour).
  bool enabled = true;
  // Never more in flight than this, however much the budget needs.
  int max = 64;
};

// --max-in-flight: 0 turns the bound off; kInvalidArgument below 0.
absl::Status SetMaxInFlight(int64_t n, ExposureOptions* options);

// What the end of a request said about the ledger.
enum class ExposureVerdict {
  kConfirmed,  // replied, and nothing in the reply contradicts the ledger
  kSurprise,   // refused, foreign use seen, or lost: back to one
  kNeutral,    // never reached the exchange, or a reply that says nothing (5xx)
};

class ExposureBound {
 public:
  explicit ExposureBound(ExposureOptions options = {}) : options_(options) {}

  // The bound now, for a request whose budget needs `needed` in flight.
  int Limit(int needed) const {
    if (!options_.enabled) return std::numeric_limits<int>::max();
    return std::max(1, std::min({confirmed_, needed, external_, options_.max}));
  }
  bool MayStart(int needed) const { return in_flight_ < Limit(needed); }
  // Returns the request's epoch, for Ended.
  uint64_t Started() {
    ++in_flight_;
    return epoch_;
  }
  void Ended(ExposureVerdict verdict, uint64_t started_epoch);
  // A new window: whatever the last one confirmed, this one is unknown.
  void Restart() {
    confirmed_ = 1;
    ++epoch_;
  }
  // Another party's bound on the same IP (the node's own); <= 0: none.
  void SetExternal(int limit) { external_ = limit > 0 ? limit : std::numeric_limits<int>::max(); }

  int in_flight() const { return in_flight_; }
  int confirmed() const { return confirmed_; }
  bool enabled() const { return options_.enabled; }

 private:
  ExposureOptions options_;
  int in_flight_ = 0;
  int confirmed_ = 1;
  uint64_t epoch_ = 0;  // surprises and restarts so far
  int external_ = std::numeric_limits<int>::max();
};

// The fewest requests in flight that send `requests_per_second` at round
// trip `rtt`: ceil(rate x rtt), at least one.
int NeededInFlight(double requests_per_second, absl::Duration rtt);

// A round-trip estimate: a moving average of the samples, starting from the
// first.
class RttEstimate {
 public:
  void Add(absl::Duration sample);
  absl::Duration value() const { return value_; }

 private:
  absl::Duration value_ = absl::ZeroDuration();
  bool seeded_ = false;
};

}  // namespace marketprism::common
