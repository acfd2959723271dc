#include "tests/bench/collect_cluster_bench.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "common/flags.h"
#include "common/net/ws_client.h"
#include "tests/bench/direct_client.h"
#include "tests/bench/http_load.h"
#include "tests/testing/cluster.h"
#include "tests/testing/gossip_cluster.h"
#include "tests/testing/subscriber.h"
#include "tests/testing/wait.h"

namespace marketprism::bench {

namespace {

std::string WriteJobs(const std::string& text) {
  std::string path = absl::StrCat("/tmp/mp-bench-jobs-", getpid(), ".json");
  std::ofstream(path) << text;
  return path;
}

// The node the first copy of `unit` runs on, from ListJobs ("" when none).
std::string NodeOf(const std::string& coordinator, const std::string& unit) {
  auto stub = v1::Collector::NewStub(grpc::CreateChannel(coordinator, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  v1::ListJobsResponse r;
  if (!stub->ListJobs(&ctx, {}, &r).ok()) return "";
  for (const v1::Job& j : r.jobs()) {
    for (const v1::Unit& u : j.units()) {
      if (u.key() == unit && u.copies_size() > 0 && u.copies(0).state() == "live") return u.copies(0).node_id();
    }
  }
  return "";
}

double Round1(double v) { return std::round(v * 10) / 10; }

// What one stream of merged records shows: per symbol, trade ids and book
// update ids missing or repeated, and gap records.
struct Continuity {
  int64_t trades = 0, trades_lost = 0, trades_repeated = 0;
  int64_t book_updates = 0, book_holes = 0, gaps = 0;
  std::vector<int64_t> gap_update_ids;  // resumed - after, per gap
};

Continuity Check(const std::vector<testing::Subscriber::Got>& got, const std::string& channel_of_book) {
  Continuity c;
  std::map<std::string, std::vector<int64_t>> trade_ids;
  std::map<std::string, int64_t> last_book;  // 0: waiting for a snapshot
  for (const testing::Subscriber::Got& g : got) {
    const v1::MarketEvent& e = g.event;
    if (e.has_trade()) {
      int64_t id = 0;
      if (absl::SimpleAtoi(e.trade().trade_id(), &id)) trade_ids[e.symbol()].push_back(id);
    } else if (e.has_gap()) {
      ++c.gaps;
      if (e.channel() == channel_of_book) {
        c.gap_update_ids.push_back(e.gap().resumed_update_id() - e.gap().after_update_id());
        last_book[e.symbol()] = 0;
      }
    } else if (e.has_book()) {
      int64_t& last = last_book[e.symbol()];
      if (!e.book().snapshot()) {
        ++c.book_updates;
        if (last != 0 && e.book().first_update_id() != last + 1) ++c.book_holes;
      }
      last = e.book().last_update_id();
    }
  }
  for (auto& [symbol, ids] : trade_ids) {
    c.trades += static_cast<int64_t>(ids.size());
    std::set<int64_t> distinct(ids.begin(), ids.end());
    c.trades_repeated += static_cast<int64_t>(ids.size() - distinct.size());
    c.trades_lost += *distinct.rbegin() - *distinct.begin() + 1 - static_cast<int64_t>(distinct.size());
  }
  return c;
}

}  // namespace

int RunCollectFailoverBench(const std::vector<std::string>& args) {
  int64_t kills = 10, nodes = 2;
  std::string signal = "kill";
  absl::Duration warm = absl::Seconds(2), after = absl::Seconds(2);
  common::FlagSet f("mp-bench collect-failover",
                    "a node holding a book of redundancy 1 and copies of redundancy-2 units dies: the gap "
                    "and how soon the book resumes, and what the redundant units lost (a fresh cluster each kill)");
  f.Int("kills", &kills, "kills, each in a fresh gossip cluster of two coordinators and --nodes nodes");
  f.Int("nodes", &nodes, "nodes (egress IPs)");
  f.String("signal", &signal, "kill (SIGKILL: sockets close at once) or stop (SIGSTOP: only gossip sees it)");
  f.Duration("warm", &warm, "collection before the kill, once every unit is live");
  f.Duration("after", &after, "collection after the book resumes");
  auto rest = f.Parse(args);
  if (f.help_requested()) return std::fputs(f.Help().c_str(), stdout) < 0;
  if (!rest.ok()) return common::ExitCodeFor("mp-bench collect-failover", rest.status());
  if (signal != "kill" && signal != "stop") {
    return common::ExitCodeFor("mp-bench collect-failover",
                               absl::InvalidArgumentError("--signal: \"" + signal + "\" is neither kill nor stop"));
  }
  std::string jobs = WriteJobs(R"({"jobs": [
      {"name": "book-r1", "exchange": "binance_spot", "channel": "book", "symbols": ["BTCUSDT"]},
      {"name": "book-r2", "exchange": "binance_spot", "channel": "book", "symbols": ["ETHUSDT"], "redundancy": 2},
      {"name": "trades-r2", "exchange": "binance_spot", "channel": "trades",
       "symbols": ["BTCUSDT", "ETHUSDT", "SOLUSDT"], "redundancy": 2}]})");
  std::vector<double> resume_ms, gap_ids;
  int64_t r2_trades_lost = 0, r2_book_holes = 0, r2_gaps = 0, failed = 0, trades_total = 0;
  for (int64_t round = 0; round < kills; ++round) {
    auto fail = [&](const std::string& why) {
      ++failed;
      std::printf("%s\n", nlohmann::ordered_json{{"bench", "collect_failover"}, {"kill", round + 1}, {"error", why}}
                              .dump().c_str());
      std::fflush(stdout);
    };
    testing::GossipClusterOptions o;
    o.coordinators = 2;
    o.nodes = static_cast<int>(nodes);
    o.subnet = 90 + static_cast<int>(round % 10);
    o.exchanges = {"binance_spot"};
    o.coordinator_flags = {"--jobs", jobs};
    auto c = testing::GossipCluster::Start(o);
    if (!c.ok()) return common::ExitCodeFor("mp-bench collect-failover", c.status());
    auto ready = (*c)->WaitForLeader(0, 1, static_cast<int>(nodes), absl::Seconds(15));
    if (!ready.ok()) return common::ExitCodeFor("mp-bench collect-failover", ready.status());
    std::string leader = (*c)->coordinator_address(ready->leader() == (*c)->coordinator_name(0) ? 0 : 1);
    v1::SubscribeRequest all;
    all.set_exchange("binance_spot");
    testing::Subscriber sub(leader, all);
    std::string victim_id;
    if (!testing::WaitUntil([&] { return !(victim_id = NodeOf(leader, "binance_spot/book/BTCUSDT")).empty(); },
                            absl::Seconds(15))) {
      fail("the book never went live");
      continue;
    }
    absl::SleepFor(warm);
    int victim = 0;
    while (victim < nodes && (*c)->node_id(victim) != victim_id) ++victim;
    if (victim == nodes) {
      fail("the book's node " + victim_id + " is not one of ours");
      continue;
    }
    size_t at_kill = sub.size();
    absl::Time killed = absl::Now();
    (*c)->node(victim).Signal(signal == "kill" ? SIGKILL : SIGSTOP);
    // Resumed: the first BTCUSDT book record from another node.
    absl::Time resumed = absl::InfiniteFuture();
    testing::WaitUntil(
        [&] {
          std::vector<testing::Subscriber::Got> got = sub.events();
          for (size_t i = at_kill; i < got.size(); ++i) {
            const v1::MarketEvent& e = got[i].event;
            if (e.has_book() && e.symbol() == "BTCUSDT" && e.node_id() != victim_id) {
              resumed = got[i].at;
              return true;
            }
          }
          return false;
        },
        absl::Seconds(15));
    if (resumed == absl::InfiniteFuture()) {
      fail("the book did not resume within 15 s");
      (*c)->node(victim).Signal(SIGKILL);
      continue;
    }
    absl::SleepFor(after);
    std::vector<testing::Subscriber::Got> got = sub.events();
    (*c)->node(victim).Signal(SIGKILL);
    std::vector<testing::Subscriber::Got> r1, r2;
    for (testing::Subscriber::Got& g : got) {
      bool unredundant = g.event.channel() == "book" && g.event.symbol() == "BTCUSDT";
      (unredundant ? r1 : r2).push_back(std::move(g));
    }
    Continuity one = Check(r1, "book"), two = Check(r2, "book");
    double ms = absl::ToDoubleMilliseconds(resumed - killed);
    resume_ms.push_back(ms);
    for (int64_t ids : one.gap_update_ids) gap_ids.push_back(static_cast<double>(ids));
    r2_trades_lost += two.trades_lost + two.trades_repeated;
    r2_book_holes += two.book_holes;
    r2_gaps += two.gaps;
    trades_total += two.trades;
    nlohmann::ordered_json j = {{"bench", "collect_failover"},
                                {"kill", round + 1},
                                {"signal", signal},
                                {"nodes", nodes},
                                {"r1_kill_to_resume_ms", Round1(ms)},
                                {"r1_gaps", one.gaps},
                                {"r1_gap_update_ids", one.gap_update_ids},
                                {"r1_holes_without_a_gap", one.book_holes},
                                {"r2_trades", two.trades},
                                {"r2_trades_lost", two.trades_lost},
                                {"r2_trades_repeated", two.trades_repeated},
                                {"r2_book_updates", two.book_updates},
                                {"r2_book_holes", two.book_holes},
                                {"r2_gaps", two.gaps}};
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
  }
  std::remove(jobs.c_str());
  nlohmann::ordered_json summary = {{"bench", "collect_failover_summary"},
                                    {"signal", signal},
                                    {"kills", kills},
                                    {"failed_rounds", failed}};
  if (!resume_ms.empty()) {
    summary["r1_kill_to_resume_ms_p50"] = Round1(Percentile(resume_ms, 50));
    summary["r1_kill_to_resume_ms_p99"] = Round1(Percentile(resume_ms, 99));
    summary["r1_kill_to_resume_ms_max"] = Round1(resume_ms.back());
  }
  if (!gap_ids.empty()) {
    summary["r1_gap_update_ids_p50"] = Percentile(gap_ids, 50);
    summary["r1_gap_update_ids_p99"] = Percentile(gap_ids, 99);
  }
  summary["r2_trades"] = trades_total;
  summary["r2_records_lost_or_repeated"] = r2_trades_lost + r2_book_holes;
  summary["r2_gaps"] = r2_gaps;
  std::printf("%s\n", summary.dump().c_str());
  return failed == 0 ? 0 : 1;
}


int RunCollectLatencyBench(const std::vector<std::string>& args) {
  absl::Duration measure = absl::Seconds(20);
  common::FlagSet f("mp-bench collect-latency",
                    "the latency a cluster adds from the simulator's send to a Subscribe client, over a direct "
                    "WebSocket client to the simulator receiving the same trades and depth diffs");
  f.Duration("measure", &measure, "how long to measure once both streams flow");
  auto rest = f.Parse(args);
  if (f.help_requested()) return std::fputs(f.Help().c_str(), stdout) < 0;
  if (!rest.ok()) return common::ExitCodeFor("mp-bench collect-latency", rest.status());
  const std::vector<std::string> symbols = {"BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"};
  std::string list = absl::StrCat("[\"", absl::StrJoin(symbols, "\", \""), "\"]");
  std::string jobs = WriteJobs(absl::StrCat(R"({"jobs": [
      {"name": "trades", "exchange": "binance_spot", "channel": "trades", "symbols": )", list, R"(},
      {"name": "books", "exchange": "binance_spot", "channel": "book", "symbols": )", list, "}]}"));
  testing::ClusterOptions o;
  o.nodes = 1;
  o.exchanges = {"binance_spot"};
  o.node_flags = {"--exchange", "binance_spot"};
  o.coordinator_flags = {"--jobs", jobs};
  auto c = testing::Cluster::Start(o);
  std::remove(jobs.c_str());
  if (!c.ok()) return common::ExitCodeFor("mp-bench collect-latency", c.status());
  DirectClient direct;  // before the client whose thread calls it
  auto ws = common::LwsWsClient::Create();
  if (!ws.ok()) return common::ExitCodeFor("mp-bench collect-latency", ws.status());
  std::vector<std::string> streams;
  for (const std::string& s : symbols) {
    std::string lower = absl::AsciiStrToLower(s);
    streams.push_back(lower + "@trade");
    streams.push_back(lower + "@depth@100ms");
  }
  common::WsCallbacks cb;
  cb.on_text = [&direct](std::string text) { direct.OnText(text); };
  auto conn = (*ws)->Connect(
      {absl::StrCat((*c)->sim().ws_url(), "/stream?streams=", absl::StrJoin(streams, "/")), "127.0.0.1"},
      std::move(cb));
  if (!conn.ok()) return common::ExitCodeFor("mp-bench collect-latency", conn.status());
  v1::SubscribeRequest all;
  all.set_exchange("binance_spot");
  testing::Subscriber sub((*c)->coordinator_address(), all);
  if (!testing::WaitUntil([&] { return sub.size() > 100 && direct.arrivals().size() > 100; }, absl::Seconds(15))) {
    return common::ExitCodeFor("mp-bench collect-latency",
                               absl::DeadlineExceededError("the streams did not flow within 15 s"));
  }
  absl::Time from = absl::Now();
  absl::SleepFor(measure);
  absl::Time to = absl::Now();
  std::map<DirectClient::Key, absl::Time> at_direct = direct.arrivals();
  std::vector<double> trades_us, diffs_us;
  // The same split at the node's receive time (received_time_us): before it
  // the node's WebSocket, after it the node, two gRPC hops and the hub.
  std::vector<double> to_node_us, node_to_client_us;
  int64_t unmatched = 0;
  for (const testing::Subscriber::Got& g : sub.events()) {
    if (g.at < from || g.at > to) continue;
    const v1::MarketEvent& e = g.event;
    DirectClient::Key key;
    if (e.has_trade()) {
      key = {e.symbol(), "t" + e.trade().trade_id()};
    } else if (e.has_book() && !e.book().snapshot()) {
      key = {e.symbol(), absl::StrCat("u", e.book().last_update_id())};
    } else {
      continue;
    }
    auto it = at_direct.find(key);
    if (it == at_direct.end()) {
      ++unmatched;
      continue;
    }
    (e.has_trade() ? trades_us : diffs_us).push_back(absl::ToDoubleMicroseconds(g.at - it->second));
    absl::Time at_node = absl::FromUnixMicros(e.received_time_us());
    to_node_us.push_back(absl::ToDoubleMicroseconds(at_node - it->second));
    node_to_client_us.push_back(absl::ToDoubleMicroseconds(g.at - at_node));
  }
  std::vector<double> all_us = trades_us;
  all_us.insert(all_us.end(), diffs_us.begin(), diffs_us.end());
  if (all_us.empty()) {
    return common::ExitCodeFor("mp-bench collect-latency", absl::InternalError("no record seen by both clients"));
  }
  auto ms = [](std::vector<double>& v, double p) { return v.empty() ? -1.0 : std::round(Percentile(v, p)) / 1000; };
  nlohmann::ordered_json j = {{"bench", "collect_latency"},
                              {"measure_s", absl::ToDoubleSeconds(measure)},
                              {"records_matched", all_us.size()},
                              {"unmatched", unmatched},
                              {"added_ms_p50", ms(all_us, 50)},
                              {"added_ms_p99", ms(all_us, 99)},
                              {"added_ms_max", ms(all_us, 100)},
                              {"trades_added_ms_p50", ms(trades_us, 50)},
                              {"trades_added_ms_p99", ms(trades_us, 99)},
                              {"diffs_added_ms_p50", ms(diffs_us, 50)},
                              {"diffs_added_ms_p99", ms(diffs_us, 99)},
                              {"node_receive_after_direct_ms_p50", ms(to_node_us, 50)},
                              {"node_receive_after_direct_ms_p99", ms(to_node_us, 99)},
                              {"node_receive_to_subscriber_ms_p50", ms(node_to_client_us, 50)},
                              {"node_receive_to_subscriber_ms_p99", ms(node_to_client_us, 99)},
                              {"target_p99_ms", 2}};
  std::printf("%s\n", j.dump().c_str());
  (*conn)->Close();
  return 0;
}

