// File: coordinator/exchange_monitor.cc
#include "coordinator/exchange_monitor.h"

#include <set>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/log.h"

namespace marketprism::coordinator {

namespace {

constexpr absl::Duration kLookEvery = absl::Seconds(1);
constexpr char kNeverEnds[] = "0001-01-01T00:00:00Z";

std::string Rfc3339(absl::Time t) { return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone()); }

// A dotted path ("data.0.ts") into a JSON reply, as an integer; a number
// written as a string counts.
std::optional<int64_t> JsonInt(const std::string& body, const std::string& path) {
  nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return std::nullopt;
  const nlohmann::json* at = &j;
  for (absl::string_view part : absl::StrSplit(path, '.')) {
    size_t index = 0;
    if (at->is_array() && absl::SimpleAtoi(part, &index) && index < at->size()) {
      at = &(*at)[index];
    } else if (at->is_object() && at->contains(std::string(part))) {
      at = &(*at)[std::string(part)];
    } else {
      return std::nullopt;
    }
  }
  int64_t v = 0;
  if (at->is_number_integer()) return at->get<int64_t>();
  if (at->is_string() && absl::SimpleAtoi(at->get<std::string>(), &v)) return v;
  return std::nullopt;
}

}  // namespace

std::string AlertPayload(const std::string& alertname, std::map<std::string, std::string> labels, HealthLevel level,
                         const std::string& summary, const std::vector<std::string>& recommendations,
                         const std::string& cluster, absl::Time starts, absl::Time now) {
  const bool resolved = level == HealthLevel::kHealthy;
  labels["alertname"] = alertname;
  labels["cluster"] = cluster;
  labels["severity"] = level == HealthLevel::kUnhealthy ? "critical" : "warning";
  std::string recommendation;
  for (const std::string& r : recommendations) absl::StrAppend(&recommendation, recommendation.empty() ? "" : " ", r);
  nlohmann::ordered_json annotations = {{"summary", summary}, {"state", std::string(HealthLevelName(level))}};
  if (!recommendation.empty()) annotations["recommendation"] = recommendation;
  nlohmann::ordered_json alert = {{"status", resolved ? "resolved" : "firing"},
                                  {"labels", labels},
                                  {"annotations", annotations},
                                  {"startsAt", Rfc3339(starts)},
                                  {"endsAt", resolved ? Rfc3339(now) : kNeverEnds},
                                  {"generatorURL", ""}};
  std::string group_key = absl::StrCat("{}:{alertname=\"", alertname, "\"}");
  nlohmann::ordered_json payload = {{"version", "4"},
                                    {"groupKey", group_key},
                                    {"truncatedAlerts", 0},
                                    {"status", resolved ? "resolved" : "firing"},
                                    {"receiver", "marketprism"},
                                    {"groupLabels", {{"alertname", alertname}}},
                                    {"commonLabels", labels},
                                    {"commonAnnotations", annotations},
                                    {"externalURL", ""},
                                    {"alerts", nlohmann::ordered_json::array({alert})}};
  return payload.dump();
}

ExchangeMonitor::ExchangeMonitor(ExchangeMonitorOptions options, common::Clock& clock, Scheduler& scheduler,
                                 Execute execute, std::function<bool()> leading,
                                 std::function<HealthReport()> health, Alert alert)
    : options_(std::move(options)),
      clock_(clock),
      scheduler_(scheduler),
      execute_(std::move(execute)),
      leading_(std::move(leading)),
      health_(std::move(health)),
      alert_(std::move(alert)),
      timer_(clock, [this] {
        Look();
        timer_.ArmIn(kLookEvery);
      }) {}

ExchangeMonitor::~ExchangeMonitor() { Stop(); }

void ExchangeMonitor::Start() {
  if (options_.interval > absl::ZeroDuration()) timer_.ArmIn(absl::ZeroDuration());
}

void ExchangeMonitor::Stop() { timer_.Stop(); }

