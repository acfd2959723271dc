// The deterministic simulation: hundreds of members on a virtual clock and network
// with loss, delay, crashes, silent hosts, stalls and a 60 s partition.
// Properties checked:
//  * no member answering within the stall budget is ever declared dead;
//  * every crash is dead at every running member within its detection
//    budget (a crashed process: 1 s with 5% loss; a silent host: the stall
//    budget + 1 s);
//  * state converges: every member holds every record's latest value;
//  * a healed partition merges without help (within 5 s; 10 s at 1000 members);
//  * the same seed gives the same trace.
#include <gtest/gtest.h>

#include <malloc.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>

#include "tests/testing/gossip_sim.h"

namespace marketprism::common::gossip {
namespace {

// The simulation allocates and frees millions of small protobuf messages:
// keep freed memory in the process (no trimming back to the kernel, which
// then zeroes fresh pages again) and large blocks off mmap.
const bool kMallocTuned = [] {
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 256 << 20);
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  return true;
}();

using Kind = MemberEvent::Kind;
using ::marketprism::testing::GossipSim;

struct Report {
  uint64_t trace = 0;
  int false_deaths = 0;  // deaths of members that never stopped answering
  std::string first_false_death;
  absl::Duration worst_crash = absl::ZeroDuration();  // crashed process, dead at all
  absl::Duration worst_silent = absl::ZeroDuration();  // silent host, dead at all
  int undetected = 0;
  bool converged_before_faults = false;
  absl::Duration join_converged;  // after the last join (checked every 0.5 s)
  absl::Duration heal_merge = absl::InfiniteDuration();
  int stale_records = 0;  // at the end
  int stale_at_merge = -1;  // member pairs with an old record when membership merged
  absl::Duration records_converged = absl::InfiniteDuration();  // after the heal
  uint64_t packets = 0;
  uint64_t stuck_ticks = 0;
};

// Prints how many (holder, subject) pairs of running members are not alive
// to each other, and the first few (for MP_SIM_VERBOSE).
void ShowUnmerged(const GossipSim& sim, const std::vector<int>* cut) {
  int count = 0;
  std::map<std::string, int> by_state;
  for (int a = 0; a < sim.size(); ++a) {
    for (int b = 0; b < sim.size(); ++b) {
      if (a == b || !sim.running(a) || !sim.running(b)) continue;
      std::optional<MemberState> s = sim.StateAt(a, b);
      if (s == MemberState::kAlive) continue;
      std::string state = s ? std::string(MemberStateName(*s)) : "unknown";
      ++by_state[state];
      if (count++ >= 10) continue;
      const char* side = "";
      if (cut != nullptr) {
        side = std::count(cut->begin(), cut->end(), a) ? " (holder cut off)"
               : std::count(cut->begin(), cut->end(), b) ? " (subject cut off)" : " (neither cut off)";
      }
      std::printf("unmerged: m%d holds m%d %s%s\n", a, b, state.c_str(), side);
    }
  }
  for (const auto& [state, n] : by_state) std::printf("unmerged pairs %s: %d\n", state.c_str(), n);
}

// Every member publishes its usage summary every `publish_every` seconds.
Report RunScenario(int n, uint64_t seed, int publish_every, absl::Duration partition = absl::Seconds(60)) {
  // MP_SIM_VERBOSE=1 prints each phase's virtual time and every violation.
  static const bool verbose = std::getenv("MP_SIM_VERBOSE") != nullptr;
  auto real_start = absl::Now();
  size_t events_seen = 0;
  auto phase = [&](const char* name, const GossipSim& sim) {
    if (verbose) {
      std::map<Kind, int> kinds;  // events since the last phase
      const auto& log = sim.observations();
      for (size_t i = events_seen; i < log.size(); ++i) ++kinds[log[i].kind];
      events_seen = log.size();
      std::printf("[%s] virtual +%s, real %s, %llu datagrams; events:", name,
                  absl::FormatDuration(sim.now() - sim.start()).c_str(),
                  absl::FormatDuration(absl::Now() - real_start).c_str(),
                  static_cast<unsigned long long>(sim.packets_sent()));
      for (const auto& [kind, count] : kinds) std::printf(" %s %d", std::string(MemberEventName(kind)).c_str(), count);
      std::printf("\n");
    }
  };
  GossipSim::Options o;
  o.seed = seed;
  o.min_delay = absl::Microseconds(200);
  o.max_delay = absl::Milliseconds(20);
  o.gossip.report_updates = false;  // records are checked directly (RecordOf)
  GossipSim sim(o);
  Report r;
  sim.AddMany(n, absl::Milliseconds(10));
  sim.RunFor(absl::Milliseconds(10) * n);  // the joins, 100 a second
  auto converged = [&] {
    for (int a = 0; a < sim.size(); ++a) {
      if (!sim.running(a)) continue;
      for (int b = 0; b < sim.size(); ++b) {
        if (a != b && sim.running(b) && sim.StateAt(a, b) != MemberState::kAlive) return false;
      }
    }
    return true;
  };
  // Every member alive to every other within 10 s of the last join.
  absl::Time last_join = sim.now();
  while (!(r.converged_before_faults = converged()) && sim.now() - last_join < absl::Seconds(10)) {
    sim.RunFor(absl::Milliseconds(500));
  }
  r.join_converged = sim.now() - last_join;
  phase("joined", sim);
  if (verbose && !r.converged_before_faults) ShowUnmerged(sim, nullptr);

  sim.SetLoss(0.05);
  absl::Time faults = sim.now();
  std::mt19937_64 pick(seed);
  std::vector<int> order(static_cast<size_t>(n - 1));
  for (int i = 0; i < n - 1; ++i) order[static_cast<size_t>(i)] = i + 1;  // member 0 stays
  std::shuffle(order.begin(), order.end(), pick);
  size_t k = 0;
  int per = std::max(1, n / 100);
  std::vector<int> crashed, silent, stalled, cut;
  for (int i = 0; i < per; ++i) crashed.push_back(order[k++]);
  for (int i = 0; i < per; ++i) silent.push_back(order[k++]);
  for (int i = 0; i < 2 * per; ++i) stalled.push_back(order[k++]);
  for (int i = 0; i < std::max(2, n / 50); ++i) cut.push_back(order[k++]);
  std::set<int> gone(crashed.begin(), crashed.end());
  gone.insert(silent.begin(), silent.end());

  // Every member publishes a usage summary meanwhile.
  auto publish = [&](int round) {
    if (round % publish_every != 0) return;
    for (int i = 0; i < sim.size(); ++i) {
      if (sim.running(i)) sim.SetRecord(i, "usage", std::to_string(round * 10000 + i), false);
    }
  };
  std::vector<absl::Time> when(static_cast<size_t>(n), absl::InfinitePast());
  for (int c : crashed) {
    sim.Crash(c);
    when[static_cast<size_t>(c)] = sim.now();
  }
  for (int s : silent) {
    sim.HostDown(s);
    when[static_cast<size_t>(s)] = sim.now();
  }
  int round = 0;
  for (int t = 0; t < 6; ++t) {
    publish(round++);
    sim.RunFor(absl::Seconds(1));
  }
  phase("crashes", sim);
  // Stalls shorter than the budget, in waves: 1.5 s frozen, 3 s running.
  for (int wave = 0; wave < 3; ++wave) {
    for (int s : stalled) sim.Stall(s, absl::Milliseconds(1500));
    for (int t = 0; t < 3; ++t) {
      publish(round++);
      sim.RunFor(absl::Seconds(1));
    }
  }
  phase("stalls", sim);
  if (verbose) {
    std::printf("stalled:");
    for (int s : stalled) std::printf(" m%d", s);
    std::printf("\ncut:");
    for (int c : cut) std::printf(" m%d", c);
    std::printf("\n");
  }
  // The last usage summaries, then a 60 s partition of `cut` from the rest;
  // heal and wait for the merge. The summaries must be everywhere by then.
  round = (round / publish_every + 1) * publish_every;
  publish(round++);
  sim.Partition(cut);
  absl::Time parted = sim.now();
  sim.RunFor(partition);
  phase("partitioned", sim);
  sim.Heal();
  absl::Time healed = sim.now();
  if (verbose) std::printf("healed at %s\n", absl::FormatTime(healed).c_str());
  while (sim.now() - healed < absl::Seconds(20)) {
    sim.RunFor(absl::Milliseconds(250));
    if (verbose && (sim.now() - healed) % absl::Seconds(1) == absl::ZeroDuration() && !converged()) {
      std::printf("+%s after the heal:\n", absl::FormatDuration(sim.now() - healed).c_str());
      ShowUnmerged(sim, &cut);
    }
    if (converged()) {
      r.heal_merge = sim.now() - healed;
      break;
    }
  }
  // Usage summaries travel over the grid (best effort, one copy each) and
  // by push-pull sync; one that missed a member arrives by its next sync,
  // a sync interval (30 s) later at most (the bound allows 45 s).
  int last_round = round - 1;
  // (holder, owner) pairs whose holder lacks the owner's last summary.
  // Nothing is published after the last round, so a pair once current
  // stays current: only the stale ones are looked at again.
  std::vector<std::pair<int, int>> stale_pairs;
  for (int a = 0; a < n; ++a) {
    for (int b = 0; b < n; ++b) {
      if (a != b) stale_pairs.emplace_back(a, b);
    }
  }
  auto stale = [&] {
    std::erase_if(stale_pairs, [&](const std::pair<int, int>& p) {
      if (!sim.running(p.first) || !sim.running(p.second)) return true;
      std::optional<std::string> v = sim.core(p.first).RecordOf(sim.core(p.second).self_id(), "usage");
      return v == std::to_string(last_round * 10000 + p.second);
    });
    return static_cast<int>(stale_pairs.size());
  };
  while (sim.now() - healed < absl::Seconds(50)) {
    int now_stale = stale();
    if (r.stale_at_merge < 0) r.stale_at_merge = now_stale;
    if (verbose && now_stale > 0) {
      std::set<int> cut_set(cut.begin(), cut.end());
      std::printf("+%s after the heal (%llu datagrams): %d stale record pairs, e.g.",
                  absl::FormatDuration(sim.now() - healed).c_str(),
                  static_cast<unsigned long long>(sim.packets_sent()), now_stale);
      for (size_t i = 0; i < stale_pairs.size() && i < 6; ++i) {
        std::printf(" m%d%s lacks m%d%s's;", stale_pairs[i].first, cut_set.count(stale_pairs[i].first) ? "(cut)" : "",
                    stale_pairs[i].second, cut_set.count(stale_pairs[i].second) ? "(cut)" : "");
      }
      std::printf("\n");
    }
    if (now_stale == 0) {
      r.records_converged = sim.now() - healed;
      break;
    }
    sim.RunFor(absl::Seconds(1));
  }
  phase("healed", sim);
  if (const char* pair = std::getenv("MP_SIM_PAIR"); pair != nullptr) {
    // MP_SIM_PAIR=a,b: every event either of the two saw of the other.
    int a = std::atoi(pair), b = std::atoi(std::strchr(pair, ',') + 1);
    for (const auto& ob : sim.observations()) {
      if ((ob.observer == a && ob.subject == b) || (ob.observer == b && ob.subject == a)) {
        std::printf("+%s m%d saw m%d %s (incarnation %u)\n", absl::FormatDuration(ob.at - faults).c_str(),
                    ob.observer, ob.subject, std::string(MemberEventName(ob.kind)).c_str(), ob.incarnation);
      }
    }
    std::printf("parted at +%s, healed at +%s\n", absl::FormatDuration(parted - faults).c_str(),
                absl::FormatDuration(healed - faults).c_str());
  }
  // Deaths of members that kept answering (cross-partition deaths during the
  // partition are what a partition means, and are not counted).
  std::set<int> cut_set(cut.begin(), cut.end());
  for (const auto& ob : sim.observations()) {
    if (ob.kind != Kind::kDead || ob.at < faults || ob.subject < 0 || gone.count(ob.subject)) continue;
    bool across = cut_set.count(ob.subject) != cut_set.count(ob.observer);
    // (A suspicion begun during the partition may end in a death just
    // after the heal, within the detection budget.)
    if (across && ob.at >= parted && ob.at < healed + absl::Seconds(4)) continue;
    if (verbose) {
      std::printf("false death: m%d%s held m%d%s dead at +%s\n", ob.observer,
                  cut_set.count(ob.observer) ? "(cut)" : "", ob.subject, cut_set.count(ob.subject) ? "(cut)" : "",
                  absl::FormatDuration(ob.at - faults).c_str());
    }
    if (r.false_deaths++ == 0) {
      r.first_false_death = absl::StrCat("m", ob.observer, " held m", ob.subject, " dead at +",
                                         absl::FormatDuration(ob.at - faults));
    }
  }
  // Detection: the first sighting of each gone member by every running member.
  auto worst = [&](const std::vector<int>& victims, absl::Duration budget, absl::Duration* out) {
    for (int v : victims) {
      std::vector<absl::Time> first(static_cast<size_t>(n), absl::InfiniteFuture());
      for (const auto& ob : sim.observations()) {
        if (ob.subject == v && ob.kind == Kind::kDead && ob.at >= when[static_cast<size_t>(v)]) {
          first[static_cast<size_t>(ob.observer)] = std::min(first[static_cast<size_t>(ob.observer)], ob.at);
        }
      }
      if (verbose) {  // when the first, the median, the 95th percentile and the last member saw it
        std::vector<absl::Duration> seen;
        for (int i = 0; i < n; ++i) {
          if (i != v && !gone.count(i) && first[static_cast<size_t>(i)] != absl::InfiniteFuture()) {
            seen.push_back(first[static_cast<size_t>(i)] - when[static_cast<size_t>(v)]);
          }
        }
        std::sort(seen.begin(), seen.end());
        if (!seen.empty()) {
          std::printf("m%d dead at: first %s, p50 %s, p95 %s, last %s\n", v, absl::FormatDuration(seen.front()).c_str(),
                      absl::FormatDuration(seen[seen.size() / 2]).c_str(),
                      absl::FormatDuration(seen[seen.size() * 95 / 100]).c_str(),
                      absl::FormatDuration(seen.back()).c_str());
        }
      }
      for (int i = 0; i < n; ++i) {
        if (i == v || gone.count(i)) continue;
        if (first[static_cast<size_t>(i)] == absl::InfiniteFuture()) {
          ++r.undetected;
          if (verbose) std::printf("m%d never saw m%d dead\n", i, v);
        } else {
          absl::Duration d = first[static_cast<size_t>(i)] - when[static_cast<size_t>(v)];
          if (verbose && d > budget) {
            std::printf("m%d saw m%d dead after %s\n", i, v, absl::FormatDuration(d).c_str());
          }
          *out = std::max(*out, d);
        }
      }
    }
  };
  worst(crashed, absl::Seconds(1), &r.worst_crash);
  worst(silent, absl::Seconds(3), &r.worst_silent);
  r.stale_records = stale();
  r.trace = sim.trace_hash();
  r.packets = sim.packets_sent();
  r.stuck_ticks = sim.stuck_ticks();
  return r;
}

// Budgets: those of the benchmarks (10 to 50 members) by default; a
// 1000-member cluster is given more for a crash and a merge (see
// docs/benchmarks.md for the figures).
struct Budgets {
  absl::Duration crash = absl::Seconds(1);
  absl::Duration merge = absl::Seconds(5);
};

void ExpectProperties(const Report& r, Budgets b = {}) {
  EXPECT_TRUE(r.converged_before_faults);
  EXPECT_EQ(r.false_deaths, 0) << r.first_false_death;
  EXPECT_EQ(r.undetected, 0);
  EXPECT_LE(r.worst_crash, b.crash);
  EXPECT_LE(r.worst_silent, absl::Seconds(3));
  EXPECT_LE(r.heal_merge, b.merge);
  EXPECT_EQ(r.stale_records, 0);
  EXPECT_LE(r.records_converged, absl::Seconds(46));
  EXPECT_EQ(r.stuck_ticks, 0u);
}

void PrintReport(int n, const Report& r) {
  std::printf("{\"members\":%d,\"join_converged_ms\":%lld,\"worst_crash_ms\":%lld,\"worst_silent_ms\":%lld,\"heal_merge_ms\":%lld,"
              "\"records_converged_ms\":%lld,\"stale_pairs_at_merge\":%d,\"false_deaths\":%d,\"packets\":%llu}\n",
              n, static_cast<long long>(absl::ToInt64Milliseconds(r.join_converged)),
              static_cast<long long>(absl::ToInt64Milliseconds(r.worst_crash)),
              static_cast<long long>(absl::ToInt64Milliseconds(r.worst_silent)),
              static_cast<long long>(absl::ToInt64Milliseconds(r.heal_merge)),
              static_cast<long long>(absl::ToInt64Milliseconds(r.records_converged)), r.stale_at_merge,
              r.false_deaths, static_cast<unsigned long long>(r.packets));
}

// 300 members, 60 s partition, three seeds: about 3 s each on 2 cores.
// Seed 1 once showed a member taking a death verdict from across the healed
// partition by push-pull sync (the sender's view was not doubted there).
TEST(GossipSimulationTest, ThreeHundredMembersWithLossStallsCrashesAndAPartition) {
  for (uint64_t seed : {20261121ULL, 7ULL, 1ULL}) {
    Report r = RunScenario(300, seed, 10);
    ExpectProperties(r);
    PrintReport(300, r);
  }
}

// 1000 members, a 20 s partition of 20 of them: every property holds, in
// ~30 s on a 2-core machine (half of it waiting for the last record copies
// lost on the grid to come by push-pull sync). MP_SIM_SKIP_1000=1 skips it.
TEST(GossipSimulationTest, AThousandMembers) {
  if (std::getenv("MP_SIM_SKIP_1000") != nullptr) GTEST_SKIP() << "MP_SIM_SKIP_1000 is set";
  Report r = RunScenario(1000, 20261121, 10, absl::Seconds(20));
  PrintReport(1000, r);
  ExpectProperties(r, Budgets{absl::Seconds(2), absl::Seconds(10)});
}

// MP_SIM_MEMBERS=N runs the scenario at another size (for investigation).
TEST(GossipSimulationTest, ScenarioAtTheSizeAsked) {
  const char* n = std::getenv("MP_SIM_MEMBERS");
  if (n == nullptr) GTEST_SKIP() << "set MP_SIM_MEMBERS";
  const char* seed = std::getenv("MP_SIM_SEED");
  Report r = RunScenario(std::atoi(n), seed != nullptr ? std::strtoull(seed, nullptr, 10) : 20261121, 10);
  PrintReport(std::atoi(n), r);
  ExpectProperties(r);
}

TEST(GossipSimulationTest, TheSameSeedGivesTheSameTrace) {
  Report a = RunScenario(100, 5, 1);
  Report b = RunScenario(100, 5, 1);
  ExpectProperties(a);
  EXPECT_EQ(a.trace, b.trace);
  EXPECT_EQ(a.packets, b.packets);
  EXPECT_NE(RunScenario(100, 6, 1).trace, a.trace);
}

}  // namespace
}  // namespace marketprism::common::gossip
