// Collection end to end, as real processes on loopback: a jobs file on the
// coordinator, nodes streaming from the simulator over WebSocket from their
// own egress IPs, records merged at the coordinator and read by a Subscribe
// client. The simulator is the judge: the books a subscriber keeps equal its
// REST book at the same update id; trade ids have no hole and no repeat,
// also across a kill -9 of a node (redundancy 2); a book of redundancy 1 on
// the killed node reports one gap and resumes within a second.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <csignal>
#include <fstream>
#include <map>
#include <functional>
#include <filesystem>
#include <set>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/collect/book_sync.h"
#include "common/collect/exact_json.h"
#include "marketprism/v1/collector.grpc.pb.h"
#include "tests/testing/certs.h"
#include "tests/testing/cluster.h"
#include "tests/testing/subscriber.h"
#include "tests/testing/tunnel_proxy.h"
#include "tests/testing/wait.h"

namespace marketprism::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Binance spot's BTCUSDT book and trades, one copy each.
constexpr char kBtcBookAndTrades[] = R"({"jobs": [
    {"name": "book", "exchange": "binance_spot", "channel": "book", "symbols": ["BTCUSDT"]},
    {"name": "trades", "exchange": "binance_spot", "channel": "trades", "symbols": ["BTCUSDT"]}]})";

std::string WriteJobs(const std::string& text) {
  std::string path = absl::StrCat(::testing::TempDir(), "/jobs_", getpid(), "_", rand(), ".json");
  std::ofstream(path) << text;
  return path;
}

std::vector<common::PriceLevel> Levels(const google::protobuf::RepeatedPtrField<v1::Level>& in) {
  std::vector<common::PriceLevel> out;
  for (const v1::Level& l : in) out.push_back({l.price(), l.quantity()});
  return out;
}

// A cluster of `nodes` nodes serving `exchange`, its coordinator running
// the jobs file `jobs` (JSON text).
ClusterOptions Collecting(const std::string& exchange, int nodes, const std::string& jobs) {
  ClusterOptions o;
  o.nodes = nodes;
  o.exchanges = {exchange};
  o.node_flags = {"--exchange", exchange};
  o.coordinator_flags = {"--jobs", WriteJobs(jobs)};
  return o;
}

// A subscriber's book: feeds `sync` the record, as a client would.
void Apply(common::BookSync& sync, const v1::MarketEvent& e) {
  if (!e.has_book()) return;
  if (e.book().snapshot()) {
    sync.OnSnapshot({e.book().last_update_id(), Levels(e.book().bids()), Levels(e.book().asks())});
  } else {
    sync.OnDiff({e.book().first_update_id(), e.book().last_update_id(),
                 e.book().previous_update_id() != 0 ? e.book().previous_update_id() : -1, Levels(e.book().bids()),
                 Levels(e.book().asks())});
  }
}

