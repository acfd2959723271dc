// The sinks end to end, against real servers from Debian's packages that the
// tests start on loopback (nats-server with JetStream, clickhouse-server
// 18.16): the trades of a redundant unit land in NATS, ClickHouse and files
// once each, with no id missing, across a kill -9 of a node; ClickHouse down
// for 30 s and back loses nothing, the records waiting in the node's spool
// on disk meanwhile, shown in GetStatus and GetHealth.
#include <nats/nats.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <algorithm>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "marketprism/v1/collector.pb.h"
#include "node/sinks/nats_writer.h"
#include "tests/testing/cluster.h"
#include "tests/testing/data_servers.h"
#include "tests/testing/wait.h"

namespace marketprism::testing {
namespace {

std::string Dir(const std::string& name) {
  std::string dir = absl::StrCat(::testing::TempDir(), "/sinks_", getpid(), "_", name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::string WriteJobs(const std::string& text) {
  std::string path = absl::StrCat(::testing::TempDir(), "/sink_jobs_", getpid(), "_", rand(), ".json");
  std::ofstream(path) << text;
  return path;
}

// The trade ids of BTCUSDT in ClickHouse, as FINAL reads them (repeats
// collapsed), and how many rows there are before collapsing.
struct Stored {
  std::vector<int64_t> ids;
  int64_t raw_rows = 0;
};

Stored ClickHouseTrades(ClickHouseServer& ch, const std::string& db) {
  Stored out;
  auto ids = ch.Query(absl::StrCat("SELECT toInt64(trade_id) FROM ", db,
                                   ".trades FINAL WHERE symbol = 'BTCUSDT' ORDER BY toInt64(trade_id)"));
  if (!ids.ok()) return out;
  for (absl::string_view line : absl::StrSplit(*ids, '\n', absl::SkipEmpty())) {
    int64_t id = 0;
    if (absl::SimpleAtoi(line, &id)) out.ids.push_back(id);
  }
  auto raw = ch.Query(absl::StrCat("SELECT count() FROM ", db, ".trades WHERE symbol = 'BTCUSDT'"));
  if (raw.ok()) (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(*raw), &out.raw_rows);
  return out;
}

// In `table` FINAL, the rows `where` selects: how many, their distinct
// slots, and how many of them are `good` (-1 each when the query fails).
struct SlotRows {
  int64_t rows = -1, slots = -1, good = -1;
  std::string raw;
};

SlotRows CountSlots(ClickHouseServer& ch, const std::string& table, const std::string& where,
                    const std::string& good) {
  SlotRows out;
  auto r = ch.Query(absl::StrCat("SELECT count(), uniqExact(slot_us), countIf(", good, ") FROM ", table,
                                 " FINAL WHERE ", where));
  out.raw = r.ok() ? *r : std::string(r.status().message());
  std::vector<std::string> f = absl::StrSplit(absl::StripAsciiWhitespace(out.raw), '\t');
  if (!r.ok() || f.size() != 3 || !absl::SimpleAtoi(f[0], &out.rows) || !absl::SimpleAtoi(f[1], &out.slots) ||
      !absl::SimpleAtoi(f[2], &out.good)) {
    out.rows = out.slots = out.good = -1;
  }
  return out;
}

// Everything in the stream under `subject`, oldest first, and the stream's
// message count.
struct Streamed {
  std::vector<v1::MarketEvent> events;
  uint64_t stream_msgs = 0;
  std::string error;
};

Streamed ReadNats(const std::string& url, const std::string& stream, const std::string& subject) {
  Streamed out;
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  natsSubscription* sub = nullptr;
  jsStreamInfo* si = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s = natsConnection_ConnectTo(&nc, url.c_str());
  if (s == NATS_OK) s = natsConnection_JetStream(&js, nc, nullptr);
  if (s == NATS_OK) s = js_GetStreamInfo(&si, js, stream.c_str(), nullptr, &code);
  if (s == NATS_OK) {
    out.stream_msgs = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream.c_str();
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverAll;
    s = js_SubscribeSync(&sub, js, subject.c_str(), nullptr, &so, &code);
  }
  if (s != NATS_OK) {
    out.error = absl::StrCat(natsStatus_GetText(s), " (JetStream error ", code, ")");
  } else {
    natsMsg* m = nullptr;
    while (natsSubscription_NextMsg(&m, sub, 1000) == NATS_OK) {
      v1::MarketEvent e;
      if (e.ParseFromArray(natsMsg_GetData(m), natsMsg_GetDataLength(m))) out.events.push_back(std::move(e));
      natsMsg_Destroy(m);
    }
  }
  if (sub != nullptr) natsSubscription_Destroy(sub);
  if (js != nullptr) jsCtx_Destroy(js);
  if (nc != nullptr) natsConnection_Destroy(nc);
  return out;
}

// The trade ids in a node's jsonl files for BTCUSDT, in file order.
std::vector<int64_t> FileTrades(const std::string& dir, const std::string& node_id) {
  std::vector<std::string> files;
  std::string unit = dir + "/binance_spot/trades/BTCUSDT";
  if (!std::filesystem::exists(unit)) return {};
  for (const auto& f : std::filesystem::directory_iterator(unit)) {
    if (f.path().filename().string().find("." + node_id + ".jsonl") != std::string::npos) files.push_back(f.path());
  }
  std::sort(files.begin(), files.end());
  std::vector<int64_t> ids;
  for (const std::string& f : files) {
    std::ifstream in(f);
    for (std::string line; std::getline(in, line);) {
      nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      int64_t id = 0;
      if (j.contains("trade") && absl::SimpleAtoi(j["trade"]["trade_id"].get<std::string>(), &id)) ids.push_back(id);
    }
  }
  return ids;
}

// "" when `ids` (sorted) run from their first to their last with no hole
// and no repeat; else the first place where they do not.
std::string Contiguous(const std::vector<int64_t>& ids) {
  for (size_t i = 1; i < ids.size(); ++i) {
    if (ids[i] != ids[i - 1] + 1) return absl::StrCat("after ", ids[i - 1], " comes ", ids[i]);
  }
  return "";
}

#define MP_NEED_SERVERS()                                                                                      \
  do {                                                                                                         \
    if (!NatsServer::Available()) GTEST_SKIP() << "needs nats-server (Debian package nats-server)";            \
    if (!ClickHouseServer::Available()) GTEST_SKIP() << "needs clickhouse-server (Debian package clickhouse-server)"; \
  } while (0)

TEST(SinksTest, ARedundantUnitsTradesLandOnceInNatsClickHouseAndFilesAcrossAKill9) {
  MP_NEED_SERVERS();
  std::string root = Dir("redundant");
  auto nats = NatsServer::Start(root + "/nats");
  ASSERT_TRUE(nats.ok()) << nats.status();
  auto ch = ClickHouseServer::Start(root + "/clickhouse");
  ASSERT_TRUE(ch.ok()) << ch.status();
  ClusterOptions o;
  o.nodes = 2;
  o.exchanges = {"binance_spot"};
  o.coordinator_flags = {"--jobs", WriteJobs(R"({"jobs": [
      {"name": "trades", "exchange": "binance_spot", "channel": "trades", "symbols": ["BTCUSDT"], "redundancy": 2},
      {"name": "time", "exchange": "binance_spot", "channel": "poll", "path": "/api/v3/time", "every": "1s"}]})"),
                         "--monitor-interval", "1s"};
  o.node_flags = {"--exchange",   "binance_spot",
                  "--sink",       "nats=" + (*nats)->url(),
                  "--sink",       "clickhouse=" + (*ch)->url() + "/?database=md",
                  "--sink",       "jsonl=" + root + "/files",
                  "--spool-dir",  root + "/spool"};
  auto cluster = Cluster::Start(o);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  Cluster& c = **cluster;

  ASSERT_TRUE(WaitUntil([&] { return ClickHouseTrades(**ch, "md").ids.size() >= 40; }, absl::Seconds(30)))
      << "no trades in ClickHouse; node:\n" << c.node(0).Output();
  c.node(0).Signal(SIGKILL);
  size_t at_kill = ClickHouseTrades(**ch, "md").ids.size();
  ASSERT_TRUE(WaitUntil([&] { return ClickHouseTrades(**ch, "md").ids.size() >= at_kill + 40; }, absl::Seconds(30)))
      << "trades stopped after the kill; survivor:\n" << c.node(1).Output();
  // The survivor is stopped cleanly: what it holds goes out first.
  c.node(1).Stop(absl::Seconds(10));

  Stored stored = ClickHouseTrades(**ch, "md");
  ASSERT_FALSE(stored.ids.empty());
  EXPECT_EQ(Contiguous(stored.ids), "") << "ClickHouse has a hole or a repeat";

  // The leader's poll: each slot's reply written by the node that sent it, once.
  SlotRows polls = CountSlots(**ch, "md.polls", "symbol = 'time' AND path = '/api/v3/time'",
                              "http_status = 200 AND position(body, 'serverTime') > 0");
  EXPECT_GE(polls.rows, 3) << "a poll every second, for several seconds: " << polls.raw;
  EXPECT_EQ(polls.slots, polls.rows) << "a slot twice: " << polls.raw;
  EXPECT_EQ(polls.good, polls.rows) << "a slot without its reply: " << polls.raw;

  // The monitor's probes: in GetHealth at the leader, and a row each in exchange_health.
  {
    grpc::ClientContext ctx;
    v1::GetHealthResponse h;
    ASSERT_TRUE(c.stub().GetHealth(&ctx, {}, &h).ok());
    int up = 0;
    for (const v1::ExchangeProbe& p : h.exchange_probes()) up += p.exchange() == "binance_spot" && p.status() == "up";
    EXPECT_GE(up, 3) << h.DebugString();
    bool checked = false;
    for (const v1::HealthCheck& check : h.checks()) checked = checked || check.name() == "exchange:binance_spot";
    EXPECT_TRUE(checked) << h.DebugString();
  }
  SlotRows health = CountSlots(**ch, "md.exchange_health", "exchange = 'binance_spot' AND path = '/api/v3/time'",
                               "status = 'up' AND server_time_ms > 0 AND http_status = 200");
  EXPECT_GE(health.rows, 3) << health.raw;
  EXPECT_EQ(health.slots, health.rows) << "a probe twice: " << health.raw;
  EXPECT_EQ(health.good, health.rows) << "a probe not up: " << health.raw;

  Streamed streamed = ReadNats((*nats)->url(), "MARKETPRISM", ">");
  ASSERT_EQ(streamed.error, "");
  std::vector<int64_t> nats_ids;
  std::set<std::string> keys;
  int64_t nats_polls = 0;
  for (const v1::MarketEvent& e : streamed.events) {
    EXPECT_TRUE(keys.insert(e.key()).second) << "a key twice in the stream: " << e.key();
    if (e.has_poll()) ++nats_polls;
    if (!e.has_trade()) continue;
    int64_t id = 0;
    ASSERT_TRUE(absl::SimpleAtoi(e.trade().trade_id(), &id));
    nats_ids.push_back(id);
  }
  EXPECT_EQ(streamed.stream_msgs, streamed.events.size());
  EXPECT_GE(nats_polls, 3) << "the poll's replies in the stream";
  std::vector<int64_t> sorted = nats_ids;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(Contiguous(sorted), "") << "NATS has a hole or a repeat";
  EXPECT_EQ(sorted, stored.ids) << "NATS and ClickHouse hold different trades";

  // Each node's files: its own copy, in order, no line twice.
  for (int i = 0; i < 2; ++i) {
    std::vector<int64_t> ids = FileTrades(root + "/files", absl::StrCat("node-", c.egress_ip(i)));
    EXPECT_GT(ids.size(), 10u) << "node " << i;
    EXPECT_EQ(Contiguous(ids), "") << "node " << i << "'s file";
  }
  std::vector<int64_t> survivor = FileTrades(root + "/files", absl::StrCat("node-", c.egress_ip(1)));
  std::vector<int64_t> victim = FileTrades(root + "/files", absl::StrCat("node-", c.egress_ip(0)));
  ASSERT_FALSE(survivor.empty());
  ASSERT_FALSE(victim.empty());
  // Both copies were collected (and written to both stores, which hold each once).
  std::vector<int64_t> both;
  std::set_intersection(victim.begin(), victim.end(), survivor.begin(), survivor.end(), std::back_inserter(both));
  EXPECT_GT(both.size(), 10u) << "the two copies overlap";
  EXPECT_EQ(survivor.back(), stored.ids.back()) << "the survivor's file ends where the stores do";
  std::printf("%zu trades once each in ClickHouse (%ld rows before FINAL) and NATS (%lu messages), "
              "files %zu + %zu lines\n",
              stored.ids.size(), static_cast<long>(stored.raw_rows), static_cast<unsigned long>(streamed.stream_msgs),
              victim.size(), survivor.size());
}

v1::NodeStatus NodeStatusOf(Cluster& c) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::GetStatusResponse r;
  if (!c.stub().GetStatus(&ctx, {}, &r).ok() || r.nodes_size() == 0) return {};
  return r.nodes(0);
}

// GetHealth's "sinks" check, if it has one.
std::optional<v1::HealthCheck> SinksCheck(Cluster& c) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::GetHealthResponse h;
  if (!c.stub().GetHealth(&ctx, {}, &h).ok()) return std::nullopt;
  for (const v1::HealthCheck& check : h.checks()) {
    if (check.name() == "sinks") return check;
  }
  return std::nullopt;
}

