#include "common/budget/exposure.h"

#include <cmath>

namespace marketprism::common {

absl::Status SetMaxInFlight(int64_t n, ExposureOptions* options) {
  if (n < 0 || n > 1'000'000) return absl::InvalidArgumentError("--max-in-flight must be in 0..1000000 (0: no bound)");
  options->enabled = n > 0;
  if (n > 0) options->max = static_cast<int>(n);
  return absl::OkStatus();
}

void ExposureBound::Ended(ExposureVerdict verdict, uint64_t started_epoch) {
  in_flight_ = std::max(0, in_flight_ - 1);
  switch (verdict) {
    case ExposureVerdict::kConfirmed:
      if (started_epoch == epoch_) confirmed_ = std::min(confirmed_ + 1, std::max(1, options_.max));
      break;
    case ExposureVerdict::kSurprise:
      confirmed_ = 1;
      ++epoch_;
      break;
    case ExposureVerdict::kNeutral:
      break;
  }
}

int NeededInFlight(double requests_per_second, absl::Duration rtt) {
  double n = requests_per_second * absl::ToDoubleSeconds(rtt);
  if (!(n > 1)) return 1;  // also NaN
  if (n > 1e6) return 1'000'000;
  return static_cast<int>(std::ceil(n));
}

void RttEstimate::Add(absl::Duration sample) {
  if (sample < absl::ZeroDuration()) return;
  if (!seeded_) {
    value_ = sample;
    seeded_ = true;
    return;
  }
  // Weighted 1/4 towards the new sample: a few replies follow a change.
  value_ = value_ + (sample - value_) / 4;
}

}  // namespace marketprism::common