// The node a unit's first copy runs on, from ListJobs.
std::string NodeOf(const std::string& coordinator, const std::string& unit) {
  auto stub = v1::Collector::NewStub(grpc::CreateChannel(coordinator, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  v1::ListJobsResponse r;
  if (!stub->ListJobs(&ctx, {}, &r).ok()) return "";
  for (const v1::Job& j : r.jobs()) {
    for (const v1::Unit& u : j.units()) {
      if (u.key() == unit && u.copies_size() > 0) return u.copies(0).egress_ip();
    }
  }
  return "";
}

TEST(CollectionTest, BooksMatchTheExchangeTradesHaveNoHoleAndAKilledNodeCostsOnlyItsUnredundantUnitAGap) {
  ClusterOptions o = Collecting("binance_spot", 2, R"({"jobs": [
      {"name": "book", "exchange": "binance_spot", "channel": "book", "symbols": ["BTCUSDT"]},
      {"name": "trades", "exchange": "binance_spot", "channel": "trades", "symbols": ["BTCUSDT"], "redundancy": 2}]})");
  auto cluster = Cluster::Start(o);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  Cluster& c = **cluster;
  v1::SubscribeRequest all;
  all.set_exchange("binance_spot");
  Subscriber sub(c.coordinator_address(), all);

  // 1. The book a subscriber keeps is the exchange's at the same update id.
  common::BookSync book(common::BookProtocol::kBinanceSpot);
  size_t read = 0;
  auto feed = [&] {
    std::vector<Subscriber::Got> got = sub.events();
    for (; read < got.size(); ++read) Apply(book, got[read].event);
  };
  ASSERT_TRUE(WaitUntil([&] { feed(); return book.live(); }, absl::Seconds(10))) << "no book within 10 s";
  auto rest = c.sim().Get("127.0.0.1", "/api/v3/depth?symbol=BTCUSDT&limit=100");
  ASSERT_TRUE(rest.ok()) << rest.status();
  nlohmann::json exchange = nlohmann::json::parse(rest->body);
  int64_t at = exchange["lastUpdateId"];
  ASSERT_TRUE(WaitUntil([&] { feed(); return book.last_update_id() >= at; }, absl::Seconds(5)));
  // Updates come at every 100 ms tick, so the book passes through `at` exactly;
  // replay the records up to it.
  common::BookSync replay(common::BookProtocol::kBinanceSpot);
  for (const Subscriber::Got& g : sub.events()) {
    const v1::MarketEvent& e = g.event;
    if (!e.has_book() || replay.last_update_id() >= at) continue;
    if (e.book().snapshot() || e.book().last_update_id() <= at) Apply(replay, e);
  }
  ASSERT_EQ(replay.last_update_id(), at);
  v1::BookUpdate ours;
  replay.book().Top(100, &ours);
  ASSERT_EQ(ours.bids_size(), 100);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(*common::CanonicalDecimal(ours.bids(i).price()),
              *common::CanonicalDecimal(exchange["bids"][i][0].get<std::string>())) << "bid " << i;
    EXPECT_EQ(ours.bids(i).quantity(), exchange["bids"][i][1].get<std::string>()) << "bid " << i;
    EXPECT_EQ(*common::CanonicalDecimal(ours.asks(i).price()),
              *common::CanonicalDecimal(exchange["asks"][i][0].get<std::string>())) << "ask " << i;
    EXPECT_EQ(ours.asks(i).quantity(), exchange["asks"][i][1].get<std::string>()) << "ask " << i;
  }

  // 2. kill -9 the node that holds the book: its copy of the trades goes too.
  std::string victim_ip = NodeOf(c.coordinator_address(), "binance_spot/book/BTCUSDT");
  ASSERT_FALSE(victim_ip.empty());
  int victim = victim_ip == c.egress_ip(0) ? 0 : 1;
  absl::Time killed = absl::Now();
  c.node(victim).Signal(SIGKILL);
  size_t at_kill = sub.size();
  std::string survivor = absl::StrCat("node-", c.egress_ip(1 - victim));
  // The book resumes from the survivor: seamlessly when its stream overlaps
  // what the dead node sent, else after one gap and a new snapshot.
  ASSERT_TRUE(WaitUntil(
      [&] {
        std::vector<Subscriber::Got> got = sub.events();
        for (size_t i = at_kill; i < got.size(); ++i) {
          if (got[i].event.has_book() && got[i].event.node_id() == survivor) return true;
        }
        return false;
      },
      absl::Seconds(5)))
      << "the book never resumed; coordinator:\n" << c.coordinator().Output() << "\nsurvivor:\n"
      << c.node(1 - victim).Output();
  absl::SleepFor(absl::Seconds(2));  // trades keep coming from the other copy

  std::vector<Subscriber::Got> got = sub.events();
  int64_t last_trade = 0, trades = 0, book_gaps = 0, trade_gaps = 0, last_book = 0;
  absl::Time resumed = absl::InfiniteFuture();
  for (size_t i = 0; i < got.size(); ++i) {
    const v1::MarketEvent& e = got[i].event;
    if (e.has_trade()) {
      int64_t id = 0;
      ASSERT_TRUE(absl::SimpleAtoi(e.trade().trade_id(), &id));
      if (last_trade != 0) {
        ASSERT_EQ(id, last_trade + 1) << "a hole or a repeat in the trade ids, from " << e.node_id() << " "
                                      << (got[i].at - killed) << " after the kill; record " << i << " of "
                                      << got.size() << ", at the kill " << at_kill;
      }
      last_trade = id;
      ++trades;
    } else if (e.has_gap()) {
      (e.channel() == "book" ? book_gaps : trade_gaps)++;
      EXPECT_EQ(e.channel(), "book") << e.gap().reason();
      last_book = 0;  // a snapshot comes next
    } else if (e.has_book()) {
      if (e.book().snapshot()) {
        EXPECT_EQ(last_book, 0) << "a snapshot mid-stream without a gap";
      } else {
        ASSERT_NE(last_book, 0) << "an update before any snapshot";
        ASSERT_EQ(e.book().first_update_id(), last_book + 1) << "the merged book has a hole no gap reports";
      }
      last_book = e.book().last_update_id();
      if (i >= at_kill && e.node_id() == survivor && resumed == absl::InfiniteFuture()) resumed = got[i].at;
    }
  }
  EXPECT_GT(trades, 20);
  EXPECT_EQ(trade_gaps, 0) << "redundancy 2: the other copy had every trade";
  EXPECT_LE(book_gaps, 1) << "redundancy 1: at most one gap, for what the dead node missed";
  std::printf("the book resumed %s after the kill (%ld gap), %ld trades without a hole\n",
              absl::FormatDuration(resumed - killed).c_str(), static_cast<long>(book_gaps), static_cast<long>(trades));
  EXPECT_LT(resumed - killed, absl::Seconds(1)) << "the book resumed " << (resumed - killed) << " after the kill";
  auto stats = c.sim().Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ((*stats)["exchanges"]["binance_spot"]["totals"]["ws_refused"], 0);
  EXPECT_TRUE((*stats)["exchanges"]["binance_spot"]["totals"]["ws_violations"].empty())
      << (*stats)["exchanges"]["binance_spot"]["totals"]["ws_violations"].dump();
}