void ExchangeMonitor::Look() {
  if (!leading_()) return;
  std::set<std::string> served;
  for (const NodeSnapshot& n : scheduler_.Snapshot().nodes) {
    if (n.state == NodeState::kActive) served.insert(n.ready.begin(), n.ready.end());
  }
  struct Due {
    std::string exchange;
    v1::ExecuteRequest req;
    v1::RecordAs record;
  };
  std::vector<Due> due;
  bool look_at_cluster = false;
  absl::Time now = clock_.Now();
  {
    absl::MutexLock lock(&mu_);
    const int64_t every = absl::ToInt64Microseconds(options_.interval);
    for (const std::string& exchange : served) {
      const common::ExchangeRules* rules = scheduler_.rules().Find(exchange);
      if (rules == nullptr || !rules->server_time()) continue;
      Exchange& x = exchanges_[exchange];
      if (x.in_flight || now < x.next) continue;
      // Slots on the interval's grid: a probe's key is the same whoever leads.
      int64_t slot_us = absl::ToUnixMicros(now) / every * every;
      x.next = absl::FromUnixMicros(slot_us + every);
      x.in_flight = true;
      Due& d = due.emplace_back();
      d.exchange = exchange;
      d.req.set_exchange(exchange);
      d.req.set_method(rules->server_time()->method == "ANY" ? "GET" : rules->server_time()->method);
      d.req.set_path(rules->server_time()->path);
      d.record.set_channel("exchange_health");
      d.record.set_symbol("server_time");
      d.record.set_slot_us(slot_us);
      d.record.set_key(absl::StrCat(exchange, "/exchange_health/", slot_us));
      d.record.set_slow_us(absl::ToInt64Microseconds(options_.slow));
    }
    if (now >= next_cluster_look_) {
      next_cluster_look_ = now + options_.interval;
      look_at_cluster = true;
    }
  }
  for (Due& d : due) {
    execute_(d.req, d.record, now + options_.interval,
             [this, exchange = d.exchange, now](absl::StatusOr<v1::ExecuteResponse> r) {
               OnProbe(exchange, now, std::move(r));
             });
  }
  if (!look_at_cluster || !health_) return;
  HealthReport report = health_();
  AddChecks(report);
  std::string summary;
  for (const HealthCheckResult& c : report.checks) {
    if (c.status != HealthLevel::kHealthy) absl::StrAppend(&summary, summary.empty() ? "" : "; ", c.name, ": ", c.message);
  }
  std::optional<HealthLevel> was;
  absl::Time since;
  {
    absl::MutexLock lock(&mu_);
    was = cluster_level_;
    if (was != report.overall) cluster_since_ = now;
    since = cluster_since_;
    cluster_level_ = report.overall;
  }
  // The first look alerts only when something is wrong.
  bool changed = was ? *was != report.overall : report.overall != HealthLevel::kHealthy;
  if (!changed) return;
  common::Log(common::LogLevel::kInfo, "monitor",
              absl::StrCat("cluster health ", HealthLevelName(report.overall), summary.empty() ? "" : ": ", summary));
  if (alert_) {
    alert_(AlertPayload("MarketPrismClusterHealth", {}, report.overall,
                        summary.empty() ? "every check is healthy" : summary, report.recommendations,
                        options_.cluster, since, now));
  }
}

HealthLevel ExchangeMonitor::LevelOf(const std::deque<ExchangeProbe>& probes) {
  if (probes.empty()) return HealthLevel::kHealthy;
  const ExchangeProbe& last = probes.back();
  if (last.status == "up") return HealthLevel::kHealthy;
  if (last.status == "down" && probes.size() >= 2 && probes[probes.size() - 2].status == "down") {
    return HealthLevel::kUnhealthy;
  }
  return HealthLevel::kDegraded;
}

