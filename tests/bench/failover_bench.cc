#include "tests/bench/failover_bench.h"

#include <signal.h>

#include <cstdio>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/flags.h"
#include "tests/testing/cluster.h"
#include "tests/testing/gossip_cluster.h"

namespace marketprism::bench {

namespace {

// The time on the log line holding `text` ("2026-...Z I coordinator: ...").
std::optional<absl::Time> LoggedAt(const std::string& output, const std::string& text) {
  size_t at = output.find(text);
  if (at == std::string::npos) return std::nullopt;
  size_t line = output.rfind('\n', at);
  line = line == std::string::npos ? 0 : line + 1;
  absl::Time t;
  std::string err;
  if (!absl::ParseTime("%Y-%m-%dT%H:%M:%E*SZ", output.substr(line, 24), &t, &err)) return std::nullopt;
  return t;
}

int64_t Count(const std::vector<absl::Time>& v, absl::Time from, absl::Time to) {
  return std::lower_bound(v.begin(), v.end(), to) - std::lower_bound(v.begin(), v.end(), from);
}

}  // namespace

int RunFailoverBench(const std::vector<std::string>& args) {
  int64_t nodes = 3, callers = 32, capacity = 100, rounds = 3;
  absl::Duration before = absl::Seconds(6), after = absl::Seconds(8), hold_down = absl::Milliseconds(500);
  common::FlagSet f("mp-bench failover",
                    "kill -9 the leader coordinator under a load saturating OKX ticker budgets");
  f.Int("nodes", &nodes, "nodes (egress IPs)");
  f.Int("callers", &callers, "closed-loop callers (through the follower)");
  f.Int("capacity", &capacity, "okx market/ticker per 2 s per IP");
  f.Int("rounds", &rounds, "runs (a fresh cluster each)");
  f.Duration("before", &before, "load before the kill");
  f.Duration("after", &after, "load after the kill");
  f.Duration("hold-down", &hold_down, "the coordinators' --leader-hold-down");
  auto rest = f.Parse(args);
  if (f.help_requested()) return std::fputs(f.Help().c_str(), stdout) < 0;
  if (!rest.ok()) return common::ExitCodeFor("mp-bench failover", rest.status());
  for (int64_t round = 0; round < rounds; ++round) {
    testing::GossipClusterOptions o;
    o.coordinators = 2;
    o.nodes = static_cast<int>(nodes);
    o.subnet = 80 + static_cast<int>(round % 10);
    std::string limit = absl::StrCat("okx.market/ticker=", capacity);
    o.sim_flags = {"--limit", limit};
    o.coordinator_flags = {"--limit", limit, "--leader-hold-down", absl::StrCat(absl::ToInt64Milliseconds(hold_down), "ms")};
    auto c = testing::GossipCluster::Start(o);
    if (!c.ok()) return common::ExitCodeFor("mp-bench failover", c.status());
    auto ready = (*c)->WaitForLeader(1, 1, static_cast<int>(nodes), absl::Seconds(15));
    if (!ready.ok()) return common::ExitCodeFor("mp-bench failover", ready.status());
    absl::Time start = absl::Now();
    absl::Time kill_at = start + before;
    absl::Time end = kill_at + after;
    testing::LoadRecord load;
    std::thread driver([&] {
      load = testing::RunClosedLoop((*c)->coordinator_address(1), static_cast<int>(callers), end,
                                    testing::MakeRequest("okx", "/api/v5/market/ticker", {{"instId", "BTC-USDT"}}),
                                    absl::Seconds(3));
    });
    absl::SleepFor(kill_at - absl::Now());
    absl::Time killed = absl::Now();
    (*c)->coordinator(0).Signal(SIGKILL);
    driver.join();
    auto stats = (*c)->sim().Stats();
    if (!stats.ok()) return common::ExitCodeFor("mp-bench failover", stats.status());
    int64_t rejections = testing::SimProcess::Rejections(*stats);
    std::optional<absl::Time> term = LoggedAt((*c)->coordinator(1).Output(), "coord-b leads term 2");
    // Full throughput: what the load got per second once warm, before the kill.
    const std::vector<absl::Time>& done = load.completions;
    double baseline = static_cast<double>(Count(done, start + absl::Seconds(2), kill_at)) /
                      absl::ToDoubleSeconds(kill_at - start - absl::Seconds(2));
    // Replies come in bursts: callers saturating a 2 s rolling window get
    // the whole window's budget the moment it frees. So: how soon after the
    // new term replies flow, and whether the first window under it is full.
    double first_reply_ms = -1;
    int64_t first_window = -1;
    if (term) {
      auto it = std::lower_bound(done.begin(), done.end(), *term);
      if (it != done.end()) {
        first_reply_ms = absl::ToDoubleMilliseconds(*it - *term);
        first_window = Count(done, *it, *it + absl::Seconds(2));
      }
    }
    auto next = std::lower_bound(done.begin(), done.end(), killed);
    double gap_ms = next == done.end() ? -1 : absl::ToDoubleMilliseconds(*next - killed);
    nlohmann::json timeline = nlohmann::json::array();
    for (absl::Time t = killed - absl::Seconds(2); t < killed + absl::Seconds(4); t += absl::Milliseconds(250)) {
      timeline.push_back(Count(done, t, t + absl::Milliseconds(250)));
    }
    nlohmann::ordered_json j = {
        {"bench", "coordinator_failover"}, {"round", round + 1}, {"nodes", nodes}, {"callers", callers},
        {"budget_per_s", static_cast<double>(capacity * nodes) / 2.0},
        {"baseline_per_s", std::round(baseline * 10) / 10},
        {"kill_to_new_term_ms", term ? std::round(absl::ToDoubleMilliseconds(*term - killed)) : -1},
        {"new_term_to_first_reply_ms", std::round(first_reply_ms)},
        {"replies_per_2s_window_before", std::round(baseline * 2)},
        {"replies_first_2s_window_after_term", first_window},
        {"kill_to_next_reply_ms", std::round(gap_ms)},
        {"rejections_at_simulator", rejections},
        {"client_errors", load.error_count()},
        {"no_budget_in_time", load.exhausted},
        {"replies", static_cast<int64_t>(done.size())},
        {"replies_per_250ms_from_2s_before_the_kill", timeline}};
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace marketprism::bench