TEST(CollectionTest, ADrainedNodeHandsItsBookOverWithoutAGap) {
  ClusterOptions o = Collecting("binance_spot", 2, R"({"jobs": [
      {"name": "book", "exchange": "binance_spot", "channel": "book", "symbols": ["BTCUSDT"]}]})");
  auto cluster = Cluster::Start(o);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  Cluster& c = **cluster;
  v1::SubscribeRequest all;
  all.set_exchange("binance_spot");
  Subscriber sub(c.coordinator_address(), all);
  std::string holder_ip;
  ASSERT_TRUE(WaitUntil([&] { return !(holder_ip = NodeOf(c.coordinator_address(), "binance_spot/book/BTCUSDT")).empty() &&
                                     sub.size() > 5; },
                        absl::Seconds(10)));
  int holder = holder_ip == c.egress_ip(0) ? 0 : 1;
  std::string from = absl::StrCat("node-", c.egress_ip(holder)), to = absl::StrCat("node-", c.egress_ip(1 - holder));
  grpc::ClientContext ctx;
  v1::DrainNodeRequest req;
  req.set_node_id(from);
  v1::DrainNodeResponse resp;
  ASSERT_TRUE(c.stub().DrainNode(&ctx, req, &resp).ok());
  // The book moves to the other node, and the drained one stops sending it.
  absl::Time last_from = absl::InfiniteFuture();
  ASSERT_TRUE(WaitUntil(
      [&] {
        std::vector<Subscriber::Got> got = sub.events();
        bool moved = false;
        for (const Subscriber::Got& g : got) {
          if (g.event.node_id() == from) last_from = g.at;
          moved = moved || g.event.node_id() == to;
        }
        return moved && absl::Now() - last_from > absl::Seconds(1);
      },
      absl::Seconds(10)))
      << "coordinator:\n" << c.coordinator().Output();
  // One snapshot at the start and a contiguous run of updates after it:
  // the new copy joined while the old one still ran.
  int64_t last = 0, snapshots = 0, updates = 0, from_to = 0;
  std::string previous_node;
  for (const Subscriber::Got& g : sub.events()) {
    const v1::MarketEvent& e = g.event;
    ASSERT_FALSE(e.has_gap()) << "a gap over the hand-over: " << e.gap().reason();
    if (!e.has_book()) continue;
    if (e.book().snapshot()) {
      ++snapshots;
    } else {
      ASSERT_NE(last, 0);
      ASSERT_EQ(e.book().first_update_id(), last + 1) << "a hole in the merged book";
      ++updates;
    }
    last = e.book().last_update_id();
    if (previous_node == from && e.node_id() == to) ++from_to;
    previous_node = e.node_id();
  }
  EXPECT_EQ(snapshots, 1);
  EXPECT_GT(updates, 10);
  EXPECT_GE(from_to, 1) << "the records came from the new node after the old";
  EXPECT_THAT(c.coordinator().Output(), HasSubstr("handed its copy over after"));
}

// The shipped rules changed by `edit`, in a file of the test's own.
std::string EditedRules(const std::function<void(nlohmann::json&)>& edit) {
  std::ifstream shipped(MP_SOURCE_DIR "/common/rules/exchange_rules.json");
  nlohmann::json rules = nlohmann::json::parse(shipped);
  edit(rules);
  std::string path = absl::StrCat(::testing::TempDir(), "/rules_", getpid(), "_", rand(), ".json");
  std::ofstream(path) << rules.dump();
  return path;
}

