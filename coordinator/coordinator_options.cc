#include "coordinator/coordinator_options.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "common/rules/rules.h"
#include "common/status_macros.h"
#include "node/sinks/sinks.h"

namespace marketprism::coordinator {

absl::StatusOr<std::optional<CoordinatorOptions>> ParseCoordinatorOptions(
    const std::vector<std::string>& args, std::string* help, const common::GetEnv& getenv) {
  CoordinatorOptions o;
  std::string listen = "0.0.0.0:7000", config;
  std::vector<std::string> urls, ws_urls;
  int64_t max_queue = static_cast<int64_t>(o.scheduler.max_queue);
  int64_t attempts = o.scheduler.max_attempts, max_in_flight = o.scheduler.exposure.max;
  common::FlagSet f("mp-coordinator", "places exchange requests on the egress IPs with budget");
  f.String("config", &config, "JSON file of settings (keys are these flag names)");
  f.String("listen", &listen, "ADDR:PORT for clients (Coordinator) and nodes (NodeControl)");
  f.List("exchange-url", &urls, "EXCHANGE=URL: REST base given to nodes that have none");
  f.List("ws-url", &ws_urls, "EXCHANGE=URL: WebSocket base given to nodes that have none");
  f.List("sink", &o.sinks,
         "where the nodes write records, unless they have sinks of their own: nats=nats://HOST:PORT[,...], "
         "clickhouse=http://HOST:PORT/?database=DB, jsonl=DIR (mp-node --help has the details)");
  f.String("jobs", &o.jobs_file, "a jobs file (JSON: what to collect); re-read when it changes");
  f.String("rules", &o.rules_file, "exchange rules file [the shipped rules]");
  f.List("limit", &o.limits, "EXCHANGE.POOL=CAPACITY override (also pushed to nodes)");
  f.Duration("monitor-interval", &o.monitor_interval,
             "how often the leader has a node probe each exchange's time endpoint (0: never)");
  f.String("alert-webhook", &o.alert_webhook,
           "http(s)://... URL POSTed an Alertmanager webhook payload when an exchange's or the cluster's health changes");
  f.Duration("exchange-info-refresh", &o.exchange_info_refresh,
             "how often to read Binance's published limits (0: never)");
  f.Duration("limits-wait", &o.limits_wait,
             "hold an exchange's requests this long for its first published limits");
  f.Duration("default-deadline", &o.default_deadline, "deadline for Execute calls that set none");
  f.Duration("dispatch-margin", &o.dispatch_margin,
             "stop placing a request this long before its deadline (time for the round trip)");
  f.Int("max-queue", &max_queue, "requests that may wait for budget at once");
  f.Int("max-attempts", &attempts, "nodes a request may fail on before UNAVAILABLE");
  f.Int("max-in-flight", &max_in_flight,
        "most requests one IP has in flight to one exchange: what the budget needs at the round trip, "
        "1 after any surprise (0: no bound)");
  f.Duration("clock-uncertainty", &o.scheduler.default_uncertainty,
             "assumed clock error of a node before it is measured");
  f.Duration("clock-margin", &o.scheduler.margin, "added to every measured clock error");
  f.Double("health-error-rate", &o.health.error_rate, "error rate above which health is degraded");
  f.Duration("health-response-time", &o.health.response_time, "p95 exchange round trip above which health is degraded");
  f.Double("health-budget-usage", &o.health.budget_usage, "budget use above which health is degraded");
  f.Double("health-ip-availability", &o.health.ip_availability, "share of usable IPs below which health is unhealthy");
  std::string join;
  common::gossip::AddMembershipFlags(f, &o.membership, &join);
  f.String("name", &o.name, "this coordinator's name in gossip [coordinator-<gossip address>]");
  f.String("advertise", &o.advertise,
           "ADDR:PORT other coordinators and nodes dial [--listen, with 0.0.0.0 as the --gossip IP]");
  f.Duration("leader-hold-down", &o.leader_hold_down,
             "with no live leader, wait this long before claiming the lead");
  f.Duration("takeover-grace", &o.takeover_grace,
             "a new leader holds requests that find no node this long while nodes register");
  f.Duration("account-lease", &o.leases.duration,
             "how long a node's share of an account pool lasts unrenewed (no leader: it spends that, then nothing)");
  MP_ASSIGN_OR_RETURN(std::vector<std::string> rest, f.ParseWithSources(args, "MP_", getenv));
  if (f.help_requested()) {
    *help = f.Help();
    return std::optional<CoordinatorOptions>();
  }
  if (!rest.empty()) return absl::InvalidArgumentError("unexpected argument \"" + rest[0] + "\"");
  MP_ASSIGN_OR_RETURN(o.listen, common::ParseHostPort(listen, "--listen"));
  MP_RETURN_IF_ERROR(common::gossip::FinishMembershipConfig(o.membership, join));
  if (!o.advertise.empty()) MP_RETURN_IF_ERROR(common::ParseHostPort(o.advertise, "--advertise").status());
  if (o.leader_hold_down < absl::ZeroDuration() || o.takeover_grace < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--leader-hold-down and --takeover-grace must be >= 0");
  }
  if (o.leases.duration < absl::Seconds(1)) return absl::InvalidArgumentError("--account-lease must be >= 1s");
  o.leases.renew = o.leases.duration / 5;
  if (o.name.empty()) {
    o.name = o.membership.enabled() ? "coordinator-" + o.membership.gossip : "coordinator";
  }
  if (max_queue < 1) return absl::InvalidArgumentError("--max-queue must be >= 1");
  MP_RETURN_IF_ERROR(common::SetMaxInFlight(max_in_flight, &o.scheduler.exposure));
  o.scheduler.max_queue = static_cast<size_t>(max_queue);
  if (attempts < 1 || attempts > 100) return absl::InvalidArgumentError("--max-attempts must be in 1..100");
  o.scheduler.max_attempts = static_cast<int>(attempts);
  if (o.limits_wait < absl::ZeroDuration()) return absl::InvalidArgumentError("--limits-wait must be >= 0");
  if (o.monitor_interval < absl::ZeroDuration()) return absl::InvalidArgumentError("--monitor-interval must be >= 0");
  if (!o.alert_webhook.empty() && !absl::StartsWith(o.alert_webhook, "http://") &&
      !absl::StartsWith(o.alert_webhook, "https://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("--alert-webhook \"", o.alert_webhook, "\" is not an http:// or https:// URL"));
  }
  if (o.exchange_info_refresh < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--exchange-info-refresh must be >= 0");
  }
  for (auto [name, d] : {std::pair<const char*, absl::Duration>{"--default-deadline", o.default_deadline},
                         {"--health-response-time", o.health.response_time}}) {
    if (d <= absl::ZeroDuration()) return absl::InvalidArgumentError(absl::StrCat(name, " must be positive"));
  }
  if (o.dispatch_margin < absl::ZeroDuration() || o.scheduler.default_uncertainty < absl::ZeroDuration() ||
      o.scheduler.margin < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--dispatch-margin, --clock-uncertainty and --clock-margin must be >= 0");
  }
  for (auto [name, v] : {std::pair<const char*, double>{"--health-error-rate", o.health.error_rate},
                         {"--health-budget-usage", o.health.budget_usage},
                         {"--health-ip-availability", o.health.ip_availability}}) {
    if (v < 0 || v > 1) return absl::InvalidArgumentError(absl::StrCat(name, " must be within [0, 1]"));
  }
  std::string rules_path = common::RulesBook::PathFor(o.rules_file, getenv);
  MP_ASSIGN_OR_RETURN(common::RulesBook rules, common::RulesBook::LoadFile(rules_path));
  for (const std::string& l : o.limits) MP_RETURN_IF_ERROR(rules.ApplyLimitOverride(l));
  MP_ASSIGN_OR_RETURN(o.exchange_urls,
                      common::ParseExchangeMap(urls, "--exchange-url", rules, {"http://", "https://"}));
  for (const std::string& sink : o.sinks) MP_RETURN_IF_ERROR(node::ValidateSinkSpec(sink));
  MP_ASSIGN_OR_RETURN(o.ws_urls, common::ParseExchangeMap(ws_urls, "--ws-url", rules, {"ws://", "wss://"}));
  o.rules = std::move(rules);
  return std::optional<CoordinatorOptions>(std::move(o));
}

}  // namespace marketprism::coordinator
