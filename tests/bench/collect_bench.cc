#include "tests/bench/collect_bench.h"

#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/flags.h"
#include "node/collector.h"
#include "node/feeds/binance_feed.h"
#include "tests/bench/workload.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_ws_client.h"

namespace marketprism::bench {

namespace {

std::string TradeMessage(int64_t id) {
  return absl::StrCat(R"({"stream":"btcusdt@trade","data":{"e":"trade","E":1700000000123,"s":"BTCUSDT","t":)", id,
                      R"(,"p":"43210.)", absl::StrFormat("%02d", id % 100), R"(000000","q":"0.0)", id % 9 + 1,
                      R"(500000","T":1700000000120,"m":)", id % 2 ? "true" : "false", R"(,"M":true}})");
}

// A diff of `levels` levels (half bids, half asks), never crossing 100.
std::string DepthMessage(int64_t first, int64_t last, int levels) {
  std::string bids, asks;
  for (int i = 0; i < levels / 2; ++i) {
    int64_t k = (first * 7 + i * 13) % 1000;
    absl::StrAppend(&bids, i ? "," : "", R"([")", 90 + k / 100, ".", absl::StrFormat("%02d", k % 100), R"(",")",
                    k % 5 == 0 ? "0.00000000" : absl::StrCat(k % 17 + 1, ".25000000"), R"("])");
    absl::StrAppend(&asks, i ? "," : "", R"([")", 101 + k / 100, ".", absl::StrFormat("%02d", k % 100), R"(",")",
                    k % 5 == 1 ? "0.00000000" : absl::StrCat(k % 13 + 1, ".75000000"), R"("])");
  }
  return absl::StrCat(R"({"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1700000000123,"s":"BTCUSDT","U":)",
                      first, R"(,"u":)", last, R"(,"b":[)", bids, R"(],"a":[)", asks, "]}}");
}

struct Rate {
  double per_second = 0;
  int64_t records = 0;
};

}  // namespace

int RunCollectBench(const std::vector<std::string>& args) {
  int64_t messages = 300'000, levels = 10;
  common::FlagSet f("mp-bench collect", "feed handling on one core: the collector's own path, fed from memory");
  f.Int("messages", &messages, "messages of each kind");
  f.Int("levels", &levels, "price levels per depth diff");
  auto rest = f.Parse(args);
  if (f.help_requested()) return std::fputs(f.Help().c_str(), stdout) < 0;
  if (!rest.ok()) return common::ExitCodeFor("mp-bench collect", rest.status());

  std::vector<std::string> trades, diffs;
  trades.reserve(static_cast<size_t>(messages));
  diffs.reserve(static_cast<size_t>(messages));
  for (int64_t i = 0; i < messages; ++i) trades.push_back(TradeMessage(1'000'000 + i));
  for (int64_t i = 0; i < messages; ++i) diffs.push_back(DepthMessage(1001 + i * 10, 1010 + i * 10, static_cast<int>(levels)));

  testing::FakeClock clock;
  testing::FakeWsClient ws;
  int64_t records = 0;
  std::function<void(absl::StatusOr<std::string>)> snapshot_done;
  node::Collector collector(
      node::CollectorOptions{"bench", "127.0.0.11"}, clock, ws, [](const std::string&) { return std::string("ws://x"); },
      [&](const std::string&, const std::string&, const common::QueryParams&,
          std::function<void(absl::StatusOr<std::string>)> done) { snapshot_done = std::move(done); },
      [&](std::vector<v1::MarketEvent> events) { records += static_cast<int64_t>(events.size()); });
  collector.Start();
  v1::Units units;
  for (const char* channel : {"trades", "book"}) {
    v1::UnitAssignment* a = units.add_units();
    a->set_key(absl::StrCat("binance_spot/", channel, "/BTCUSDT"));
    a->set_exchange("binance_spot");
    a->set_channel(channel);
    a->set_symbol("BTCUSDT");
    a->set_depth(1000);
  }
  collector.SetUnits(units);
  clock.RunDue();
  if (ws.conns.empty()) return common::ExitCodeFor("mp-bench collect", absl::InternalError("no connection opened"));
  common::WsCallbacks& cb = ws.conns.back()->cb;
  cb.on_open();
  cb.on_text(DepthMessage(991, 1000, 2));  // buffered: asks for the snapshot
  if (!snapshot_done) return common::ExitCodeFor("mp-bench collect", absl::InternalError("no snapshot asked for"));
  {
    nlohmann::json snap = {{"lastUpdateId", 1000}, {"bids", nlohmann::json::array()}, {"asks", nlohmann::json::array()}};
    for (int i = 0; i < 1000; ++i) {
      snap["bids"].push_back({absl::StrFormat("%d.%02d", 90 + i / 100, i % 100), "1.00000000"});
      snap["asks"].push_back({absl::StrFormat("%d.%02d", 101 + i / 100, i % 100), "1.00000000"});
    }
    snapshot_done(snap.dump());
  }

  auto run = [&](const std::vector<std::string>& in) {
    int64_t before = records;
    absl::Time start = absl::Now();
    for (const std::string& m : in) cb.on_text(m);
    double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    return Rate{static_cast<double>(in.size()) / seconds, records - before};
  };
  Rate t = run(trades);
  Rate d = run(diffs);
  absl::Time start = absl::Now();
  int64_t ok = 0;
  for (const std::string& m : trades) ok += node::ParseBinanceMessage(m).ok();
  double parse_trades = static_cast<double>(trades.size()) / absl::ToDoubleSeconds(absl::Now() - start);
  start = absl::Now();
  for (const std::string& m : diffs) ok += node::ParseBinanceMessage(m).ok();
  double parse_diffs = static_cast<double>(diffs.size()) / absl::ToDoubleSeconds(absl::Now() - start);
  collector.Stop();
  nlohmann::ordered_json j = {
      {"bench", "collect_feed"}, {"parser", "nlohmann-json 3.11 (the project's JSON library)"},
      {"messages", messages}, {"levels_per_diff", levels},
      {"trades_per_s", std::llround(t.per_second)}, {"trade_records", t.records},
      {"target_trades_per_s", 1'000'000}, {"trades_met", t.per_second >= 1e6},
      {"depth_diffs_per_s", std::llround(d.per_second)}, {"depth_records", d.records},
      {"target_depth_diffs_per_s", 500'000}, {"depth_met", d.per_second >= 5e5},
      {"parse_only_trades_per_s", std::llround(parse_trades)}, {"parse_only_diffs_per_s", std::llround(parse_diffs)},
      {"parsed_ok", ok}};
  std::printf("%s\n", j.dump().c_str());
  return t.records == messages && d.records >= messages ? 0 : 1;  // diffs: + the snapshot record
}

}  // namespace marketprism::bench