TEST(CollectionTest, ConnectionsRotatedBeforeTheExchangesCutLoseNothing) {
  // The shipped rules, but Binance cuts a connection at 4 s instead of 24 h:
  // the node rotates each at 2.5 to 3 s (a quarter of the lifetime ahead,
  // and up to half that again).
  std::string rules_file = EditedRules([](nlohmann::json& r) {
    r["exchanges"]["binance_spot"]["websocket"]["max_lifetime_seconds"] = 4;
  });
  ClusterOptions o = Collecting("binance_spot", 1, kBtcBookAndTrades);
  o.sim_flags = {"--rules", rules_file};
  o.node_flags.insert(o.node_flags.end(), {"--rules", rules_file});
  o.coordinator_flags.insert(o.coordinator_flags.end(), {"--rules", rules_file});
  auto cluster = Cluster::Start(o);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  Cluster& c = **cluster;
  v1::SubscribeRequest all;
  all.set_exchange("binance_spot");
  Subscriber sub(c.coordinator_address(), all);
  // Three rotations: about 10 s.
  ASSERT_TRUE(WaitUntil(
      [&] {
        const std::string out = c.node(0).Output();
        size_t n = 0;
        for (size_t i = out.find("rotated: "); i != std::string::npos; i = out.find("rotated: ", i + 1)) ++n;
        return n >= 3;
      },
      absl::Seconds(20)))
      << c.node(0).Output();
  absl::SleepFor(absl::Milliseconds(500));
  std::string out = c.node(0).Output();
  EXPECT_THAT(out, HasSubstr("rotated: every unit moved to its successor"));
  EXPECT_THAT(out, Not(HasSubstr("not met"))) << out;
  EXPECT_THAT(out, Not(HasSubstr("max connection lifetime"))) << "the exchange's cut came first";
  int64_t last_trade = 0, trades = 0, last_book = 0, updates = 0;
  for (const Subscriber::Got& g : sub.events()) {
    const v1::MarketEvent& e = g.event;
    ASSERT_FALSE(e.has_gap()) << e.gap().reason();
    if (e.has_trade()) {
      if (last_trade != 0) ASSERT_EQ(e.trade().sequence(), last_trade + 1) << "a hole or a repeat in the trades";
      last_trade = e.trade().sequence();
      ++trades;
    } else if (e.has_book()) {
      if (e.book().snapshot()) {
        ASSERT_EQ(last_book, 0) << "a second snapshot: the book resynced";
      } else {
        ASSERT_EQ(e.book().first_update_id(), last_book + 1) << "a hole in the book";
        ++updates;
      }
      last_book = e.book().last_update_id();
    }
  }
  EXPECT_GT(trades, 100);
  EXPECT_GT(updates, 50);
  auto stats = c.sim().Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ((*stats)["exchanges"]["binance_spot"]["totals"]["ws_refused"], 0);
}

// A node whose Binance proxy is `url` (served by `proxy`) makes a live book
// through it: the snapshot and the stream both go through the proxy from
// the node's egress address, and the exchange sees the proxy only.
// With `ca_bundle`, the simulator serves TLS only with that (self-signed)
// certificate and the node trusts it: REST is https://, the stream wss://.
void BookThroughProxy(TunnelProxy& proxy, const std::string& url, const std::string& stream_method,
                      const std::string& rest_method, const std::string& ca_bundle = "") {
  ClusterOptions o = Collecting("binance_spot", 1, kBtcBookAndTrades);
  o.node_flags.insert(o.node_flags.end(), {"--exchange-proxy", "binance_spot=" + url});
  if (!ca_bundle.empty()) {
    std::string key = ca_bundle.substr(0, ca_bundle.size() - 4) + ".key";
    o.sim_flags.insert(o.sim_flags.end(), {"--tls-cert", ca_bundle, "--tls-key", key});
    o.node_flags.insert(o.node_flags.end(), {"--ca-bundle", ca_bundle});
  }
  auto cluster = Cluster::Start(o);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  Cluster& c = **cluster;
  v1::SubscribeRequest all;
  all.set_exchange("binance_spot");
  Subscriber sub(c.coordinator_address(), all);
  common::BookSync book(common::BookProtocol::kBinanceSpot);
  size_t read = 0;
  ASSERT_TRUE(WaitUntil(
      [&] {
        std::vector<Subscriber::Got> got = sub.events();
        for (; read < got.size(); ++read) Apply(book, got[read].event);
        return book.live();
      },
      absl::Seconds(10)))
      << "no book through the proxy; node:\n" << c.node(0).Output();
  bool stream = false, snapshot = false;
  for (const TunnelProxy::Tunnel& t : proxy.tunnels()) {
    EXPECT_EQ(t.source_ip, c.egress_ip(0)) << "every tunnel starts from the node's egress address";
    stream = stream || t.method == stream_method;  // the WebSocket
    snapshot = snapshot || t.method == rest_method;  // REST: the snapshot, the clock probes
  }
  EXPECT_TRUE(stream) << "the stream did not go through the proxy";
  EXPECT_TRUE(snapshot) << "REST did not go through the proxy";
  auto stats = c.sim().Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_FALSE((*stats)["exchanges"]["binance_spot"]["ips"].contains(c.egress_ip(0)))
      << "the exchange saw the proxy's address only";
  EXPECT_GE((*stats)["exchanges"]["binance_spot"]["ips"]["127.0.0.1"]["ws_accepted"], 1)
      << "the stream came from the proxy";
}

TEST(CollectionTest, ANodeBehindAnHttpProxyStreamsThroughItFromItsEgressAddress) {
  auto proxy = TunnelProxy::Start();
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  BookThroughProxy(**proxy, (*proxy)->url(), "CONNECT", "GET");
}