void ExchangeMonitor::OnProbe(const std::string& exchange, absl::Time sent, absl::StatusOr<v1::ExecuteResponse> r) {
  ExchangeProbe p;
  p.at = sent;
  if (!r.ok()) {
    p.status = "down";
    p.error = std::string(r.status().message());
  } else {
    p.http_status = r->http_status();
    p.node_id = r->node_id();
    p.response = absl::Microseconds(r->exchange_us());
    const common::ExchangeRules* rules = scheduler_.rules().Find(exchange);
    std::optional<int64_t> server_ms;
    if (rules != nullptr && rules->server_time()) server_ms = JsonInt(r->body(), rules->server_time()->field);
    if (r->http_status() != 200) {
      p.status = "down";
      p.error = absl::StrCat("HTTP ", r->http_status(), " ", r->body().substr(0, 200));
    } else if (!server_ms) {
      p.status = "down";
      p.error = "no server time in the reply";
    } else {
      p.server_time_ms = *server_ms;
      p.status = p.response > options_.slow ? "slow" : "up";
      if (p.status == "slow") {
        p.error = absl::StrCat("answered in ", absl::FormatDuration(p.response), ", more than ",
                               absl::FormatDuration(options_.slow));
      }
    }
  }
  std::optional<HealthLevel> was;
  HealthLevel level;
  absl::Time since;
  {
    absl::MutexLock lock(&mu_);
    Exchange& x = exchanges_[exchange];
    x.in_flight = false;
    x.probes.push_back(p);
    while (x.probes.size() > options_.history) x.probes.pop_front();
    was = x.level;
    level = LevelOf(x.probes);
    if (was != level) x.level_since = p.at;
    x.level = level;
    since = x.level_since;
  }
  bool changed = was ? *was != level : level != HealthLevel::kHealthy;
  if (!changed) return;
  std::string summary = p.status == "up" ? absl::StrCat(exchange, " answers its time endpoint")
                                         : absl::StrCat(exchange, " is ", p.status, ": ", p.error);
  common::Log(level == HealthLevel::kHealthy ? common::LogLevel::kInfo : common::LogLevel::kWarning, "monitor",
              summary);
  if (alert_) {
    std::vector<std::string> advice;
    if (level != HealthLevel::kHealthy) {
      advice.push_back(absl::StrCat("Check ", exchange,
                                    "'s status page and the nodes' route to it; its units resync on their own "
                                    "once it answers."));
    }
    alert_(AlertPayload("MarketPrismExchangeHealth", {{"exchange", exchange}}, level, summary, advice,
                        options_.cluster, since, p.at));
  }
}

std::map<std::string, std::vector<ExchangeProbe>> ExchangeMonitor::History() {
  absl::MutexLock lock(&mu_);
  std::map<std::string, std::vector<ExchangeProbe>> out;
  for (const auto& [name, x] : exchanges_) {
    if (!x.probes.empty()) out[name].assign(x.probes.begin(), x.probes.end());
  }
  return out;
}

void ExchangeMonitor::AddChecks(HealthReport& report) {
  absl::MutexLock lock(&mu_);
  for (const auto& [name, x] : exchanges_) {
    if (x.probes.empty()) continue;
    const ExchangeProbe& last = x.probes.back();
    HealthLevel level = LevelOf(x.probes);
    int up = 0;
    for (const ExchangeProbe& p : x.probes) up += p.status == "up";
    std::string message =
        last.status == "down"
            ? absl::StrCat("down: ", last.error)
            : absl::StrCat(last.status, " in ", absl::FormatDuration(last.response), " from ", last.node_id);
    absl::StrAppend(&message, "; ", up, " of the last ", x.probes.size(), " probes up");
    report.checks.push_back({absl::StrCat("exchange:", name), level, absl::ToDoubleSeconds(last.response),
                             absl::ToDoubleSeconds(options_.slow), message});
    if (level != HealthLevel::kHealthy) {
      report.recommendations.push_back(
          absl::StrCat(name, " does not answer well (", message, "): check its status page and the nodes' route to it."));
    }
    report.overall = std::max(report.overall, level);
  }
}

}  // namespace marketprism::coordinator
