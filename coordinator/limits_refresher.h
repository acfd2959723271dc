// File: coordinator/limits_refresher.h
//
// Reads the limits an exchange publishes (Binance exchangeInfo.rateLimits)
// through the cluster itself — a budgeted request like any other — once
// nodes serve the exchange, every `every` after that, and at once after a
// refusal (such reads at most once per 5 s). A capacity that differs from the
// rules is applied to the scheduler and pushed to every node. An exchange whose limits cannot
// be read within `wait` is priced with the rules' figures.
//
// A refusal's read holds the exchange's placements until it is answered (the
// scheduler's AwaitLimits): otherwise the next window opens at the capacity
// the exchange just refused and is refused again. A read that fails (it may
// itself meet the refusal) is sent again at once; after `wait` without an
// answer the hold ends with the capacities in force.
//
// Thread-safe. Runs on the clock's timer (a look each second); the read is
// asynchronous, so nothing blocks.
#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/timer.h"
#include "coordinator/scheduler.h"
#include "marketprism/v1/coordinator.pb.h"

namespace marketprism::coordinator {

class LimitsRefresher {
 public:
  struct Options {
    absl::Duration every = absl::Minutes(10);  // 0: never read
    absl::Duration wait = absl::Seconds(10);
  };
  using Done = std::function<void(absl::StatusOr<v1::ExecuteResponse>)>;
  // Sends a request through the cluster as the limits probe.
  using Execute = std::function<void(const v1::ExecuteRequest&, absl::Time deadline, Done)>;

  // Everything borrowed must outlive this object. `changed` runs after new
  // capacities were applied to the scheduler (to push them to nodes).
  LimitsRefresher(Options options, common::Clock& clock, Scheduler& scheduler, Execute execute,
                  std::function<void()> changed);
  ~LimitsRefresher();

  void Start();
  void Stop();
  // The exchange refused a request for load: read its limits again soon.
  void RequestRefresh(const std::string& exchange) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Look() ABSL_LOCKS_EXCLUDED(mu_);
  void Read(const std::string& exchange) ABSL_LOCKS_EXCLUDED(mu_);
  void OnRead(const std::string& exchange, absl::StatusOr<v1::ExecuteResponse> result) ABSL_LOCKS_EXCLUDED(mu_);
  // A read that brought no limits: a refusal's is asked for again at once.
  void ReadFailed(const std::string& exchange) ABSL_LOCKS_EXCLUDED(mu_);

  const Options options_;
  common::Clock& clock_;
  Scheduler& scheduler_;
  const Execute execute_;
  const std::function<void()> changed_;
  absl::Mutex mu_;
  std::set<std::string> refusals_ ABSL_GUARDED_BY(mu_);  // exchanges that refused since their last read
  std::map<std::string, absl::Time> refusal_reads_ ABSL_GUARDED_BY(mu_);  // when a refusal last caused a read
  absl::Time last_refresh_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::set<std::string> done_once_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> reading_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, absl::Time> first_ready_ ABSL_GUARDED_BY(mu_);
  // exchanges held for a refusal's read, since when
  std::map<std::string, absl::Time> held_since_ ABSL_GUARDED_BY(mu_);
  common::Timer timer_;
};

}  // namespace marketprism::coordinator