// An exchange over TLS, as the real ones are: the node verifies its
// certificate for REST (libcurl) and for the stream (libwebsockets), both
// through the proxy's tunnels, which carry TLS end to end.
TEST(CollectionTest, ANodeVerifiesTheExchangesTlsThroughAProxyForRestAndStreams) {
  char dir[] = "/tmp/mp-tls-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  absl::StatusOr<std::string> cert = SelfSignedCert(dir, "exchange");
  ASSERT_TRUE(cert.ok()) << cert.status();
  auto proxy = TunnelProxy::Start();
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  BookThroughProxy(**proxy, (*proxy)->url(), "CONNECT", "CONNECT", *cert);
  std::filesystem::remove_all(dir);
}

// SOCKS5 with a login: REST through libcurl's SOCKS5, the stream through
// the node's local CONNECT relay (Debian's libwebsockets has no SOCKS5).
TEST(CollectionTest, ANodeBehindASocks5ProxyStreamsThroughItFromItsEgressAddress) {
  auto proxy = TunnelProxy::Start("node:pw");
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  BookThroughProxy(**proxy, absl::StrCat("socks5h://node:pw@127.0.0.1:", (*proxy)->port()), "SOCKS5", "SOCKS5");
}

TEST(CollectionTest, AMassWebSocketDropResyncsEveryBookWithinTheWeightAndNoRefusal) {
  // Twenty books of depth 1000 (weight 50 each) on two IPs whose weight is
  // 400 per 5 s: a full resync needs 1,000, more than a window holds, so the
  // snapshots must queue for the next windows rather than become 429s.
  std::string rules_file = EditedRules([](nlohmann::json& r) {
    for (nlohmann::json& pool : r["exchanges"]["binance_spot"]["pools"]) {
      if (pool["name"] != "REQUEST_WEIGHT") continue;
      pool["seconds"] = 5;
      pool["published_as"]["interval"] = "SECOND";
      pool["published_as"]["intervalNum"] = 5;
    }
  });
  std::vector<std::string> symbols;
  for (int i = 1; i <= 20; ++i) symbols.push_back(absl::StrFormat("X%04dUSDT", i));
  ClusterOptions o = Collecting("binance_spot", 2,
                                absl::StrCat(R"({"jobs": [{"name": "books", "exchange": "binance_spot", )",
                                             R"("channel": "book", "symbols": [")", absl::StrJoin(symbols, "\", \""),
                                             R"("]}]})"));
  o.sim_flags = {"--rules", rules_file, "--instruments", "20", "--limit", "binance_spot.REQUEST_WEIGHT=400"};
  o.node_flags.insert(o.node_flags.end(), {"--rules", rules_file});
  o.coordinator_flags.insert(o.coordinator_flags.end(), {"--rules", rules_file});
  auto cluster = Cluster::Start(o);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  Cluster& c = **cluster;
  v1::SubscribeRequest all;
  all.set_exchange("binance_spot");
  Subscriber sub(c.coordinator_address(), all);
  // Symbols with a snapshot among the records from `from` on.
  auto snapshotted = [&](size_t from) {
    std::set<std::string> done;
    std::vector<Subscriber::Got> got = sub.events();
    for (size_t i = from; i < got.size(); ++i) {
      if (got[i].event.has_book() && got[i].event.book().snapshot()) done.insert(got[i].event.symbol());
    }
    return done.size();
  };
  ASSERT_TRUE(WaitUntil([&] { return snapshotted(0) == symbols.size(); }, absl::Seconds(30)))
      << snapshotted(0) << " of 20 books in sync";
  size_t before = sub.size();
  ASSERT_EQ(c.sim().Post("127.0.0.1", "/sim/ws/drop", "")->status, 200);
  absl::Time dropped = absl::Now();
  ASSERT_TRUE(WaitUntil([&] { return snapshotted(before) == symbols.size(); }, absl::Seconds(30)))
      << snapshotted(before) << " of 20 books in sync again";
  std::printf("20 books resynced %s after the drop\n", absl::FormatDuration(absl::Now() - dropped).c_str());
  // Each book: one gap for what the drop cost, then a chain without a hole.
  std::map<std::string, int64_t> last, gaps;
  for (const Subscriber::Got& g : sub.events()) {
    const v1::MarketEvent& e = g.event;
    if (e.has_gap()) {
      ++gaps[e.symbol()];
      last[e.symbol()] = 0;
    } else if (e.has_book()) {
      if (!e.book().snapshot()) {
        ASSERT_NE(last[e.symbol()], 0) << e.symbol() << ": an update before its snapshot";
        ASSERT_EQ(e.book().first_update_id(), last[e.symbol()] + 1) << e.symbol() << ": a hole no gap reports";
      }
      last[e.symbol()] = e.book().last_update_id();
    }
  }
  for (const std::string& sym : symbols) EXPECT_LE(gaps[sym], 1) << sym;
  auto stats = c.sim().Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(testing::SimProcess::Rejections(*stats), 0) << "a snapshot storm became refusals: "
                                                        << (*stats)["exchanges"]["binance_spot"]["totals"].dump();
  EXPECT_EQ((*stats)["exchanges"]["binance_spot"]["totals"]["ws_refused"], 0);
}

