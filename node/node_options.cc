#include "node/node_options.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/config.h"
#include "common/status_macros.h"
#include "node/proxy.h"
#include "node/sinks/sinks.h"

namespace marketprism::node {

absl::StatusOr<std::optional<NodeConfig>> ParseNodeOptions(const std::vector<std::string>& args,
                                                           std::string* help, const GetEnv& getenv) {
  // Without one, an empty environment: nothing below main reads the process's.
  const GetEnv env = getenv ? getenv : GetEnv([](const char*) -> const char* { return nullptr; });
  NodeOptions o;
  std::string listen = "0.0.0.0:0", coordinator, config;
  std::vector<std::string> urls, ws_urls, proxies;
  int64_t workers = o.workers, max_in_flight = o.exposure.max;
  common::FlagSet f("mp-node", "sends exchange requests from one egress IP for the coordinator");
  f.String("config", &config, "JSON file of settings (keys are these flag names)");
  f.String("node-id", &o.node_id, "this node's id [node-<egress-ip>]");
  f.String("egress-ip", &o.egress_ip, "the IP every exchange request leaves from (required)");
  f.String("listen", &listen, "ADDR:PORT for the coordinator's dispatches (port 0: any)");
  f.String("advertise", &o.advertise, "ADDR:PORT the coordinator dials [listen, with 0.0.0.0 as the egress IP]");
  f.String("coordinator", &coordinator,
           "coordinators' ADDR:PORT[,ADDR:PORT...], tried in turn (required without --gossip)");
  f.List("exchange-url", &urls, "EXCHANGE=URL: REST base, e.g. binance_spot=http://127.0.0.1:8400");
  f.List("ws-url", &ws_urls, "EXCHANGE=URL: WebSocket base");
  f.List("exchange", &o.exchanges, "an exchange to serve [every exchange in the rules]");
  f.String("proxy", &o.proxy, "proxy for every exchange without its own (http://, https://, socks5h://)");
  f.List("exchange-proxy", &proxies, "EXCHANGE=PROXY");
  f.String("ca-bundle", &o.ca_bundle, "PEM file of CAs for TLS [system default]; TLS is always verified");
  f.String("rules", &o.rules_file, "exchange rules file [the shipped rules]");
  f.List("limit", &o.limits, "EXCHANGE.POOL=CAPACITY override");
  f.Int("workers", &workers, "requests sent concurrently");
  f.Duration("request-timeout", &o.request_timeout, "give up on an exchange reply after this");
  f.Duration("clock-probe-interval", &o.clock_probe_interval, "how often to measure each exchange's clock");
  f.Duration("report-interval", &o.report_interval, "how often to report usage to the coordinator");
  f.Duration("reconnect-max", &o.reconnect_max, "longest wait between attempts to reach the coordinator");
  f.Bool("trace-ledger", &o.trace_ledger, "log every admission and refusal with the pools' use (diagnostics)");
  f.Int("max-in-flight", &max_in_flight,
        "most requests this IP has in flight to one exchange; falls to 1 on any surprise (0: no bound)");
  double spool_max_mb = static_cast<double>(o.spool_max_bytes) / (1 << 20);
  f.List("sink", &o.sinks,
         "where records go: nats=nats://HOST:PORT[,...][?stream=S&format=protobuf|json], "
         "clickhouse=http://HOST:PORT/?database=DB, jsonl=DIR [the cluster's, from the coordinator]");
  f.String("spool-dir", &o.spool_dir, "where records wait while a sink is down, under <node-id>/ [/var/tmp/marketprism/spool]");
  f.Double("spool-max-mb", &spool_max_mb,
           "most each sink's spool holds on disk, in MiB (fractions allowed); beyond it, records are gap records");
  f.Int("sink-queue", &o.sink_queue, "records each sink holds in memory before they go to its spool");
  std::string join;
  common::gossip::AddMembershipFlags(f, &o.membership, &join);
  MP_ASSIGN_OR_RETURN(std::vector<std::string> rest, f.ParseWithSources(args, "MP_", env));
  if (f.help_requested()) {
    *help = f.Help();
    return std::optional<NodeConfig>();
  }
  if (!rest.empty()) return absl::InvalidArgumentError("unexpected argument \"" + rest[0] + "\"");

  if (o.egress_ip.empty()) return absl::InvalidArgumentError("--egress-ip is required");
  if (!common::IsIpLiteral(o.egress_ip)) {
    return absl::InvalidArgumentError("--egress-ip \"" + o.egress_ip + "\": not an IP address");
  }
  if (o.node_id.empty()) o.node_id = "node-" + o.egress_ip;
  for (const std::string& sink : o.sinks) MP_RETURN_IF_ERROR(ValidateSinkSpec(sink));
  if (o.sink_queue < 1) return absl::InvalidArgumentError("--sink-queue must be at least 1");
  if (!(spool_max_mb >= 0.01)) return absl::InvalidArgumentError("--spool-max-mb must be at least 0.01 (10 KiB)");
  o.spool_max_bytes = static_cast<int64_t>(spool_max_mb * (1 << 20));
  if (o.spool_dir.empty()) o.spool_dir = "/var/tmp/marketprism/spool";
  MP_ASSIGN_OR_RETURN(o.listen, common::ParseHostPort(listen, "--listen"));
  MP_RETURN_IF_ERROR(common::gossip::FinishMembershipConfig(o.membership, join));
  for (absl::string_view c : absl::StrSplit(coordinator, ',', absl::SkipWhitespace())) {
    MP_ASSIGN_OR_RETURN(common::HostPort hp,
                        common::ParseHostPort(absl::StripAsciiWhitespace(c), "--coordinator"));
    if (hp.port == 0) return absl::InvalidArgumentError("--coordinator: the port cannot be 0");
    o.coordinators.push_back(hp);
  }
  if (o.coordinators.empty() && !o.membership.enabled()) {
    return absl::InvalidArgumentError("--coordinator is required (or --gossip and --join to find it)");
  }
  if (!o.advertise.empty()) MP_RETURN_IF_ERROR(common::ParseHostPort(o.advertise, "--advertise").status());
  if (workers < 1 || workers > 1024) return absl::InvalidArgumentError("--workers must be in 1..1024");
  o.workers = static_cast<int>(workers);
  MP_RETURN_IF_ERROR(common::SetMaxInFlight(max_in_flight, &o.exposure));
  for (auto [name, d] : {std::pair<const char*, absl::Duration>{"--request-timeout", o.request_timeout},
                         {"--clock-probe-interval", o.clock_probe_interval},
                         {"--report-interval", o.report_interval},
                         {"--reconnect-max", o.reconnect_max}}) {
    if (d <= absl::ZeroDuration()) return absl::InvalidArgumentError(absl::StrCat(name, " must be positive"));
  }

  std::string rules_path = common::RulesBook::PathFor(o.rules_file, env);
  MP_ASSIGN_OR_RETURN(common::RulesBook rules, common::RulesBook::LoadFile(rules_path));
  for (const std::string& l : o.limits) MP_RETURN_IF_ERROR(rules.ApplyLimitOverride(l));
  MP_ASSIGN_OR_RETURN(o.exchange_urls,
                      common::ParseExchangeMap(urls, "--exchange-url", rules, {"http://", "https://"}));
  MP_ASSIGN_OR_RETURN(o.ws_urls, common::ParseExchangeMap(ws_urls, "--ws-url", rules, {"ws://", "wss://"}));
  MP_ASSIGN_OR_RETURN(o.exchange_proxies, common::ParseExchangeMap(proxies, "--exchange-proxy", rules, {}));
  for (const auto& [exchange, proxy] : o.exchange_proxies) {
    MP_RETURN_IF_ERROR(ValidateProxy(proxy, "--exchange-proxy " + exchange));
  }
  if (!o.proxy.empty()) MP_RETURN_IF_ERROR(ValidateProxy(o.proxy, "--proxy"));
  for (const std::string& e : o.exchanges) {
    if (rules.Find(e) == nullptr) {
      return absl::InvalidArgumentError("--exchange \"" + e + "\": unknown exchange");
    }
  }
  o.proxy_env = ProxyEnvironment::From(env);
  return std::optional<NodeConfig>(NodeConfig{std::move(o), std::move(rules)});
}

}  // namespace marketprism::node
