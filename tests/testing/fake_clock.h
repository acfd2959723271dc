// File: tests/testing/fake_clock.h
//
// A Clock that only moves when told to. Thread-safe. SleepFor() advances the
// clock instead of blocking, so code that sleeps runs instantly in tests.
#pragma once

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace marketprism::testing {

class FakeClock final : public common::Clock {
 public:
  // Starts at `start` wall time; SteadyNow() starts at the Unix epoch + 1000 s.
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000));

  absl::Time Now() override;
  absl::Time SteadyNow() override;
  void SleepFor(absl::Duration d) override;

  void AdvanceBy(absl::Duration d);
  // Sets the wall clock (steady time is unaffected, as with a real clock step).
  void SetNow(absl::Time t);

 private:
  absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  absl::Time steady_ ABSL_GUARDED_BY(mu_);
};

}  // namespace marketprism::testing
