// The exchange surprises a saturated cluster, as real processes on loopback
// against the simulator with its default ban policy (a 418 after two more
// refusals inside a Retry-After): its limit drops without notice, or another
// program shares a node's IP at the top of every window. The simulator's
// per-IP counts are the judge: no 418, at most one refused request per IP
// per surprise. Binance's REQUEST_WEIGHT window is shortened to 5 s in a
// copy of the shipped rules, so a test sees several windows in seconds.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "tests/testing/cluster.h"
#include "tests/testing/wait.h"

namespace marketprism::testing {
namespace {

using Json = nlohmann::json;

constexpr int64_t kWindowSeconds = 5;
// Enough clients that a window opens with dozens of requests queued per IP:
// without the exposure bound (MP_MAX_IN_FLIGHT=0) they would all go at once.
constexpr int kClients = 48;

// The shipped rules with Binance spot's REQUEST_WEIGHT window at 5 s.
std::string ShortWindowRules() {
  std::ifstream in(MP_RULES_FILE);
  Json rules = Json::parse(in);
  for (Json& pool : rules["exchanges"]["binance_spot"]["pools"]) {
    if (pool["name"] != "REQUEST_WEIGHT") continue;
    pool["seconds"] = kWindowSeconds;
    pool["published_as"]["interval"] = "SECOND";  // as exchangeInfo then says it
    pool["published_as"]["intervalNum"] = kWindowSeconds;
  }
  std::string path = absl::StrCat(::testing::TempDir(), "/short_window_rules_", getpid(), ".json");
  std::ofstream(path) << rules.dump();
  return path;
}

std::unique_ptr<Cluster> StartShortWindowCluster(int64_t weight_limit) {
  std::string rules = ShortWindowRules();
  ClusterOptions o;
  o.exchanges = {"binance_spot"};
  o.sim_flags = {"--rules", rules, "--limit", absl::StrCat("binance_spot.REQUEST_WEIGHT=", weight_limit)};
  o.coordinator_flags = {"--rules", rules};
  o.node_flags = {"--rules", rules, "--exchange", "binance_spot"};
  auto c = Cluster::Start(std::move(o));
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? std::move(*c) : nullptr;
}

v1::ExecuteRequest Mix(int i) {
  switch (i % 3) {
    case 0:
      return MakeRequest("binance_spot", "/api/v3/ping");
    case 1:
      return MakeRequest("binance_spot", "/api/v3/depth", {{"symbol", "BTCUSDT"}, {"limit", "100"}});
    default:
      return MakeRequest("binance_spot", "/api/v3/ticker/24hr", {{"symbol", "BNBUSDT"}});
  }
}

// Clients that keep the cluster saturated until Stop().
class Saturate {
 public:
  Saturate(Cluster& c, int threads) {
    for (int t = 0; t < threads; ++t) {
      threads_.emplace_back([this, &c, t] {
        for (int i = t; !stop_.load(); ++i) {
          v1::ExecuteResponse resp;
          grpc::Status s = c.Execute(Mix(i), &resp, absl::Seconds(2));
          if (s.ok()) ok_.fetch_add(1);
        }
      });
    }
  }
  ~Saturate() { Stop(); }
  int64_t Stop() {
    stop_.store(true);
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
    return ok_.load();
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> ok_{0};
  std::vector<std::thread> threads_;
};

const Json& IpStats(const Json& stats, const std::string& ip) { return stats["exchanges"]["binance_spot"]["ips"][ip]; }

int64_t Count(const Json& ip, const char* kind) { return ip["rejections"].value(kind, 0); }

// The simulator's window index now (its clock is ours here).
int64_t WindowNow() { return absl::ToUnixSeconds(absl::Now()) / kWindowSeconds; }

TEST(SurpriseTest, ALimitLoweredUnderSaturatingLoadCostsOneRefusalPerIpAndTheNewLimitIsSpentNext) {
  auto c = StartShortWindowCluster(600);
  ASSERT_NE(c, nullptr);
  Saturate load(*c, kClients);
  // Saturated: every IP has spent its 600 in the current window.
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto stats = c->sim().Stats();
        if (!stats.ok()) return false;
        for (int i = 0; i < 3; ++i) {
          if (IpStats(*stats, c->egress_ip(i))["pools"]["REQUEST_WEIGHT"]["used"].get<int64_t>() < 590) return false;
        }
        return true;
      },
      absl::Seconds(10)))
      << c->sim().Stats()->dump();
  // The exchange halves the limit without notice (its exchangeInfo says so,
  // but the cluster reads that only every 10 minutes, or after a refusal).
  ASSERT_EQ(c->sim().Post("127.0.0.1", "/sim/limits", R"({"binance_spot.REQUEST_WEIGHT": 300})")->status, 200);
  int64_t lowered_in = WindowNow();
  // Two more windows: the first meets the new limit, the second spends it.
  ASSERT_TRUE(WaitUntil([&] { return WindowNow() >= lowered_in + 3; }, absl::Seconds(4 * kWindowSeconds)));
  EXPECT_GT(load.Stop(), 100);
  auto stats = c->sim().Stats();
  ASSERT_TRUE(stats.ok());
  for (int i = 0; i < 3; ++i) {
    const Json& ip = IpStats(*stats, c->egress_ip(i));
    EXPECT_EQ(Count(ip, "418"), 0) << c->egress_ip(i) << " " << ip.dump();
    EXPECT_LE(Count(ip, "429"), 1) << c->egress_ip(i) << ": at most one refused request for the surprise";
    // The window after the refusal: the new limit, spent.
    const Json& windows = ip["pools"]["REQUEST_WEIGHT"]["windows"];
    ASSERT_GE(windows.size(), 2u);
    int64_t after = windows.back()["used"];
    EXPECT_LE(after, 300) << c->egress_ip(i);
    EXPECT_GE(after, 300 * 95 / 100) << c->egress_ip(i) << ": the new limit is used";
  }
}

