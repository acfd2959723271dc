// mp-bench sim: REST requests per second the simulator serves with its
// per-IP accounting on, from a loopback load generator.
#include "tests/bench/sim_bench.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/flags.h"
#include "tests/bench/http_load.h"
#include "tests/testing/sim_process.h"
#include <nlohmann/json.hpp>

namespace marketprism::bench {

int RunSimBench(const std::vector<std::string>& args) {
  int64_t seconds = 5, connections = 64, ips = 8, pipeline = 1;
  std::string mix = "all";
  common::FlagSet flags("mp-bench sim", "REST requests/s the exchange simulator serves");
  flags.Int("seconds", &seconds, "measured seconds per mix");
  flags.Int("connections", &connections, "keep-alive connections");
  flags.Int("source-ips", &ips, "spread connections over 127.0.1.1..N");
  flags.Int("pipeline", &pipeline, "requests outstanding per connection");
  flags.String("mix", &mix, "ping, light, depth100 or all");
  auto rest = flags.Parse(args);
  if (flags.help_requested()) {
    std::fputs(flags.Help().c_str(), stdout);
    return 0;
  }
  if (!rest.ok()) return common::ExitCodeFor("mp-bench sim", rest.status());

  // Limits high enough that nothing is refused: the accounting still runs on
  // every request, which is what is being measured.
  auto sim = testing::SimProcess::Start(
      {"--limit", "binance_spot.REQUEST_WEIGHT=2000000000", "--limit",
       "binance_spot.RAW_REQUESTS=2000000000", "--limit", "binance_usdm.REQUEST_WEIGHT=2000000000",
       "--limit", "okx.market/ticker=2000000000", "--limit", "deribit.non_matching_engine=2000000000000"});
  if (!sim.ok()) return common::ExitCodeFor("mp-bench sim", sim.status());

  struct Mix {
    std::string name;
    std::vector<std::string> paths;
  };
  std::vector<Mix> mixes = {
      {"ping", {"/api/v3/ping"}},
      {"light",
       {"/api/v3/time", "/api/v3/ticker/price?symbol=BTCUSDT", "/api/v3/depth?symbol=BTCUSDT&limit=5",
        "/fapi/v1/time", "/api/v5/market/ticker?instId=BTC-USDT", "/api/v2/public/get_time"}},
      {"depth100", {"/api/v3/depth?symbol=ETHUSDT&limit=100"}},
  };
  HttpLoadOptions o;
  o.port = (*sim)->port();
  o.connections = static_cast<int>(connections);
  o.pipeline = static_cast<int>(pipeline);
  o.duration = absl::Seconds(seconds);
  o.source_ips.clear();
  for (int i = 1; i <= ips; ++i) o.source_ips.push_back(absl::StrCat("127.0.1.", i));
  for (const Mix& m : mixes) {
    if (mix != "all" && mix != m.name) continue;
    o.paths = m.paths;
    auto r = RunHttpLoad(o);
    if (!r.ok()) return common::ExitCodeFor("mp-bench sim", r.status());
    int64_t ok = 0;
    for (auto& [status, n] : r->statuses) ok += status == 200 ? n : 0;
    nlohmann::ordered_json j = {
        {"bench", "sim_rest"}, {"mix", m.name}, {"connections", connections},
        {"source_ips", ips}, {"pipeline", pipeline}, {"seconds", r->seconds},
        {"requests", r->requests}, {"ok_200", ok},
        {"rps", std::round(static_cast<double>(r->requests) / r->seconds)},
        {"p50_us", std::round(r->p50_us)}, {"p99_us", std::round(r->p99_us)},
        {"connection_errors", r->connection_errors}};
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
  }
  // The simulator counted every request it served.
  auto stats = (*sim)->Stats();
  if (stats.ok()) {
    int64_t counted = 0;
    for (auto& [ex, e] : (*stats)["exchanges"].items()) counted += e["totals"]["requests"].get<int64_t>();
    std::printf("%s\n", nlohmann::ordered_json{{"bench", "sim_rest_accounting"},
                                               {"requests_counted_by_simulator", counted}}
                            .dump()
                            .c_str());
  }
  return 0;
}

}  // namespace marketprism::bench