// One node collecting `exchange`'s book and trades of `symbol`, with a
// subscriber to everything of that exchange whose records keep `book`.
struct OneExchange {
  std::unique_ptr<Cluster> cluster;
  std::unique_ptr<Subscriber> sub;
  common::BookSync book;
  size_t read = 0;

  explicit OneExchange(const std::string& exchange) : book(common::BookProtocolFor(exchange)) {}
  // Feeds the book what arrived since the last call.
  void Feed() {
    std::vector<Subscriber::Got> got = sub->events();
    for (; read < got.size(); ++read) Apply(book, got[read].event);
  }
  // The book up to update `at`, replayed from everything received.
  common::BookSync ReplayTo(int64_t at) {
    common::BookSync replay(book.protocol());
    for (const Subscriber::Got& g : sub->events()) {
      if (g.event.has_book() && g.event.book().last_update_id() <= at) Apply(replay, g.event);
    }
    return replay;
  }
  // Trade records and gap records received; fails on a hole or repeat in
  // `sequence` order.
  void CountTrades(int64_t* trades, int64_t* gaps) {
    int64_t last = 0;
    *trades = *gaps = 0;
    for (const Subscriber::Got& g : sub->events()) {
      if (g.event.has_gap()) ++*gaps;
      if (!g.event.has_trade()) continue;
      int64_t seq = g.event.trade().sequence();
      if (last != 0) ASSERT_EQ(seq, last + 1) << "a hole or a repeat in " << g.event.exchange() << " trades";
      last = seq;
      ++*trades;
    }
  }
};

// `channels` are the jobs' channels, one job each ("kline" with interval 1m).
absl::Status StartOneExchange(OneExchange& x, const std::string& exchange, const std::string& symbol,
                              std::vector<std::string> channels = {"book", "trades"}) {
  std::vector<std::string> jobs;
  for (const std::string& c : channels) {
    jobs.push_back(absl::StrCat(R"({"name": ")", c, R"(", "exchange": ")", exchange, R"(", "channel": ")", c,
                                R"(", "symbols": [")", symbol, R"("])", c == "kline" ? R"(, "interval": "1m"})" : "}"));
  }
  ClusterOptions o = Collecting(exchange, 1, absl::StrCat(R"({"jobs": [)", absl::StrJoin(jobs, ",\n"), "]}"));
  absl::StatusOr<std::unique_ptr<Cluster>> c = Cluster::Start(o);
  if (!c.ok()) return c.status();
  x.cluster = *std::move(c);
  v1::SubscribeRequest all;
  all.set_exchange(exchange);
  x.sub = std::make_unique<Subscriber>(x.cluster->coordinator_address(), all);
  return absl::OkStatus();
}

// The top 100 levels of `replay` are the exchange's REST book's, strings as sent.
void ExpectTop100AsSent(const common::BookSync& replay, const nlohmann::json& exchange) {
  v1::BookUpdate ours;
  replay.book().Top(100, &ours);
  ASSERT_EQ(ours.bids_size(), 100);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(ours.bids(i).price(), exchange["bids"][i][0].get<std::string>()) << "bid " << i;
    EXPECT_EQ(ours.bids(i).quantity(), exchange["bids"][i][1].get<std::string>()) << "bid " << i;
    EXPECT_EQ(ours.asks(i).price(), exchange["asks"][i][0].get<std::string>()) << "ask " << i;
    EXPECT_EQ(ours.asks(i).quantity(), exchange["asks"][i][1].get<std::string>()) << "ask " << i;
  }
}

TEST(CollectionTest, OkxBooksJoinTheRestBookAndEqualItAndTradesHaveNoHole) {
  OneExchange x("okx");
  ASSERT_TRUE(StartOneExchange(x, "okx", "BTC-USDT").ok());
  ASSERT_TRUE(WaitUntil([&] { x.Feed(); return x.book.live(); }, absl::Seconds(10))) << "no book within 10 s";
  auto rest = x.cluster->sim().Get("127.0.0.1", "/api/v5/market/books?instId=BTC-USDT&sz=400");
  ASSERT_TRUE(rest.ok()) << rest.status();
  nlohmann::json exchange = nlohmann::json::parse(rest->body)["data"][0];
  int64_t at = exchange["seqId"];
  ASSERT_TRUE(WaitUntil([&] { x.Feed(); return x.book.last_update_id() >= at; }, absl::Seconds(5)));
  common::BookSync replay = x.ReplayTo(at);
  ASSERT_EQ(replay.last_update_id(), at) << "OKX pushes at every 100 ms tick: the book passes through the REST seqId";
  ExpectTop100AsSent(replay, exchange);
  absl::SleepFor(absl::Seconds(1));
  int64_t trades = 0, gaps = 0;
  x.CountTrades(&trades, &gaps);
  EXPECT_GT(trades, 5);
  EXPECT_EQ(gaps, 0);
}

