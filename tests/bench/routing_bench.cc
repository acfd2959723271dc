// mp-bench drive:   offer a workload to a running cluster, with a live per-IP
//                   view from the simulator and a utilisation summary (the demo).
// mp-bench routing: the utilisation benchmark: our cluster and the baselines
//                   side by side against one simulator, real 60 s windows.
#include "tests/bench/routing_bench.h"

#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/numbers.h"
#include "common/flags.h"
#include "common/net/curl_http_client.h"
#include "tests/bench/workload.h"
#include "tests/testing/cluster.h"
#include <nlohmann/json.hpp>

namespace marketprism::bench {

using Json = nlohmann::json;

namespace {

absl::StatusOr<Json> SimStats(const std::string& sim_url) {
  common::CurlHttpClient http({});
  common::HttpRequestSpec req;
  req.url = sim_url + "/sim/stats";
  auto r = http.Send(req);
  if (!r.ok()) return r.status();
  Json j = Json::parse(r->body, nullptr, false);
  if (j.is_discarded()) return absl::InternalError("bad /sim/stats");
  return j;
}

// Per fixed window of REQUEST_WEIGHT: start -> (used summed over `ips`).
std::map<int64_t, int64_t> Windows(const Json& stats, const std::vector<std::string>& ips,
                                   int64_t* capacity) {
  std::map<int64_t, int64_t> out;
  const Json& by_ip = stats["exchanges"]["binance_spot"]["ips"];
  for (const std::string& ip : ips) {
    if (!by_ip.contains(ip)) continue;
    const Json& pool = by_ip[ip]["pools"]["REQUEST_WEIGHT"];
    *capacity = pool["capacity"];
    for (const Json& w : pool["windows"]) out[w["start_ms"].get<int64_t>()] += w["used"].get<int64_t>();
    out[pool["window_start_ms"].get<int64_t>()] += pool["used"].get<int64_t>();
  }
  return out;
}

struct Utilisation {
  std::vector<std::pair<int64_t, double>> windows;  // full windows only
  double mean = 0, min = 0;
  int64_t rejections_429 = 0, rejections_418 = 0;
};

Utilisation Measure(const Json& stats, const std::vector<std::string>& ips, int64_t from_ms,
                    int64_t to_ms) {
  Utilisation u;
  int64_t capacity = 0;
  std::map<int64_t, int64_t> w = Windows(stats, ips, &capacity);
  double sum = 0;
  u.min = 1e9;
  for (auto& [start, used] : w) {
    if (start < from_ms || start + 60'000 > to_ms) continue;  // full windows inside the run
    double share = static_cast<double>(used) / static_cast<double>(capacity * static_cast<int64_t>(ips.size()));
    u.windows.emplace_back(start, share);
    sum += share;
    u.min = std::min(u.min, share);
  }
  if (!u.windows.empty()) u.mean = sum / static_cast<double>(u.windows.size());
  if (u.windows.empty()) u.min = 0;
  const Json& by_ip = stats["exchanges"]["binance_spot"]["ips"];
  for (const std::string& ip : ips) {
    if (!by_ip.contains(ip)) continue;
    u.rejections_429 += by_ip[ip]["rejections"].value("429", 0);
    u.rejections_418 += by_ip[ip]["rejections"].value("418", 0);
  }
  return u;
}

std::vector<std::string> Ips(const std::string& prefix, int first, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(absl::StrCat(prefix, first + i));
  return out;
}

int64_t Violations(const Json& stats) {
  int64_t n = 0;
  for (auto& [ex, e] : stats["exchanges"].items()) {
    for (auto& [kind, count] : e["totals"]["rejections"].items()) n += count.get<int64_t>();
  }
  return n;
}

}  // namespace

int RunDrive(const std::vector<std::string>& args) {
  std::string coordinator, sim_url, ips_flag;
  double factor = 1.5, okx = 0, deribit = 0;
  absl::Duration duration = absl::Seconds(150), deadline = absl::Seconds(3);
  int64_t capacity = 0;
  common::FlagSet f("mp-bench drive", "offers a workload to a cluster and shows each IP live");
  f.String("coordinator", &coordinator, "the coordinator's ADDR:PORT");
  f.String("sim", &sim_url, "the simulator's URL, for the live view");
  f.String("ips", &ips_flag, "comma-separated egress IPs to show");
  f.Int("capacity", &capacity, "REQUEST_WEIGHT per IP per minute, to size the demand");
  f.Double("demand", &factor, "Binance demand as a multiple of the combined budget");
  f.Double("okx-per-second", &okx, "OKX requests offered per second");
  f.Double("deribit-per-second", &deribit, "Deribit requests offered per second");
  f.Duration("duration", &duration, "how long to offer it");
  f.Duration("deadline", &deadline, "each request's deadline");
  auto rest = f.Parse(args);
  if (f.help_requested()) return std::fputs(f.Help().c_str(), stdout) < 0;
  if (!rest.ok()) return common::ExitCodeFor("mp-bench drive", rest.status());
  std::vector<std::string> ips = absl::StrSplit(ips_flag, ',', absl::SkipEmpty());
  if (coordinator.empty() || sim_url.empty() || ips.empty() || capacity < 1) {
    return common::ExitCodeFor("mp-bench drive",
                               absl::InvalidArgumentError("--coordinator, --sim, --ips and --capacity are required"));
  }
  Demand demand{factor * static_cast<double>(capacity) * static_cast<double>(ips.size()) / 60.0, okx, deribit};
  std::printf("offering %.0f Binance weight/s (%.1fx the %zu IPs' %ld a minute each), %.0f OKX and %.0f Deribit requests/s for %s\n\n",
              demand.binance_weight_per_second, factor, ips.size(), static_cast<long>(capacity), okx, deribit,
              absl::FormatDuration(duration).c_str());
  ClusterDriver driver(coordinator, demand, deadline, 1);
  absl::Time start = absl::Now();
  std::thread load([&] { driver.Run(start + duration); });
  std::map<std::string, int64_t> last_requests;
  while (absl::Now() < start + duration) {
    absl::SleepFor(absl::Seconds(1));
    auto stats = SimStats(sim_url);
    if (!stats.ok()) continue;
    int64_t server_ms = (*stats)["server_time_ms"];
    std::printf("t=%3.0fs  exchange clock :%02ld\n", absl::ToDoubleSeconds(absl::Now() - start),
                static_cast<long>(server_ms / 1000 % 60));
    for (const std::string& ip : ips) {
      const Json& ex = *stats;
      auto field = [&](const char* exchange) -> const Json* {
        const Json& all = ex["exchanges"];
        if (!all.contains(exchange) || !all[exchange]["ips"].contains(ip)) return nullptr;
        return &all[exchange]["ips"][ip];
      };
      const Json* b = field("binance_spot");
      int64_t used = b ? (*b)["pools"]["REQUEST_WEIGHT"]["used"].get<int64_t>() : 0;
      int64_t cap = b ? (*b)["pools"]["REQUEST_WEIGHT"]["capacity"].get<int64_t>() : capacity;
      int64_t reqs = 0, rej = 0;
      for (const char* e : {"binance_spot", "okx", "deribit"}) {
        if (const Json* j = field(e)) {
          reqs += (*j)["requests"].get<int64_t>();
          for (auto& [k, v] : (*j)["rejections"].items()) rej += v.get<int64_t>();
        }
      }
      int bars = static_cast<int>(20.0 * static_cast<double>(used) / static_cast<double>(std::max<int64_t>(1, cap)));
      std::printf("  %-11s binance %5ld/%-5ld [%s%s] %3.0f%%  requests %6ld (+%4ld/s)  rejections %ld\n", ip.c_str(),
                  static_cast<long>(used), static_cast<long>(cap), std::string(static_cast<size_t>(bars), '#').c_str(),
                  std::string(static_cast<size_t>(20 - std::min(20, bars)), '.').c_str(),
                  100.0 * static_cast<double>(used) / static_cast<double>(std::max<int64_t>(1, cap)),
                  static_cast<long>(reqs), static_cast<long>(reqs - last_requests[ip]), static_cast<long>(rej));
      last_requests[ip] = reqs;
    }
    std::fflush(stdout);
  }
  load.join();
  auto stats = SimStats(sim_url);
  if (!stats.ok()) return common::ExitCodeFor("mp-bench drive", stats.status());
  Utilisation u = Measure(*stats, ips, absl::ToUnixMillis(start), absl::ToUnixMillis(absl::Now()));
  std::printf("\nfull minutes of Binance budget used (all %zu IPs together):\n", ips.size());
  for (auto& [w, share] : u.windows) {
    std::printf("  %s  %5.1f%%\n", absl::FormatTime("%H:%M", absl::FromUnixMillis(w), absl::UTCTimeZone()).c_str(),
                share * 100);
  }
  std::printf("mean %.1f%%, min %.1f%% over %zu full windows\n", u.mean * 100, u.min * 100, u.windows.size());
  std::printf("calls: %ld answered by the exchange, %ld without budget before their deadline, %ld other errors\n",
              static_cast<long>(driver.stats().ok.load()), static_cast<long>(driver.stats().exhausted.load()),
              static_cast<long>(driver.stats().other_errors.load()));
  int64_t violations = Violations(*stats);
  std::printf("violations at the exchange (429, 418, 50011, 10028): %ld\n", static_cast<long>(violations));
  return violations == 0 ? 0 : 1;
}

int RunRoutingBench(const std::vector<std::string>& args) {
  int64_t windows = 3, capacity = 6000;
  double factor = 1.5;
  std::string node_counts = "3,8";
  absl::Duration latency = absl::ZeroDuration();
  bool baselines = true;
  common::FlagSet f("mp-bench routing",
                    "utilisation of the combined budget: the cluster beside per-node token buckets");
  f.Duration("latency", &latency, "round trip the simulator adds to every reply (its --latency)");
  f.Bool("baselines", &baselines, "also run the token-bucket baselines");
  f.Int("windows", &windows, "full 60 s windows to measure");
  f.Int("capacity", &capacity, "Binance REQUEST_WEIGHT per IP per minute");
  f.Double("demand", &factor, "demand as a multiple of the combined budget");
  f.String("nodes", &node_counts, "comma-separated cluster sizes to run");
  auto rest = f.Parse(args);
  if (f.help_requested()) return std::fputs(f.Help().c_str(), stdout) < 0;
  if (!rest.ok()) return common::ExitCodeFor("mp-bench routing", rest.status());
  for (absl::string_view nv : absl::StrSplit(node_counts, ',')) {
    int n = 0;
    if (!absl::SimpleAtoi(nv, &n) || n < 1 || n > 40) {
      return common::ExitCodeFor("mp-bench routing", absl::InvalidArgumentError("--nodes: sizes 1..40"));
    }
    testing::ClusterOptions o;
    o.nodes = n;
    o.sim_flags = {"--limit", absl::StrCat("binance_spot.REQUEST_WEIGHT=", capacity), "--latency",
                   absl::FormatDuration(latency)};
    o.exchanges = {"binance_spot"};
    o.node_flags = {"--exchange", "binance_spot"};
    auto cluster = testing::Cluster::Start(o);
    if (!cluster.ok()) return common::ExitCodeFor("mp-bench routing", cluster.status());
    testing::Cluster& c = **cluster;
    std::vector<std::string> ours, uniform = Ips("127.0.1.", 1, n), skewed = Ips("127.0.2.", 1, n);
    for (int i = 0; i < n; ++i) ours.push_back(c.egress_ip(i));
    // Start at the next minute edge, so every measured window is whole.
    absl::Time now = absl::Now();
    absl::Time start = absl::FromUnixSeconds(absl::ToUnixSeconds(now) / 60 * 60 + 60);
    absl::Time end = start + absl::Seconds(60 * windows) + absl::Seconds(1);
    absl::SleepFor(start - absl::Now() - absl::Milliseconds(500));
    double per_set = factor * static_cast<double>(capacity * n) / 60.0;
    ClusterDriver mine(c.coordinator_address(), Demand{per_set, 0, 0}, absl::Seconds(3), 7);
    BaselineDriver even(c.sim().base_url(), uniform, Demand{per_set, 0, 0}, capacity, absl::Seconds(3), 7);
    // Static sharding rarely splits demand evenly: here by a Zipf-like law.
    std::vector<double> zipf;
    double z = 0;
    for (int i = 1; i <= n; ++i) z += 1.0 / i;
    for (int i = 1; i <= n; ++i) zipf.push_back(1.0 / i / z);
    BaselineDriver skew(c.sim().base_url(), skewed, Demand{per_set, 0, 0}, capacity, absl::Seconds(3), 7, zipf);
    std::thread t1([&] { mine.Run(end); });
    if (baselines) {
      std::thread t2([&] { even.Run(end); }), t3([&] { skew.Run(end); });
      t2.join();
      t3.join();
    }
    t1.join();
    auto stats = SimStats(c.sim().base_url());
    if (!stats.ok()) return common::ExitCodeFor("mp-bench routing", stats.status());
    struct Row {
      const char* approach;
      const std::vector<std::string>* ips;
      DriveStats* drive;
    };
    std::vector<Row> rows = {Row{"marketprism", &ours, &mine.stats()}};
    if (baselines) {
      rows.push_back(Row{"baseline_token_bucket_even_share", &uniform, &even.stats()});
      rows.push_back(Row{"baseline_token_bucket_zipf_share", &skewed, &skew.stats()});
    }
    for (const Row& r : rows) {
      Utilisation u = Measure(*stats, *r.ips, absl::ToUnixMillis(start), absl::ToUnixMillis(end));
      Json per = Json::array();
      for (auto& [w, share] : u.windows) per.push_back(std::round(share * 10000) / 100);
      nlohmann::ordered_json j = {
          {"bench", "routing_utilization"}, {"approach", r.approach}, {"nodes", n},
          {"sim_latency_ms", absl::ToDoubleMilliseconds(latency)},
          {"capacity_per_ip_per_minute", capacity}, {"demand_x_budget", factor},
          {"full_windows", u.windows.size()},
          {"mean_utilization_pct", std::round(u.mean * 10000) / 100},
          {"min_utilization_pct", std::round(u.min * 10000) / 100},
          {"per_window_pct", per},
          {"target_mean_utilization_pct", 98}, {"met", u.mean >= 0.98},
          {"rejections_429", u.rejections_429}, {"rejections_418", u.rejections_418},
          {"calls_sent", r.drive->sent.load()}, {"calls_answered", r.drive->ok.load()},
          {"calls_without_budget", r.drive->exhausted.load()}};
      std::printf("%s\n", j.dump().c_str());
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace marketprism::bench
