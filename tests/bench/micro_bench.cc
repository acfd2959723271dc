// mp-microbench: hot paths under Google Benchmark.
//   BM_NodeAdmission      a node's decision for one Binance request:
//                         Fits + Charge, then Complete with the usage header
//   BM_SchedulerUnary     the coordinator's decision for one request among
//                         8 nodes: Submit (priced, placed) + Report
//   BM_SchedulerBatched   the same, 64 requests per SubmitBatch
#include <benchmark/benchmark.h>

#include "common/budget/budget_book.h"
#include "coordinator/scheduler.h"
#include "tests/testing/fake_clock.h"

namespace marketprism {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1'795'046'400);

common::RulesBook Rules() {
  auto rules = common::RulesBook::LoadDefault();
  if (!rules.ok()) std::abort();
  // Effectively unlimited, so the benchmark measures decisions, not waiting.
  (void)rules->ApplyLimitOverride("binance_spot.REQUEST_WEIGHT=2000000000");
  (void)rules->ApplyLimitOverride("binance_spot.RAW_REQUESTS=2000000000");
  return std::move(*rules);
}

void BM_NodeAdmission(benchmark::State& state) {
  common::RulesBook rules = Rules();
  const common::ExchangeRules& ex = *rules.Find("binance_spot");
  common::BudgetBook book(ex, absl::Milliseconds(1));
  common::Cost cost = *ex.Price("GET", "/api/v3/depth", {{"symbol", "BTCUSDT"}, {"limit", "100"}});
  absl::Time t = kStart + absl::Seconds(1);
  int64_t used = 0;
  for (auto _ : state) {
    bool fits = book.Fits(t, cost);
    benchmark::DoNotOptimize(fits);
    auto ticket = book.Charge(t, cost);
    used += 5;
    book.Complete(ticket, t, std::make_pair(0, used));
    t += absl::Nanoseconds(100);
  }
}
BENCHMARK(BM_NodeAdmission);

struct SchedulerRig {
  testing::FakeClock clock{kStart + absl::Seconds(1)};
  std::unique_ptr<coordinator::Scheduler> sched;
  std::vector<coordinator::Placement> placed;
  SchedulerRig() {
    sched = std::make_unique<coordinator::Scheduler>(Rules(), clock);
    for (int i = 0; i < 8; ++i) {
      std::string id = "n" + std::to_string(i);
      sched->UpsertNode(id, "10.0.0." + std::to_string(i + 1), "x:1", "b", {"binance_spot"});
      sched->SetNodeClocks(id, {{"binance_spot", absl::ZeroDuration(), absl::ZeroDuration()}});
    }
  }
  coordinator::ExecuteSpec Spec() {
    coordinator::ExecuteSpec s;
    s.exchange = "binance_spot";
    s.path = "/api/v3/depth";
    s.query = {{"symbol", "BTCUSDT"}, {"limit", "100"}};
    s.deadline = absl::InfiniteFuture();
    return s;
  }
  void ReplyAll() {
    coordinator::DispatchOutcome o;
    o.kind = coordinator::DispatchOutcome::Kind::kReplied;
    o.http_status = 200;
    for (const auto& p : placed) sched->Report(p, o);
    placed.clear();
  }
};

void BM_SchedulerUnary(benchmark::State& state) {
  SchedulerRig rig;
  for (auto _ : state) {
    (void)rig.sched->Submit(rig.Spec(), [&](absl::StatusOr<coordinator::Placement> p) {
      rig.placed.push_back(std::move(*p));
    });
    rig.ReplyAll();
    rig.clock.AdvanceBy(absl::Nanoseconds(100));
  }
  state.counters["decisions_per_s"] = benchmark::Counter(static_cast<double>(state.iterations()),
                                                         benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SchedulerUnary);

void BM_SchedulerBatched(benchmark::State& state) {
  SchedulerRig rig;
  const int batch = static_cast<int>(state.range(0));
  for (auto _ : state) {
    std::vector<std::pair<coordinator::ExecuteSpec, coordinator::Scheduler::Done>> b;
    for (int i = 0; i < batch; ++i) {
      b.emplace_back(rig.Spec(), [&](absl::StatusOr<coordinator::Placement> p) {
        rig.placed.push_back(std::move(*p));
      });
    }
    (void)rig.sched->SubmitBatch(std::move(b));
    rig.ReplyAll();
    rig.clock.AdvanceBy(absl::Nanoseconds(100));
  }
  state.counters["decisions_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * batch), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SchedulerBatched)->Arg(64);

}  // namespace
}  // namespace marketprism

BENCHMARK_MAIN();