TEST(SinksTest, ClickHouseDownForThirtySecondsLosesNothingTheRecordsWaitInTheSpool) {
  MP_NEED_SERVERS();
  const char* outage_env = std::getenv("MP_SINK_OUTAGE_SECONDS");
  absl::Duration outage = absl::Seconds(outage_env != nullptr ? std::atoi(outage_env) : 30);
  std::string root = Dir("outage");
  auto ch = ClickHouseServer::Start(root + "/clickhouse");
  ASSERT_TRUE(ch.ok()) << ch.status();
  ClusterOptions o;
  o.nodes = 1;
  o.exchanges = {"binance_spot"};
  // The sink is the cluster's: the coordinator gives it to the node.
  o.coordinator_flags = {"--jobs", WriteJobs(R"({"jobs": [
      {"name": "trades", "exchange": "binance_spot", "channel": "trades", "symbols": ["BTCUSDT"]}]})"),
                         "--sink", "clickhouse=" + (*ch)->url() + "/?database=md"};
  o.node_flags = {"--exchange", "binance_spot", "--spool-dir", root + "/spool", "--sink-queue", "10",
                  "--report-interval", "200ms"};
  auto cluster = Cluster::Start(o);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  Cluster& c = **cluster;
  ASSERT_TRUE(WaitUntil([&] { return ClickHouseTrades(**ch, "md").ids.size() >= 20; }, absl::Seconds(30)))
      << "no trades in ClickHouse; node:\n" << c.node(0).Output();

  (*ch)->Stop();
  absl::Time down = absl::Now();
  // The node says so: its sink is failing and the spool on disk fills.
  ASSERT_TRUE(WaitUntil(
      [&] {
        v1::NodeStatus n = NodeStatusOf(c);
        return n.sinks_size() == 1 && !n.sinks(0).healthy() && n.sinks(0).spool_records() > 0;
      },
      absl::Seconds(20)))
      << NodeStatusOf(c).DebugString();
  {
    std::optional<v1::HealthCheck> check = SinksCheck(c);
    ASSERT_TRUE(check.has_value()) << "GetHealth has no sinks check";
    EXPECT_EQ(check->status(), "degraded") << check->message();
    EXPECT_NE(check->message().find("clickhouse"), std::string::npos) << check->message();
  }
  absl::SleepFor(down + outage - absl::Now());
  v1::NodeStatus during = NodeStatusOf(c);
  ASSERT_EQ(during.sinks_size(), 1);
  EXPECT_GT(during.sinks(0).spool_age_ms(), absl::ToInt64Milliseconds(outage) / 2) << during.DebugString();
  int64_t spooled = during.sinks(0).spool_records();
  absl::Status restarted = (*ch)->Restart();
  ASSERT_TRUE(restarted.ok()) << restarted;

  ASSERT_TRUE(WaitUntil(
      [&] {
        v1::NodeStatus n = NodeStatusOf(c);
        // Trades keep coming, so the memory queue is never empty for long: the spool is what must drain.
        return n.sinks_size() == 1 && n.sinks(0).healthy() && n.sinks(0).spool_records() == 0;
      },
      absl::Seconds(30)))
      << NodeStatusOf(c).DebugString();
  c.node(0).Stop(absl::Seconds(10));
  Stored stored = ClickHouseTrades(**ch, "md");
  EXPECT_EQ(Contiguous(stored.ids), "") << "a trade was lost in the outage";
  EXPECT_GE(stored.ids.size(), static_cast<size_t>(20 + spooled)) << "the spooled trades are not all there";
  std::printf("ClickHouse down %s: %ld records spooled on disk, then %zu trades without a hole\n",
              absl::FormatDuration(outage).c_str(), static_cast<long>(spooled), stored.ids.size());
}

