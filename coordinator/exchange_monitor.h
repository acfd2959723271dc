// File: coordinator/exchange_monitor.h
//
// The exchange health monitor. Every `interval` the leader has a node probe
// each exchange the nodes serve at its time endpoint (the rules'
// server_time), through the cluster like any request: budgeted, at
// priority 0. The node that sends it writes the probe to its sinks as an
// ExchangeHealth record (table `exchange_health`); the leader keeps the
// recent probes for GetHealth, one check per exchange, and calls the alert
// webhook when an exchange's state or the cluster's health changes.
//
// An exchange's state: healthy after a probe that is up; degraded when it
// was slow or one probe failed; unhealthy after two failed probes in a row.
// The cluster's health is looked at once per interval.
//
// Thread-safe; runs on the clock's timer (a look each second). A follower
// probes nothing and keeps what it had.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/timer.h"
#include "coordinator/health.h"
#include "coordinator/router.h"
#include "coordinator/scheduler.h"

namespace marketprism::coordinator {

struct ExchangeMonitorOptions {
  absl::Duration interval = absl::Seconds(60);  // 0: no monitor
  absl::Duration slow = absl::Seconds(3);       // a probe slower than this is "slow"
  size_t history = 60;                          // probes kept per exchange
  std::string cluster = "marketprism";          // the alerts' cluster label
};

struct ExchangeProbe {
  absl::Time at;
  std::string status;  // "up", "slow", "down"
  int http_status = 0;
  absl::Duration response;
  int64_t server_time_ms = 0;  // 0: none
  std::string node_id;
  std::string error;
};

// An Alertmanager webhook payload (version 4) of one alert: firing, or
// resolved when `level` is healthy. `labels` get alertname, cluster and
// severity added.
std::string AlertPayload(const std::string& alertname, std::map<std::string, std::string> labels, HealthLevel level,
                         const std::string& summary, const std::vector<std::string>& recommendations,
                         const std::string& cluster, absl::Time starts, absl::Time now);

class ExchangeMonitor {
 public:
  using Execute =
      std::function<void(const v1::ExecuteRequest&, const v1::RecordAs& record, absl::Time deadline, Router::Done)>;
  using Alert = std::function<void(std::string payload)>;

  // Everything borrowed must outlive this object. `health` evaluates the
  // cluster (its checks, without the monitor's own); `alert` (may be null)
  // posts a payload to the webhook and must not block.
  ExchangeMonitor(ExchangeMonitorOptions options, common::Clock& clock, Scheduler& scheduler, Execute execute,
                  std::function<bool()> leading, std::function<HealthReport()> health, Alert alert);
  ~ExchangeMonitor();

  void Start();
  void Stop();

  // The recent probes per exchange, oldest first.
  std::map<std::string, std::vector<ExchangeProbe>> History() ABSL_LOCKS_EXCLUDED(mu_);
  // One check per exchange probed, named "exchange:<name>", with its advice
  // appended to `recommendations` when it is not healthy.
  void AddChecks(HealthReport& report) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Exchange {
    std::deque<ExchangeProbe> probes;
    absl::Time next = absl::InfinitePast();
    bool in_flight = false;
    std::optional<HealthLevel> level;
    absl::Time level_since;
  };
  void Look() ABSL_LOCKS_EXCLUDED(mu_);
  void OnProbe(const std::string& exchange, absl::Time sent, absl::StatusOr<v1::ExecuteResponse> r)
      ABSL_LOCKS_EXCLUDED(mu_);
  static HealthLevel LevelOf(const std::deque<ExchangeProbe>& probes);

  const ExchangeMonitorOptions options_;
  common::Clock& clock_;
  Scheduler& scheduler_;
  const Execute execute_;
  const std::function<bool()> leading_;
  const std::function<HealthReport()> health_;
  const Alert alert_;
  absl::Mutex mu_;
  std::map<std::string, Exchange> exchanges_ ABSL_GUARDED_BY(mu_);
  absl::Time next_cluster_look_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::optional<HealthLevel> cluster_level_ ABSL_GUARDED_BY(mu_);
  absl::Time cluster_since_ ABSL_GUARDED_BY(mu_);
  common::Timer timer_;
};

}  // namespace marketprism::coordinator
