// File: node/clock_prober.h
//
// Keeps each exchange's clock estimate fresh: every lane with an endpoint is
// probed (ExchangeLane::ProbeClock) once per `interval`, and all of them at
// once after Reprobe() (an endpoint changed). Runs on a thread of its own
// between Start() and Stop(); Reprobe() may be called from any thread.
#pragma once

#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "node/exchange_lane.h"

namespace marketprism::node {

class ClockProber {
 public:
  // `lanes` and `clock` must outlive the prober. `on_probed` runs on the
  // prober's thread after a round that probed at least one lane.
  ClockProber(const Lanes& lanes, common::Clock& clock, absl::Duration interval,
              std::function<void()> on_probed);
  ~ClockProber();  // Stop()
  ClockProber(const ClockProber&) = delete;
  ClockProber& operator=(const ClockProber&) = delete;

  void Start();
  // Probes every lane with an endpoint at the next round, due or not.
  void Reprobe() ABSL_LOCKS_EXCLUDED(mu_);
  // Ends the thread (a probe under way finishes first). Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Loop();

  const Lanes& lanes_;
  common::Clock& clock_;
  const absl::Duration interval_;
  const std::function<void()> on_probed_;
  std::thread thread_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool reprobe_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace marketprism::node