// The gap rows of `db` for BTCUSDT trades that a full spool wrote: (after, resumed).
std::set<std::pair<int64_t, int64_t>> SpoolGaps(ClickHouseServer& ch, const std::string& db) {
  std::set<std::pair<int64_t, int64_t>> out;
  auto rows = ch.Query(absl::StrCat("SELECT after_update_id, resumed_update_id FROM ", db,
                                    ".gaps FINAL WHERE symbol = 'BTCUSDT' AND channel = 'trades' AND "
                                    "startsWith(reason, 'spool full')"));
  if (!rows.ok()) return out;
  for (absl::string_view line : absl::StrSplit(*rows, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, '\t');
    int64_t a = 0, b = 0;
    if (f.size() == 2 && absl::SimpleAtoi(f[0], &a) && absl::SimpleAtoi(f[1], &b)) out.insert({a, b});
  }
  return out;
}

TEST(SinksTest, AFullSpoolDropsRecordsOnlyBehindAGapRecordThatNamesThem) {
  MP_NEED_SERVERS();
  std::string root = Dir("full");
  auto ch = ClickHouseServer::Start(root + "/clickhouse");
  ASSERT_TRUE(ch.ok()) << ch.status();
  ClusterOptions o;
  o.nodes = 1;
  o.exchanges = {"binance_spot"};
  o.coordinator_flags = {"--jobs", WriteJobs(R"({"jobs": [
      {"name": "trades", "exchange": "binance_spot", "channel": "trades", "symbols": ["BTCUSDT"]}]})")};
  // A spool of 20 KiB: about a hundred trades.
  o.node_flags = {"--exchange", "binance_spot", "--sink", "clickhouse=" + (*ch)->url() + "/?database=md",
                  "--spool-dir", root + "/spool", "--spool-max-mb", "0.02", "--sink-queue", "10",
                  "--report-interval", "200ms"};
  auto cluster = Cluster::Start(o);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  Cluster& c = **cluster;
  ASSERT_TRUE(WaitUntil([&] { return ClickHouseTrades(**ch, "md").ids.size() >= 20; }, absl::Seconds(30)))
      << "no trades in ClickHouse; node:\n" << c.node(0).Output();

  (*ch)->Stop();
  ASSERT_TRUE(WaitUntil(
      [&] {
        v1::NodeStatus n = NodeStatusOf(c);
        return n.sinks_size() == 1 && n.sinks(0).dropped_total() > 0;
      },
      absl::Seconds(90)))
      << NodeStatusOf(c).DebugString();
  {
    std::optional<v1::HealthCheck> check = SinksCheck(c);
    ASSERT_TRUE(check.has_value()) << "GetHealth has no sinks check";
    EXPECT_EQ(check->status(), "unhealthy") << check->message();
    EXPECT_NE(check->message().find("dropped"), std::string::npos) << check->message();
  }
  int64_t dropped = NodeStatusOf(c).sinks(0).dropped_total();
  ASSERT_TRUE((*ch)->Restart().ok());
  ASSERT_TRUE(WaitUntil(
      [&] {
        v1::NodeStatus n = NodeStatusOf(c);
        return n.sinks_size() == 1 && n.sinks(0).healthy() && n.sinks(0).spool_records() == 0 &&
               !SpoolGaps(**ch, "md").empty();
      },
      absl::Seconds(30)))
      << NodeStatusOf(c).DebugString();
  c.node(0).Stop(absl::Seconds(10));

  // Every hole in the trade ids is exactly a gap record's range, and the gap
  // records name no more than was dropped.
  Stored stored = ClickHouseTrades(**ch, "md");
  std::set<std::pair<int64_t, int64_t>> gaps = SpoolGaps(**ch, "md");
  int64_t missing = 0;
  for (size_t i = 1; i < stored.ids.size(); ++i) {
    int64_t a = stored.ids[i - 1], b = stored.ids[i];
    if (b == a + 1) continue;
    missing += b - a - 1;
    EXPECT_TRUE(gaps.count({a, b})) << "trades " << a + 1 << ".." << b - 1 << " are missing with no gap record";
  }
  EXPECT_GT(missing, 0);
  int64_t named = 0;
  for (const auto& [a, b] : gaps) named += b - a - 1;
  EXPECT_EQ(named, missing) << "a gap record names trades that are there";
  std::printf("spool full: %ld records dropped, %ld trades missing, each hole in one of %zu gap records\n",
              static_cast<long>(dropped), static_cast<long>(missing), gaps.size());
}