TEST(CollectionTest, BinanceUsdmBooksChainByPuEqualTheFapiBookAndAggTradesHaveNoHole) {
  OneExchange x("binance_usdm");
  ASSERT_TRUE(StartOneExchange(x, "binance_usdm", "BTCUSDT").ok());
  ASSERT_TRUE(WaitUntil([&] { x.Feed(); return x.book.live(); }, absl::Seconds(10)))
      << "no book within 10 s; node:\n" << x.cluster->node(0).Output();
  auto rest = x.cluster->sim().Get("127.0.0.1", "/fapi/v1/depth?symbol=BTCUSDT&limit=100");
  ASSERT_TRUE(rest.ok()) << rest.status();
  nlohmann::json exchange = nlohmann::json::parse(rest->body);
  int64_t at = exchange["lastUpdateId"];
  ASSERT_TRUE(WaitUntil([&] { x.Feed(); return x.book.last_update_id() >= at; }, absl::Seconds(5)));
  common::BookSync replay = x.ReplayTo(at);
  ASSERT_EQ(replay.last_update_id(), at) << "an update every 100 ms tick: the book passes through lastUpdateId";
  ExpectTop100AsSent(replay, exchange);
  // The records carry USD-M's own chain: each update's previous id is the last one's.
  int64_t last = 0;
  for (const Subscriber::Got& g : x.sub->events()) {
    if (!g.event.has_book() || g.event.book().snapshot()) continue;
    if (last != 0) EXPECT_EQ(g.event.book().previous_update_id(), last);
    last = g.event.book().last_update_id();
  }
  absl::SleepFor(absl::Seconds(1));
  int64_t trades = 0, gaps = 0;
  x.CountTrades(&trades, &gaps);
  EXPECT_GT(trades, 10);
  EXPECT_EQ(gaps, 0);
}

TEST(CollectionTest, DeribitBooksEqualItsRestBookWithPricesAsSentAndTradeSeqsHaveNoHole) {
  OneExchange x("deribit");
  ASSERT_TRUE(StartOneExchange(x, "deribit", "BTC-PERPETUAL").ok());
  ASSERT_TRUE(WaitUntil([&] { x.Feed(); return x.book.live(); }, absl::Seconds(10))) << "no book within 10 s";
  auto rest = x.cluster->sim().Get("127.0.0.1", "/api/v2/public/get_order_book?instrument_name=BTC-PERPETUAL&depth=100");
  ASSERT_TRUE(rest.ok()) << rest.status();
  std::string error;
  std::optional<nlohmann::json> parsed = common::ParseExactJson(rest->body, &error);  // prices as the exchange wrote them
  ASSERT_TRUE(parsed.has_value()) << error;
  const nlohmann::json& exchange = (*parsed)["result"];
  int64_t at = exchange["change_id"];
  ASSERT_TRUE(WaitUntil([&] { x.Feed(); return x.book.last_update_id() >= at; }, absl::Seconds(5)));
  // Deribit sends a change only when the book changed: the book at the last
  // change up to the REST book's change_id is the REST book.
  common::BookSync replay = x.ReplayTo(at);
  ASSERT_TRUE(replay.live());
  v1::BookUpdate ours;
  replay.book().Top(100, &ours);
  ASSERT_EQ(ours.bids_size(), 100);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(ours.bids(i).price(), common::NumberText(exchange["bids"][i][0])) << "bid " << i;
    EXPECT_EQ(ours.bids(i).quantity(), common::NumberText(exchange["bids"][i][1])) << "bid " << i;
    EXPECT_EQ(ours.asks(i).price(), common::NumberText(exchange["asks"][i][0])) << "ask " << i;
    EXPECT_EQ(ours.asks(i).quantity(), common::NumberText(exchange["asks"][i][1])) << "ask " << i;
  }
  absl::SleepFor(absl::Seconds(1));
  int64_t trades = 0, gaps = 0;
  x.CountTrades(&trades, &gaps);
  EXPECT_GT(trades, 5);
  EXPECT_EQ(gaps, 0);
}