TEST(SurpriseTest, AForeignClientAtTheTopOfEveryWindowCostsAtMostOneRefusalPerWindowAndNoBan) {
  auto c = StartShortWindowCluster(600);
  ASSERT_NE(c, nullptr);
  std::string victim = c->egress_ip(0);
  Saturate load(*c, kClients);
  // Another program on the victim's IP spends 200 at the start of each
  // window (40 depth calls of weight 5), stopping at its first 429 as a
  // well-behaved client does.
  std::atomic<int64_t> foreign_429{0}, foreign_ok{0};
  int64_t first = WindowNow() + 1;
  constexpr int kWindows = 3;
  std::thread foreign([&] {
    for (int64_t w = first; w < first + kWindows; ++w) {
      absl::Time start = absl::FromUnixSeconds(w * kWindowSeconds);
      if (absl::Now() < start) absl::SleepFor(start - absl::Now());  // the top of the window: when it acts
      for (int k = 0; k < 40; ++k) {
        auto r = c->sim().Get(victim, "/api/v3/depth?symbol=BTCUSDT&limit=100");
        if (!r.ok()) continue;
        if (r->status == 429 || r->status == 418) {
          foreign_429.fetch_add(1);
          break;
        }
        foreign_ok.fetch_add(1);
      }
    }
  });
  foreign.join();
  ASSERT_TRUE(WaitUntil([&] { return WindowNow() >= first + kWindows; }, absl::Seconds(2 * kWindowSeconds)));
  EXPECT_GT(load.Stop(), 100);
  auto stats = c->sim().Stats();
  ASSERT_TRUE(stats.ok());
  const Json& ip = IpStats(*stats, victim);
  EXPECT_EQ(Count(ip, "418"), 0) << ip.dump();
  int64_t cluster_refusals = Count(ip, "429") - foreign_429.load();
  EXPECT_LE(cluster_refusals, kWindows) << "at most one refused request of the cluster's per surprise";
  EXPECT_GT(foreign_ok.load(), 0) << "the foreign client did run";
  for (int i = 1; i < 3; ++i) {
    EXPECT_EQ(Count(IpStats(*stats, c->egress_ip(i)), "429"), 0) << "the other IPs were never surprised";
  }
  // The cluster saw it as foreign use of the victim's IP.
  grpc::ClientContext ctx;
  v1::GetStatusResponse status;
  ASSERT_TRUE(c->stub().GetStatus(&ctx, {}, &status).ok());
  int64_t foreign_seen = 0;
  for (const auto& n : status.nodes()) {
    for (const auto& l : n.lanes()) {
      if (n.egress_ip() == victim && l.exchange() == "binance_spot") foreign_seen = l.foreign_units();
    }
  }
  EXPECT_GT(foreign_seen, 0) << status.DebugString();
}

}  // namespace
}  // namespace marketprism::testing
