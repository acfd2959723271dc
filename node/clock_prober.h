// File: node/clock_prober.h
//
// Keeps each exchange's clock estimate fresh: every lane with an endpoint is
// probed (ExchangeLane::ProbeClock) once per `interval`, and all of them at
// once after Reprobe() (an endpoint changed). A look each second on the
// clock's timer; the probes themselves (blocking HTTP round trips) run
// through `run`, on the node's worker pool, one round at a time.
//
// Thread-safe: Reprobe() may be called from any thread.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/timer.h"
#include "node/exchange_lane.h"

namespace marketprism::node {

class ClockProber {
 public:
  using Run = std::function<void(std::function<void()>)>;
  // `lanes` and `clock` must outlive the prober. `on_probed` runs (through
  // `run`) after a round that probed at least one lane.
  ClockProber(const Lanes& lanes, common::Clock& clock, absl::Duration interval, Run run,
              std::function<void()> on_probed);
  ~ClockProber();  // Stop()
  ClockProber(const ClockProber&) = delete;
  ClockProber& operator=(const ClockProber&) = delete;

  // Probes now, then looks each second.
  void Start();
  // Probes every lane with an endpoint at once, due or not.
  void Reprobe() ABSL_LOCKS_EXCLUDED(mu_);
  // No more rounds; waits for one under way. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Look() ABSL_LOCKS_EXCLUDED(mu_);
  void Round(bool force) ABSL_LOCKS_EXCLUDED(mu_);

  const Lanes& lanes_;
  common::Clock& clock_;
  const absl::Duration interval_;
  const Run run_;
  const std::function<void()> on_probed_;

  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool reprobe_ ABSL_GUARDED_BY(mu_) = false;
  bool running_ ABSL_GUARDED_BY(mu_) = false;  // a round is under way
  std::map<std::string, absl::Time> last_ ABSL_GUARDED_BY(mu_);
  common::Timer timer_;
};

}  // namespace marketprism::node