namespace {

// CPU seconds (user + system) and resident bytes of process `pid`.
struct ProcUse {
  double cpu_s = 0;
  int64_t rss_bytes = 0;
};

ProcUse UseOf(pid_t pid) {
  ProcUse u;
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  size_t close = text.rfind(')');  // the command may hold spaces
  if (close != std::string::npos) {
    std::vector<std::string> f = absl::StrSplit(text.substr(close + 2), ' ');
    int64_t utime = 0, stime = 0;
    // Fields 14 and 15 of stat(5), counted from the state (field 3).
    if (f.size() > 12 && absl::SimpleAtoi(f[11], &utime) && absl::SimpleAtoi(f[12], &stime)) {
      u.cpu_s = static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
    }
  }
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  for (std::string line; std::getline(status, line);) {
    int64_t kb = 0;
    if (absl::StartsWith(line, "VmRSS:") &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::StripSuffix(line.substr(6), "kB")), &kb)) {
      u.rss_bytes = kb * 1024;
    }
  }
  return u;
}

// Units of each channel with a copy live, from ListJobs.
std::map<std::string, int64_t> LiveUnits(const std::string& coordinator) {
  std::map<std::string, int64_t> live;
  auto stub = v1::Collector::NewStub(grpc::CreateChannel(coordinator, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::ListJobsResponse r;
  if (!stub->ListJobs(&ctx, {}, &r).ok()) return live;
  for (const v1::Job& j : r.jobs()) {
    for (const v1::Unit& u : j.units()) {
      bool any = false;
      for (const v1::UnitCopy& c : u.copies()) any = any || c.state() == "live";
      if (any) ++live[j.channel()];
    }
  }
  return live;
}

std::vector<int64_t> IntList(const std::string& text, absl::string_view flag, absl::Status* error) {
  std::vector<int64_t> out;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v) || v <= 0) {
      *error = absl::InvalidArgumentError(absl::StrCat("--", flag, ": \"", part, "\" is not a positive integer"));
      return {};
    }
    out.push_back(v);
  }
  return out;
}

}  // namespace

