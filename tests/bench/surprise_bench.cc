#include "tests/bench/surprise_bench.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/flags.h"
#include "tests/testing/surprise.h"

namespace marketprism::bench {

namespace {

using OJson = nlohmann::ordered_json;

struct Totals {
  int64_t max_429 = 0, total_429 = 0, total_418 = 0;
  double min_last_window_pct = 100;
};

Totals Sum(const std::vector<testing::IpCount>& ips, int64_t limit) {
  Totals t;
  for (const testing::IpCount& ip : ips) {
    t.max_429 = std::max(t.max_429, ip.refused_429);
    t.total_429 += ip.refused_429;
    t.total_418 += ip.banned_418;
    t.min_last_window_pct = std::min(t.min_last_window_pct, 100.0 * static_cast<double>(ip.last_window_used) /
                                                                static_cast<double>(limit));
  }
  return t;
}

}  // namespace

int RunSurpriseBench(const std::vector<std::string>& args) {
  std::string node_counts = "3,8";
  int64_t capacity = 600, lowered = 300, foreign = 200, windows = 3, window_seconds = 5;
  common::FlagSet f("mp-bench surprise",
                    "a saturated cluster surprised by the exchange, with the exposure bound on and off");
  f.String("nodes", &node_counts, "comma-separated cluster sizes to run");
  f.Int("capacity", &capacity, "Binance REQUEST_WEIGHT per IP per window");
  f.Int("lowered", &lowered, "the limit the exchange drops to");
  f.Int("foreign", &foreign, "weight the foreign client spends at the start of each window");
  f.Int("windows", &windows, "windows with the foreign client");
  f.Int("window-seconds", &window_seconds, "the shortened REQUEST_WEIGHT window");
  auto rest = f.Parse(args);
  if (f.help_requested()) return std::fputs(f.Help().c_str(), stdout) < 0;
  if (!rest.ok()) return common::ExitCodeFor("mp-bench surprise", rest.status());
  for (absl::string_view nv : absl::StrSplit(node_counts, ',')) {
    int n = 0;
    if (!absl::SimpleAtoi(nv, &n) || n < 1 || n > 40) {
      return common::ExitCodeFor("mp-bench surprise", absl::InvalidArgumentError("--nodes: sizes 1..40"));
    }
    for (bool bounded : {true, false}) {
      testing::SurpriseOptions o;
      o.nodes = n;
      o.capacity = capacity;
      o.window_seconds = window_seconds;
      o.rules_file = MP_RULES_FILE;
      if (!bounded) o.cluster_flags = {"--max-in-flight", "0"};
      const char* approach = bounded ? "exposure_bound" : "no_exposure_bound";
      auto low = testing::RunLoweredLimit(o, lowered);
      if (!low.ok()) return common::ExitCodeFor("mp-bench surprise", low.status());
      Totals t = Sum(low->ips, lowered);
      OJson j = {{"bench", "surprise_lowered_limit"}, {"approach", approach}, {"nodes", n},
                 {"capacity", capacity}, {"lowered_to", lowered}, {"window_s", window_seconds},
                 {"refused_429_max_per_ip", t.max_429}, {"refused_429_total", t.total_429},
                 {"bans_418", t.total_418},
                 {"new_limit_adopted_ms", low->adopted_after == absl::InfiniteDuration()
                                              ? OJson(nullptr)
                                              : OJson(absl::ToInt64Milliseconds(low->adopted_after))},
                 {"next_window_used_pct_min", std::round(t.min_last_window_pct * 10) / 10},
                 {"target", "0 418s, at most one 429 per IP"},
                 {"met", t.total_418 == 0 && t.max_429 <= 1}, {"calls_answered", low->calls_ok}};
      std::printf("%s\n", j.dump().c_str());
      std::fflush(stdout);
      auto fc = testing::RunForeignClient(o, static_cast<int>(windows), foreign);
      if (!fc.ok()) return common::ExitCodeFor("mp-bench surprise", fc.status());
      Totals others = Sum(fc->others, capacity);
      OJson k = {{"bench", "surprise_foreign_client"}, {"approach", approach}, {"nodes", n},
                 {"capacity", capacity}, {"foreign_weight_per_window", foreign}, {"windows", windows},
                 {"victim_refused_429_of_the_cluster", fc->victim.refused_429 - fc->foreign_refused},
                 {"victim_refused_429_of_the_foreign_client", fc->foreign_refused},
                 {"victim_bans_418", fc->victim.banned_418}, {"other_ips_refused_429", others.total_429},
                 {"foreign_units_reported", fc->foreign_seen},
                 {"target", "0 418s, at most one 429 per IP"},
                 {"met", fc->victim.banned_418 == 0 && fc->victim.refused_429 <= 1 && others.max_429 <= 1},
                 {"calls_answered", fc->calls_ok}};
      std::printf("%s\n", k.dump().c_str());
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace marketprism::bench