// A stream made before a record type existed lacks its subject: the writer
// adds it, keeping the stream's messages, and the record goes in.
TEST(SinksTest, AStreamFromAnOlderReleaseGetsTheNewSubjectsAndKeepsItsMessages) {
  MP_NEED_SERVERS();
  auto nats = NatsServer::Start(Dir("upgrade") + "/nats");
  ASSERT_TRUE(nats.ok()) << nats.status();
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  ASSERT_EQ(natsConnection_ConnectTo(&nc, (*nats)->url().c_str()), NATS_OK);
  ASSERT_EQ(natsConnection_JetStream(&js, nc, nullptr), NATS_OK);
  const char* old_subjects[] = {"trade.>", "orderbook.>", "poll.>"};
  jsStreamConfig sc;
  jsStreamConfig_Init(&sc);
  sc.Name = "MARKETPRISM";
  sc.Subjects = old_subjects;
  sc.SubjectsLen = 3;
  jsStreamInfo* si = nullptr;
  ASSERT_EQ(js_AddStream(&si, js, &sc, nullptr, nullptr), NATS_OK);
  jsStreamInfo_Destroy(si);
  ASSERT_EQ(js_Publish(nullptr, js, "trade.binance_spot.spot.BTCUSDT", "old", 3, nullptr, nullptr), NATS_OK);

  node::NatsOptions o;
  o.servers = {(*nats)->url()};
  node::NatsWriter w(o);
  v1::MarketEvent e;
  e.set_exchange("okx");
  e.set_symbol("server_time");
  e.set_channel("exchange_health");
  e.set_key("okx/exchange_health/1");
  e.mutable_exchange_health()->set_status("up");
  absl::Status written = w.Write({e});
  EXPECT_TRUE(written.ok()) << written;
  w.Close();

  ASSERT_EQ(js_GetStreamInfo(&si, js, "MARKETPRISM", nullptr, nullptr), NATS_OK);
  std::set<std::string> subjects;
  for (int i = 0; i < si->Config->SubjectsLen; ++i) subjects.insert(si->Config->Subjects[i]);
  uint64_t msgs = si->State.Msgs;
  jsStreamInfo_Destroy(si);
  EXPECT_TRUE(subjects.count("exchange_health.>")) << "subjects not added";
  EXPECT_TRUE(subjects.count("trade.>"));
  EXPECT_EQ(msgs, 2u) << "the old message and the new record";
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
}