// Book tickers, 24 h tickers and klines of one exchange as a subscriber
// gets them: each record once, book tickers in update order with a spread,
// klines of the interval asked for on its boundaries, prices as sent.
void ExpectTopsTickersAndKlines(const std::string& exchange, const std::string& symbol) {
  OneExchange x(exchange);
  ASSERT_TRUE(StartOneExchange(x, exchange, symbol, {"book_ticker", "ticker", "kline"}).ok());
  auto count = [&](auto has) {
    int n = 0;
    for (const Subscriber::Got& g : x.sub->events()) n += has(g.event) ? 1 : 0;
    return n;
  };
  auto tops = [](const v1::MarketEvent& e) { return e.has_book_ticker(); };
  auto tickers = [](const v1::MarketEvent& e) { return e.has_ticker(); };
  auto klines = [](const v1::MarketEvent& e) { return e.has_kline(); };
  ASSERT_TRUE(WaitUntil([&] { return count(tops) >= 5 && count(tickers) >= 2 && count(klines) >= 2; },
                        absl::Seconds(15)))
      << exchange << ": " << count(tops) << " book tickers, " << count(tickers) << " tickers, " << count(klines)
      << " klines in 15 s";
  std::set<std::string> keys;
  int64_t last_top = 0;
  for (const Subscriber::Got& g : x.sub->events()) {
    const v1::MarketEvent& e = g.event;
    EXPECT_TRUE(keys.insert(e.key()).second) << "twice: " << e.key();
    EXPECT_EQ(e.symbol(), symbol);
    EXPECT_FALSE(e.has_gap()) << e.DebugString();
    if (e.has_book_ticker()) {
      EXPECT_GT(e.book_ticker().update_id(), last_top) << "book tickers in update order";
      last_top = e.book_ticker().update_id();
      double bid = 0, ask = 0;
      ASSERT_TRUE(absl::SimpleAtod(e.book_ticker().bid().price(), &bid)) << e.DebugString();
      ASSERT_TRUE(absl::SimpleAtod(e.book_ticker().ask().price(), &ask)) << e.DebugString();
      EXPECT_LT(bid, ask) << e.DebugString();
      EXPECT_EQ(e.channel(), "book_ticker");
    } else if (e.has_ticker()) {
      EXPECT_FALSE(e.ticker().last_price().empty()) << e.DebugString();
      EXPECT_FALSE(e.ticker().volume().empty()) << e.DebugString();
      EXPECT_GT(e.exchange_time_us(), 0);
    } else if (e.has_kline()) {
      EXPECT_EQ(e.channel(), "kline");
      EXPECT_EQ(e.kline().open_time_us() % 60'000'000, 0) << "1m candles open on the minute";
      EXPECT_FALSE(e.kline().close().empty());
      EXPECT_THAT(e.key(), HasSubstr("/kline_1m/"));
    } else {
      ADD_FAILURE() << "not asked for: " << e.DebugString();
    }
  }
}

TEST(CollectionTest, BinanceBookTickersTickersAndKlines) { ExpectTopsTickersAndKlines("binance_spot", "BTCUSDT"); }
TEST(CollectionTest, BinanceUsdmBookTickersTickersAndKlines) { ExpectTopsTickersAndKlines("binance_usdm", "BTCUSDT"); }
TEST(CollectionTest, OkxBookTickersTickersAndKlines) { ExpectTopsTickersAndKlines("okx", "BTC-USDT"); }
TEST(CollectionTest, DeribitBookTickersTickersAndKlines) { ExpectTopsTickersAndKlines("deribit", "BTC-PERPETUAL"); }

TEST(CollectionTest, APythonClientBuiltFromTheProtoAloneSubscribes) {
  ClusterOptions o = Collecting("binance_spot", 1, R"({"jobs": [
      {"name": "trades", "exchange": "binance_spot", "channel": "trades", "symbols": ["BTCUSDT"]}]})");
  auto cluster = Cluster::Start(o);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  auto py = Subprocess::Start({"/usr/bin/python3", MP_SOURCE_DIR "/tests/integration/python_subscriber.py",
                               (*cluster)->coordinator_address(), MP_SOURCE_DIR "/proto"});
  ASSERT_TRUE(py.ok()) << py.status();
  auto code = (*py)->Wait(absl::Seconds(30));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << (*py)->Output();
  EXPECT_THAT((*py)->Output(), HasSubstr("OK"));
}

TEST(CollectionTest, ABadJobsFileStopsTheCoordinatorNamingTheJob) {
  std::string jobs = WriteJobs(R"({"jobs": [{"name": "x", "exchange": "binance_spot", "channel": "trades",
                                             "symbols": ["BTCUSDT"], "redundancy": 5}]})");
  auto p = Subprocess::Start({BinDir() + "/mp-coordinator", "--listen", "127.0.0.1:0", "--jobs", jobs});
  ASSERT_TRUE(p.ok()) << p.status();
  auto line = (*p)->WaitForLine("redundancy", absl::Seconds(10));
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_THAT(*line, HasSubstr("job \"x\": \"redundancy\" must be 1 or 2"));
}

}  // namespace
}  // namespace marketprism::testing