int RunCollectScaleBench(const std::vector<std::string>& args) {
  std::string nodes_list = "1,3,8", symbols_list = "500,1000,2000";
  int64_t depth = 1000, trades_per_second = 0;
  absl::Duration timeout = absl::Minutes(20), steady = absl::Seconds(10);
  common::FlagSet f("mp-bench collect-scale",
                    "books and trades of many Binance symbols: one node (a single-IP collector) beside the "
                    "cluster, side by side in one run: symbols in sync, time to full sync, rejections, CPU and RSS");
  f.String("nodes", &nodes_list, "comma-separated fleet sizes (egress IPs)");
  f.String("symbols", &symbols_list, "comma-separated symbol counts (the simulator's many-instrument mode)");
  f.Int("depth", &depth, "book snapshot depth (Binance: 1000 weighs 50, 100 weighs 5)");
  f.Int("trades-per-second", &trades_per_second, "the simulator's trades per second per symbol (0: 2 to 10 each)");
  f.Duration("timeout", &timeout, "give up on full sync after this long (the case reports what was in sync)");
  f.Duration("steady", &steady, "CPU is also measured over this long once in sync");
  auto rest = f.Parse(args);
  if (f.help_requested()) return std::fputs(f.Help().c_str(), stdout) < 0;
  if (!rest.ok()) return common::ExitCodeFor("mp-bench collect-scale", rest.status());
  absl::Status bad;
  std::vector<int64_t> fleets = IntList(nodes_list, "nodes", &bad);
  std::vector<int64_t> counts = IntList(symbols_list, "symbols", &bad);
  if (!bad.ok()) return common::ExitCodeFor("mp-bench collect-scale", bad);
  int64_t most = *std::max_element(counts.begin(), counts.end());
  for (int64_t symbols : counts) {
    std::vector<std::string> names;
    for (int64_t i = 1; i <= symbols; ++i) names.push_back(absl::StrFormat("X%04dUSDT", i));
    std::string list = absl::StrCat("[\"", absl::StrJoin(names, "\", \""), "\"]");
    for (int64_t nodes : fleets) {
      std::string jobs = WriteJobs(absl::StrCat(R"({"jobs": [
          {"name": "books", "exchange": "binance_spot", "channel": "book", "depth": )", depth,
                                                R"(, "symbols": )", list, R"(},
          {"name": "trades", "exchange": "binance_spot", "channel": "trades", "symbols": )", list, "}]}"));
      testing::ClusterOptions o;
      o.nodes = static_cast<int>(nodes);
      o.exchanges = {"binance_spot"};
      o.node_flags = {"--exchange", "binance_spot"};
      o.sim_flags = {"--instruments", absl::StrCat(most), "--trades-per-second", absl::StrCat(trades_per_second)};
      o.coordinator_flags = {"--jobs", jobs};
      absl::Time start = absl::Now();
      auto c = testing::Cluster::Start(o);
      std::remove(jobs.c_str());
      if (!c.ok()) return common::ExitCodeFor("mp-bench collect-scale", c.status());
      std::map<std::string, int64_t> live;
      absl::Time synced = absl::InfiniteFuture();
      while (absl::Now() - start < timeout) {
        live = LiveUnits((*c)->coordinator_address());
        if (live["book"] == symbols && live["trades"] == symbols) {
          synced = absl::Now();
          break;
        }
        absl::SleepFor(absl::Milliseconds(250));
      }
      std::vector<ProcUse> at_sync, after;
      for (int i = 0; i < nodes; ++i) at_sync.push_back(UseOf((*c)->node(i).pid()));
      ProcUse coordinator_at_sync = UseOf((*c)->coordinator().pid());
      absl::SleepFor(steady);
      for (int i = 0; i < nodes; ++i) after.push_back(UseOf((*c)->node(i).pid()));
      ProcUse coordinator_after = UseOf((*c)->coordinator().pid());
      auto stats = (*c)->sim().Stats();
      if (!stats.ok()) return common::ExitCodeFor("mp-bench collect-scale", stats.status());
      const nlohmann::json& totals = (*stats)["exchanges"]["binance_spot"]["totals"];
      double sync_cpu_max = 0, steady_cpu_max = 0;
      int64_t rss_max = 0;
      for (int i = 0; i < nodes; ++i) {
        sync_cpu_max = std::max(sync_cpu_max, at_sync[static_cast<size_t>(i)].cpu_s);
        steady_cpu_max = std::max(steady_cpu_max, (after[static_cast<size_t>(i)].cpu_s -
                                                   at_sync[static_cast<size_t>(i)].cpu_s) /
                                                      absl::ToDoubleSeconds(steady));
        rss_max = std::max(rss_max, after[static_cast<size_t>(i)].rss_bytes);
      }
      nlohmann::ordered_json j = {
          {"bench", "collect_scale"},
          {"symbols", symbols},
          {"nodes", nodes},
          {"depth", depth},
          {"books_in_sync", live["book"]},
          {"trades_live", live["trades"]},
          {"time_to_full_sync_s",
           synced == absl::InfiniteFuture() ? -1.0 : Round1(absl::ToDoubleSeconds(synced - start))},
          {"rest_rejections", testing::SimProcess::Rejections(*stats)},
          {"ws_refused", totals.value("ws_refused", 0)},
          {"ws_violations", totals.contains("ws_violations") ? totals["ws_violations"].size() : 0},
          {"node_cpu_s_to_sync_max", Round1(sync_cpu_max)},
          {"node_cpu_steady_cores_max", std::round(steady_cpu_max * 1000) / 1000},
          {"node_rss_mb_max", Round1(static_cast<double>(rss_max) / (1 << 20))},
          {"coordinator_cpu_steady_cores",
           std::round((coordinator_after.cpu_s - coordinator_at_sync.cpu_s) / absl::ToDoubleSeconds(steady) * 1000) /
               1000},
          {"coordinator_rss_mb", Round1(static_cast<double>(coordinator_after.rss_bytes) / (1 << 20))}};
      std::printf("%s\n", j.dump().c_str());
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace marketprism::bench