// Takes HTTP POSTs on 127.0.0.1 and keeps their bodies; answers 200.
class WebhookReceiver {
 public:
  WebhookReceiver() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(fd_, 16) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      return;
    }
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~WebhookReceiver() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    if (thread_.joinable()) thread_.join();
  }
  std::string url() const { return absl::StrCat("http://127.0.0.1:", port_, "/alerts"); }
  std::vector<std::string> bodies() {
    absl::MutexLock lock(&mu_);
    return bodies_;
  }

 private:
  void Serve() {
    for (;;) {
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      std::string in;
      char buf[4096];
      size_t want = std::string::npos;
      for (;;) {
        ssize_t n = read(c, buf, sizeof(buf));
        if (n <= 0) break;
        in.append(buf, static_cast<size_t>(n));
        size_t head = in.find("\r\n\r\n");
        if (head == std::string::npos) continue;
        if (want == std::string::npos) {
          size_t cl = in.find("Content-Length: ");
          size_t length = 0;
          if (cl != std::string::npos) {
            (void)absl::SimpleAtoi(in.substr(cl + 16, in.find("\r\n", cl) - cl - 16), &length);
          }
          want = head + 4 + length;
        }
        if (in.size() >= want) break;
      }
      if (want != std::string::npos && in.size() >= want) {
        absl::MutexLock lock(&mu_);
        bodies_.push_back(in.substr(in.find("\r\n\r\n") + 4));
      }
      const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      (void)!write(c, ok, sizeof(ok) - 1);
      close(c);
    }
  }
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<std::string> bodies_ ABSL_GUARDED_BY(mu_);
};

