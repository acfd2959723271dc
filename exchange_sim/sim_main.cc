// mp-exchange-sim: a stand-in for Binance spot / USD-M, OKX v5 and Deribit v2
// public market data on one port, enforcing their per-IP limits.
#include <csignal>
#include <cstdio>

#include "common/process.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/rules/rules.h"
#include "exchange_sim/sim_server.h"

namespace {
marketprism::sim::SimServer* g_server = nullptr;
void OnSignal(int) {
  if (g_server != nullptr) g_server->Stop();
}
}  // namespace

int main(int argc, char** argv) {
  marketprism::common::ConfigureProcess();
  using namespace marketprism;
  // The one place the environment is read: MP_LOG_LEVEL and MP_RULES_FILE.
  const common::GetEnv env = common::ProcessEnvironment();
  common::SetLogLevelFrom(env("MP_LOG_LEVEL"));
  sim::SimOptions o;
  std::string listen = "127.0.0.1:8400";
  int64_t seed = 1, strikes = o.ban.strikes_to_ban;
  std::string ban_schedule, start_latency;
  double error_rate = 0;
  absl::Duration latency, clock_offset, ban_forgive = o.ban.forgive_after;
  common::FlagSet flags("mp-exchange-sim",
                        "stands in for Binance, OKX and Deribit public market data, enforcing "
                        "their per-IP rate limits (docs/simulator.md)");
  flags.String("listen", &listen, "ADDR:PORT to serve REST, WebSocket and /sim/ admin on (port 0: any)");
  std::string tls_cert, tls_key;
  flags.String("tls-cert", &tls_cert, "PEM certificate: serve https:// and wss:// only (with --tls-key)");
  flags.String("tls-key", &tls_key, "PEM private key of --tls-cert");
  flags.Int("seed", &seed, "seed of the synthetic market data");
  int64_t instruments = 0, trades_per_second = 0;
  flags.Int("instruments", &instruments,
            "many-instrument mode: this many more spot instruments on binance_spot and okx (X0001USDT, X0001-USDT, ...)");
  flags.Int("trades-per-second", &trades_per_second, "trades per second of every instrument, 1 to 1000 (0: each its own)");
  flags.String("rules", &o.rules_file, "exchange rules file (default: the shipped rules)");
  flags.List("limit", &o.limit_overrides, "EXCHANGE.POOL=CAPACITY, e.g. binance_spot.REQUEST_WEIGHT=600");
  flags.Int("ban-strikes", &strikes, "429s ignored (sent during a Retry-After) before a 418 ban");
  flags.String("ban-schedule", &ban_schedule, "comma-separated ban lengths, e.g. 2m,5m,15m,1h,6h,24h,72h");
  flags.Duration("ban-forgive", &ban_forgive, "an IP without a ban this long starts the schedule over");
  flags.Duration("latency", &latency, "fault: delay added to every REST reply");
  flags.Double("error-rate", &error_rate, "fault: share of REST requests answered 5xx (uncharged)");
  flags.Duration("clock-offset", &clock_offset, "fault: server clock = real clock + this");
  flags.Double("ws-drop-per-second", &o.faults.ws_drop_per_second, "fault: chance per second a WebSocket is dropped");
  flags.OptionalDuration("binance-ping-interval", &o.binance_ping_interval, "server ping period on Binance streams [rules: 20s]");
  flags.OptionalDuration("binance-pong-timeout", &o.binance_pong_timeout, "close a Binance stream without pong this long [rules: 60s]");
  flags.Bool("okx-ws-book-snapshot", &o.okx_ws_book_snapshot,
             "OKX books as before 2026: a snapshot push first and CRC32 checksums (default: updates only, checksum 0)");
  flags.OptionalDuration("okx-idle-timeout", &o.okx_idle_timeout, "close an OKX socket with nothing pushed this long [rules: 30s]");
  flags.OptionalDuration("deribit-min-heartbeat", &o.deribit_min_heartbeat, "smallest public/set_heartbeat interval [rules: 10s]");
  flags.OptionalDuration("deribit-inactivity", &o.deribit_inactivity, "close a Deribit socket silent this long [600s]");
  auto args = flags.Parse(argc, argv);
  if (flags.help_requested()) {
    std::fputs(flags.Help().c_str(), stdout);
    return 0;
  }
  if (!args.ok()) return common::ExitCodeFor("mp-exchange-sim", args.status());
  if (!args->empty()) {
    return common::ExitCodeFor("mp-exchange-sim",
                               absl::InvalidArgumentError("unexpected argument " + args->front()));
  }
  auto hp = common::ParseHostPort(listen, "--listen");
  if (!hp.ok()) return common::ExitCodeFor("mp-exchange-sim", hp.status());
  o.rules_file = common::RulesBook::PathFor(o.rules_file, env);
  o.seed = static_cast<uint64_t>(seed);
  if (instruments < 0 || instruments > 100'000) {
    return common::ExitCodeFor("mp-exchange-sim", absl::InvalidArgumentError(
        absl::StrCat("--instruments=", instruments, ": must be 0 to 100000")));
  }
  if (trades_per_second < 0 || trades_per_second > 1000) {
    return common::ExitCodeFor("mp-exchange-sim", absl::InvalidArgumentError(
        absl::StrCat("--trades-per-second=", trades_per_second, ": must be 0 to 1000")));
  }
  o.market.extra_instruments = static_cast<int>(instruments);
  o.market.trades_per_second = static_cast<int>(trades_per_second);
  o.ban.strikes_to_ban = static_cast<int>(strikes);
  o.ban.forgive_after = ban_forgive;
  if (!ban_schedule.empty()) {
    o.ban.schedule.clear();
    for (absl::string_view part : absl::StrSplit(ban_schedule, ',')) {
      absl::Duration d;
      if (!absl::ParseDuration(part, &d)) {
        return common::ExitCodeFor("mp-exchange-sim", absl::InvalidArgumentError(
            "--ban-schedule: \"" + std::string(part) + "\" is not a duration"));
      }
      o.ban.schedule.push_back(d);
    }
  }
  o.faults.latency = latency;
  o.faults.error_rate = error_rate;
  o.faults.clock_offset = clock_offset;

  auto simulator = sim::Simulator::Create(std::move(o), common::RealClock::Get());
  if (!simulator.ok()) return common::ExitCodeFor("mp-exchange-sim", simulator.status());
  sim::SimServer server(**simulator);
  absl::Status st = server.Start(hp->host, hp->port, tls_cert, tls_key);
  if (!st.ok()) return common::ExitCodeFor("mp-exchange-sim", st);
  g_server = &server;
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::printf("mp-exchange-sim%s listening on %s:%d\n", tls_cert.empty() ? "" : " (TLS only)", hp->host.c_str(),
              server.port());
  std::fflush(stdout);
  server.Run();
  return 0;
}