// The exchange stops answering: the monitor's webhook hears of it, Alertmanager-style.
TEST(SinksTest, AnExchangeThatStopsAnsweringIsAnAlertOnTheWebhook) {
  WebhookReceiver hook;
  ClusterOptions o;
  o.nodes = 1;
  o.exchanges = {"binance_spot"};
  o.coordinator_flags = {"--monitor-interval", "1s", "--alert-webhook", hook.url()};
  auto cluster = Cluster::Start(o);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  Cluster& c = **cluster;
  // Up first: no alert for that.
  ASSERT_TRUE(WaitUntil(
      [&] {
        grpc::ClientContext ctx;
        v1::GetHealthResponse h;
        return c.stub().GetHealth(&ctx, {}, &h).ok() && h.exchange_probes_size() >= 2;
      },
      absl::Seconds(20)));
  c.sim().process().Signal(SIGSTOP);  // no answer at all
  auto firing = [&](const std::string& state) {
    for (const std::string& b : hook.bodies()) {
      nlohmann::json j = nlohmann::json::parse(b, nullptr, false);
      if (j.is_discarded() || j["alerts"].empty()) continue;
      const nlohmann::json& a = j["alerts"][0];
      if (a["labels"]["alertname"] == "MarketPrismExchangeHealth" && a["labels"]["exchange"] == "binance_spot" &&
          a["status"] == "firing" && a["annotations"]["state"] == state) {
        return true;
      }
    }
    return false;
  };
  bool alerted = WaitUntil([&] { return firing("degraded"); }, absl::Seconds(30));
  c.sim().process().Signal(SIGCONT);
  ASSERT_TRUE(alerted) << hook.bodies().size() << " posts";
  std::vector<std::string> bodies = hook.bodies();
  nlohmann::json first = nlohmann::json::parse(bodies.front());
  EXPECT_EQ(first["version"], "4");
  EXPECT_EQ(first["receiver"], "marketprism");
}

}  // namespace
}  // namespace marketprism::testing
