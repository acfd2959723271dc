// The simulator as a real process on loopback, with clients bound to distinct
// 127.0.0.x source addresses: the limits the exchanges document hold exactly,
// per source IP, over real sockets.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/net/ws_client.h"
#include "tests/testing/certs.h"
#include "tests/testing/sim_process.h"
#include "tests/testing/tunnel_proxy.h"
#include "tests/testing/wait.h"
#include "tests/testing/ws_probe.h"

namespace marketprism::testing {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

int64_t IntHeader(const common::HttpReply& r, const std::string& name) {
  const std::string* v = r.Header(name);
  int64_t n = -1;
  if (v == nullptr || !absl::SimpleAtoi(*v, &n)) return -1;
  return n;
}

std::unique_ptr<SimProcess> StartSim(std::vector<std::string> flags = {}) {
  auto sim = SimProcess::Start(std::move(flags));
  EXPECT_TRUE(sim.ok()) << sim.status();
  return sim.ok() ? std::move(*sim) : nullptr;
}

TEST(SimIntegrationTest, FirstRejectionComesExactlyAtTheBudgetPerIp) {
  auto sim = StartSim({"--limit", "binance_spot.REQUEST_WEIGHT=100"});
  ASSERT_NE(sim, nullptr);
  ASSERT_TRUE(sim->AlignServerClock(absl::Seconds(2)).ok());
  for (int i = 1; i <= 20; ++i) {
    auto r = sim->Get("127.0.0.11", "/api/v3/depth?symbol=BTCUSDT&limit=100");
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(IntHeader(*r, "X-MBX-USED-WEIGHT-1M"), 5 * i) << "the exact used weight";
  }
  auto r = sim->Get("127.0.0.11", "/api/v3/ping");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 429) << "weight 101 of 100";
  int64_t retry = IntHeader(*r, "Retry-After");
  EXPECT_GE(retry, 55);
  EXPECT_LE(retry, 58);
  auto other = sim->Get("127.0.0.12", "/api/v3/ping");
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->status, 200) << "another IP is unaffected";
  EXPECT_EQ(IntHeader(*other, "X-MBX-USED-WEIGHT-1M"), 1);

  auto stats = sim->Stats();
  ASSERT_TRUE(stats.ok());
  Json ips = (*stats)["exchanges"]["binance_spot"]["ips"];
  EXPECT_EQ(ips["127.0.0.11"]["pools"]["REQUEST_WEIGHT"]["used"], 100);
  EXPECT_EQ(ips["127.0.0.11"]["rejections"]["429"], 1);
  EXPECT_EQ(ips["127.0.0.12"]["pools"]["REQUEST_WEIGHT"]["used"], 1);
  EXPECT_FALSE(ips.contains("127.0.0.1")) << "the admin calls are not charged";
}

TEST(SimIntegrationTest, WindowResetsOnTheClockMinute) {
  auto sim = StartSim({"--limit", "binance_spot.REQUEST_WEIGHT=10"});
  ASSERT_NE(sim, nullptr);
  ASSERT_TRUE(sim->AlignServerClock(absl::Milliseconds(58'700)).ok());
  absl::Time aligned = absl::Now();
  for (int i = 0; i < 5; ++i) {
    auto r = sim->Get("127.0.0.13", "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1");
    ASSERT_TRUE(r.ok() && r->status == 200);
  }
  auto r = sim->Get("127.0.0.13", "/api/v3/ping");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->status, 429);
  EXPECT_EQ(IntHeader(*r, "Retry-After"), 2) << "1.3 s to the edge, rounded up";
  // Not synchronisation: real time has to cross the server's minute edge
  // (1.3 s away); asking earlier would be charged to the full window.
  absl::SleepFor(aligned + absl::Milliseconds(1500) - absl::Now());
  r = sim->Get("127.0.0.13", "/api/v3/ping");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200) << "a new minute";
  EXPECT_EQ(IntHeader(*r, "X-MBX-USED-WEIGHT-1M"), 1);
  auto stats = sim->Stats();
  Json pool = (*stats)["exchanges"]["binance_spot"]["ips"]["127.0.0.13"]["pools"]["REQUEST_WEIGHT"];
  ASSERT_EQ(pool["windows"].size(), 1u);
  EXPECT_EQ(pool["windows"][0]["used"], 10) << "the closed window's final count";
}

TEST(SimIntegrationTest, SendingOnAfter429EarnsGrowing418s) {
  auto sim = StartSim({"--limit", "binance_spot.REQUEST_WEIGHT=1", "--ban-strikes", "2",
                       "--ban-schedule", "1s,3s"});
  ASSERT_NE(sim, nullptr);
  ASSERT_TRUE(sim->AlignServerClock(absl::Seconds(2)).ok());
  auto status = [&] { return sim->Get("127.0.0.14", "/api/v3/ping").value().status; };
  EXPECT_EQ(status(), 200);
  EXPECT_EQ(status(), 429);
  EXPECT_EQ(status(), 429);
  auto ban = sim->Get("127.0.0.14", "/api/v3/ping");
  ASSERT_EQ(ban->status, 418);
  EXPECT_EQ(IntHeader(*ban, "Retry-After"), 1);
  EXPECT_THAT(ban->body, HasSubstr("IP banned until"));
  // Not synchronisation: the 1 s ban has to run out in real time; polling
  // would send requests that the counts below check exactly.
  absl::SleepFor(absl::Milliseconds(1100));
  EXPECT_EQ(status(), 429) << "the ban is over, the window still full";
  EXPECT_EQ(status(), 429);
  ban = sim->Get("127.0.0.14", "/api/v3/ping");
  ASSERT_EQ(ban->status, 418);
  EXPECT_EQ(IntHeader(*ban, "Retry-After"), 3) << "the second ban is longer";
  EXPECT_EQ(sim->Get("127.0.0.15", "/api/v3/ping")->status, 200) << "bans are per IP";
  Json ip = (*sim->Stats())["exchanges"]["binance_spot"]["ips"]["127.0.0.14"];
  EXPECT_EQ(ip["bans"], 2);
  EXPECT_EQ(ip["rejections"]["418"], 2);
  EXPECT_EQ(ip["rejections"]["429"], 4);
}

TEST(SimIntegrationTest, OkxRollingTwoSecondBudgetAnd50011) {
  auto sim = StartSim({"--limit", "okx.market/books=5"});
  ASSERT_NE(sim, nullptr);
  absl::Time first = absl::Now();
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(sim->Get("127.0.0.16", "/api/v5/market/books?instId=BTC-USDT")->status, 200);
  }
  auto r = sim->Get("127.0.0.16", "/api/v5/market/books?instId=BTC-USDT");
  ASSERT_EQ(r->status, 429);
  EXPECT_EQ(Json::parse(r->body)["code"], "50011");
  EXPECT_EQ(sim->Get("127.0.0.17", "/api/v5/market/books?instId=BTC-USDT")->status, 200);
  EXPECT_EQ(sim->Get("127.0.0.16", "/api/v5/market/trades?instId=BTC-USDT")->status, 200)
      << "each endpoint has its own budget";
  // Not synchronisation: the first requests have to leave the rolling 2 s
  // window in real time.
  absl::SleepFor(first + absl::Milliseconds(2100) - absl::Now());
  EXPECT_EQ(sim->Get("127.0.0.16", "/api/v5/market/books?instId=BTC-USDT")->status, 200);
}

TEST(SimIntegrationTest, DeribitCreditsAnd10028) {
  auto sim = StartSim({"--limit", "deribit.non_matching_engine=2000"});
  ASSERT_NE(sim, nullptr);
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(sim->Get("127.0.0.18", "/api/v2/public/ticker?instrument_name=BTC-PERPETUAL")->status,
              200);
  }
  auto r = sim->Get("127.0.0.18", "/api/v2/public/get_time");
  ASSERT_EQ(r->status, 429);
  EXPECT_EQ(Json::parse(r->body)["error"]["code"], 10028);
  EXPECT_EQ(sim->Get("127.0.0.19", "/api/v2/public/get_time")->status, 200);
  // Not synchronisation: the bucket refills in real time (500 credits at 10/ms).
  absl::SleepFor(absl::Milliseconds(60));
  EXPECT_EQ(sim->Get("127.0.0.18", "/api/v2/public/get_time")->status, 200);
  auto rpc = sim->Post("127.0.0.19", "/api/v2",
                       R"({"jsonrpc":"2.0","id":99,"method":"public/get_instruments","params":{"currency":"BTC"}})");
  Json j = Json::parse(rpc->body);
  EXPECT_EQ(j["id"], 99);
  EXPECT_GE(j["result"].size(), 3u);
}

TEST(SimIntegrationTest, ExchangeInfoPublishesTheEnforcedLimits) {
  auto sim = StartSim({"--limit", "binance_spot.REQUEST_WEIGHT=600"});
  ASSERT_NE(sim, nullptr);
  Json info = Json::parse(sim->Get("127.0.0.20", "/api/v3/exchangeInfo")->body);
  EXPECT_EQ(info["rateLimits"][0]["rateLimitType"], "REQUEST_WEIGHT");
  EXPECT_EQ(info["rateLimits"][0]["limit"], 600);
  ASSERT_EQ(sim->Post("127.0.0.1", "/sim/limits", R"({"binance_spot.REQUEST_WEIGHT": 450})")->status,
            200);
  info = Json::parse(sim->Get("127.0.0.20", "/api/v3/exchangeInfo")->body);
  EXPECT_EQ(info["rateLimits"][0]["limit"], 450);
}

TEST(SimIntegrationTest, ManyInstrumentModeListsAndServesThousandsOfSymbols) {
  auto sim = StartSim({"--instruments", "2000", "--trades-per-second", "40"});
  ASSERT_NE(sim, nullptr);
  Json info = Json::parse(sim->Get("127.0.0.20", "/api/v3/exchangeInfo")->body);
  std::set<std::string> symbols;
  for (const Json& s : info["symbols"]) symbols.insert(s["symbol"].get<std::string>());
  EXPECT_TRUE(symbols.contains("BTCUSDT"));
  EXPECT_TRUE(symbols.contains("X0001USDT"));
  EXPECT_TRUE(symbols.contains("X2000USDT"));
  EXPECT_GE(symbols.size(), 2000u);
  auto depth = sim->Get("127.0.0.20", "/api/v3/depth?symbol=X1234USDT&limit=5");
  ASSERT_TRUE(depth.ok());
  EXPECT_EQ(depth->status, 200) << depth->body;
  EXPECT_EQ(Json::parse(depth->body)["bids"].size(), 5u);
  auto okx = sim->Get("127.0.0.21", "/api/v5/market/books?instId=X2000-USDT&sz=5");
  ASSERT_TRUE(okx.ok());
  EXPECT_EQ(Json::parse(okx->body)["data"][0]["asks"].size(), 5u) << okx->body;
  // One rate for all: the last second's trades.
  auto trades = sim->Get("127.0.0.20", "/api/v3/trades?symbol=X0007USDT&limit=1000");
  ASSERT_TRUE(trades.ok());
  Json t = Json::parse(trades->body);
  ASSERT_GE(t.size(), 100u) << trades->body;
  int64_t last = t.back()["time"].get<int64_t>();
  int64_t in_last_second = 0;
  for (const Json& x : t) in_last_second += x["time"].get<int64_t>() > last - 1000 ? 1 : 0;
  EXPECT_NEAR(in_last_second, 40, 1);
  auto bad = SimProcess::Start({"--instruments", "-1"});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("--instruments=-1: must be 0 to 100000"));
}

TEST(SimIntegrationTest, LatencyAndMaintenanceFaultsOverRealSockets) {
  auto sim = StartSim({"--latency", "150ms"});
  ASSERT_NE(sim, nullptr);
  absl::Time start = absl::Now();
  auto r = sim->Get("127.0.0.22", "/api/v3/time");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(150)) << "the reply was held back";
  // A large reply goes out in several writes after the delay, intact.
  r = sim->Get("127.0.0.22", "/api/v3/depth?symbol=BTCUSDT&limit=5000");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Json::parse(r->body)["bids"].size(), 5000u);
  ASSERT_TRUE(sim->SetFaults(R"({"latency_ms": 0, "maintenance_seconds": 2})").ok());
  start = absl::Now();
  r = sim->Get("127.0.0.22", "/api/v3/time");
  EXPECT_EQ(r->status, 503);
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(100));
  // Not synchronisation: the 2 s maintenance has to end in real time, and
  // one request just after it shows that it has.
  absl::SleepFor(absl::Milliseconds(2100));
  EXPECT_EQ(sim->Get("127.0.0.22", "/api/v3/time")->status, 200);
}

// Sends raw bytes on a fresh TCP connection and returns what comes back
// before the server closes it or 2 s pass.
std::string RawExchange(int port, const std::string& bytes) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "<connect failed>";
  }
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  (void)!write(fd, bytes.data(), bytes.size());
  std::string got;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) got.append(buf, static_cast<size_t>(n));
  close(fd);
  return got;
}

TEST(SimIntegrationTest, GarbageNeverCrashesOrHangs) {
  auto sim = StartSim();
  ASSERT_NE(sim, nullptr);
  const std::vector<std::string> garbage = {
      std::string("\x16\x03\x01\x02\x00garbage\r\n\r\n", 16),
      "NOT HTTP AT ALL\r\n\r\n",
      "GET /api/v3/ping HTTP/1.1\r\nHost: x\r\n" + std::string(20000, 'A') + "\r\n\r\n",
      "POST /api/v2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\n{{{{{",
      "GET /api/v2/public/get_time?x=%FF%FE HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
  };
  for (const std::string& g : garbage) {
    absl::Time start = absl::Now();
    RawExchange(sim->port(), g);
    EXPECT_LT(absl::Now() - start, absl::Milliseconds(1500)) << "the server let go of: " << g.substr(0, 40);
  }
  std::string reply =
      RawExchange(sim->port(), "GET /api/v3/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_THAT(reply, HasSubstr("200"));
  auto r = sim->Get("127.0.0.21", "/api/v2/public/get_time?garbage=%FF%FE");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(sim->process().Running());
  EXPECT_THAT(sim->process().Output(), ::testing::Not(HasSubstr("internal error")));
}

// ---- WebSocket -------------------------------------------------------------

class SimWsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = common::LwsWsClient::Create();
    ASSERT_TRUE(c.ok());
    client_ = std::move(*c);
  }
  void TearDown() override { client_.reset(); }

  std::unique_ptr<WsProbe> Connect(SimProcess& sim, const std::string& path, const std::string& ip) {
    auto p = WsProbe::Connect(*client_, sim.ws_url() + path, ip);
    EXPECT_TRUE(p.ok()) << p.status();
    return std::move(*p);
  }

  std::unique_ptr<common::LwsWsClient> client_;
};

TEST_F(SimWsTest, BinanceStreamsAreGapFreeAndSyncWithTheRestSnapshot) {
  auto sim = StartSim();
  ASSERT_NE(sim, nullptr);
  auto trades = Connect(*sim, "/ws/btcusdt@trade", "127.0.0.31");
  auto depth = Connect(*sim, "/stream?streams=btcusdt@depth@100ms", "127.0.0.31");
  ASSERT_TRUE(trades->WaitOpen(absl::Seconds(5)));
  ASSERT_TRUE(depth->WaitOpen(absl::Seconds(5)));
  ASSERT_TRUE(depth->WaitMessages(3, absl::Seconds(5)));
  auto snap = sim->Get("127.0.0.31", "/api/v3/depth?symbol=BTCUSDT&limit=1000");
  int64_t last_update = Json::parse(snap->body)["lastUpdateId"];
  ASSERT_TRUE(depth->WaitMessages(15, absl::Seconds(5)));
  ASSERT_TRUE(trades->WaitMessages(20, absl::Seconds(5)));
  int64_t prev = -1;
  for (const std::string& t : trades->Messages()) {
    int64_t id = Json::parse(t)["t"];
    if (prev >= 0) EXPECT_EQ(id, prev + 1);
    prev = id;
  }
  int64_t prev_u = -1;
  bool bridged = false;
  for (const std::string& t : depth->Messages()) {
    Json e = Json::parse(t)["data"];
    if (prev_u >= 0) EXPECT_EQ(e["U"].get<int64_t>(), prev_u + 1) << "a gap";
    prev_u = e["u"];
    // Binance's sync rule: the first event after the snapshot has U <= L+1 <= u.
    if (e["U"].get<int64_t>() <= last_update + 1 && last_update + 1 <= e["u"].get<int64_t>()) {
      bridged = true;
    }
  }
  EXPECT_TRUE(bridged) << "no event continues the REST snapshot " << last_update;
}

TEST_F(SimWsTest, BinanceUsdmStreamsChainByPuAndJoinTheFapiSnapshot) {
  auto sim = StartSim();
  ASSERT_NE(sim, nullptr);
  auto depth = Connect(*sim, "/usdm/stream?streams=btcusdt@depth@100ms/btcusdt@aggTrade", "127.0.0.32");
  ASSERT_TRUE(depth->WaitOpen(absl::Seconds(5)));
  ASSERT_TRUE(depth->WaitMessages(5, absl::Seconds(5)));
  auto snap = sim->Get("127.0.0.32", "/fapi/v1/depth?symbol=BTCUSDT&limit=1000");
  ASSERT_EQ(snap->status, 200) << snap->body;
  int64_t last_update = Json::parse(snap->body)["lastUpdateId"];
  ASSERT_TRUE(depth->WaitMessages(40, absl::Seconds(5)));
  int64_t prev_u = -1, agg = -1;
  bool joined = false, spaced = false;
  for (const std::string& t : depth->Messages()) {
    Json m = Json::parse(t);
    Json e = m["data"];
    if (e["e"] == "aggTrade") {
      if (agg >= 0) EXPECT_EQ(e["a"].get<int64_t>(), agg + 1);
      agg = e["a"];
      continue;
    }
    ASSERT_EQ(m["stream"], "btcusdt@depth@100ms");
    ASSERT_TRUE(e.contains("pu")) << t;
    if (prev_u >= 0) EXPECT_EQ(e["pu"].get<int64_t>(), prev_u) << "a break in the pu chain";
    spaced = spaced || (prev_u >= 0 && e["U"].get<int64_t>() != prev_u + 1);
    prev_u = e["u"];
    // USD-M's rule: the first event after the snapshot has U <= lastUpdateId <= u.
    joined = joined || (e["U"].get<int64_t>() <= last_update && last_update <= e["u"].get<int64_t>());
  }
  EXPECT_TRUE(joined) << "no event joins the REST snapshot " << last_update;
  EXPECT_TRUE(spaced) << "U follows the previous u exactly: the spot rule would pass, so it is not tested";
  EXPECT_GE(agg, 0) << "no aggTrade";
  // 200 streams a connection, as USD-M documents (spot: 1024).
  auto usdm = Connect(*sim, "/usdm/ws", "127.0.0.32");
  ASSERT_TRUE(usdm->WaitOpen(absl::Seconds(5)));
  Json sub = {{"method", "SUBSCRIBE"}, {"id", 1}, {"params", Json::array()}};
  for (const char* sym : {"btcusdt", "ethusdt", "solusdt"}) {
    for (const char* kind : {"@aggTrade", "@depth", "@depth@100ms", "@bookTicker", "@ticker"}) {
      sub["params"].push_back(absl::StrCat(sym, kind));
    }
  }
  for (int i = 0; sub["params"].size() < 201; ++i) sub["params"].push_back(absl::StrCat("x", i, "usdt@aggTrade"));
  usdm->Send(sub.dump());
  ASSERT_TRUE(usdm->WaitMessages(1, absl::Seconds(5)));
  EXPECT_THAT(usdm->Messages()[0], HasSubstr("at most 200 streams per connection"));
}

TEST_F(SimWsTest, StreamsGoThroughAnHttpConnectProxyFromTheBoundAddress) {
  auto sim = StartSim();
  ASSERT_NE(sim, nullptr);
  auto proxy = TunnelProxy::Start();
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  auto via = WsProbe::Connect(*client_, sim->ws_url() + "/stream?streams=btcusdt@trade", "127.0.0.34",
                              (*proxy)->url());
  ASSERT_TRUE(via.ok()) << via.status();
  ASSERT_TRUE((*via)->WaitOpen(absl::Seconds(5))) << (*via)->close_reason();
  ASSERT_TRUE((*via)->WaitMessages(5, absl::Seconds(5)));
  EXPECT_THAT((*via)->Messages()[0], HasSubstr(R"("e":"trade")"));
  std::vector<TunnelProxy::Tunnel> tunnels = (*proxy)->tunnels();
  ASSERT_EQ(tunnels.size(), 1u);
  EXPECT_EQ(tunnels[0].source_ip, "127.0.0.34") << "the tunnel starts from the bound address";
  EXPECT_EQ(tunnels[0].target, absl::StrCat("127.0.0.1:", sim->port()));
  // The simulator saw the proxy's address, as the exchange would.
  auto stats = sim->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ((*stats)["exchanges"]["binance_spot"]["ips"]["127.0.0.1"]["ws_accepted"], 1);

  // Malformed proxies are refused at once, naming the problem.
  auto bad = WsProbe::Connect(*client_, sim->ws_url() + "/ws", "127.0.0.34", "http://127.0.0.1");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("needs host:port"));
  auto socks4 = WsProbe::Connect(*client_, sim->ws_url() + "/ws", "127.0.0.34", "socks4://127.0.0.1:1080");
  ASSERT_FALSE(socks4.ok());
  EXPECT_THAT(socks4.status().message(), HasSubstr("socks5[h]://"));
}

// Debian's lws has no SOCKS5: streams go through our local CONNECT relay
// (common/net/socks_relay.h), which speaks SOCKS5 to the proxy from the
// connection's own source address, with the proxy's login.
TEST_F(SimWsTest, StreamsGoThroughASocks5ProxyFromTheBoundAddress) {
  auto sim = StartSim();
  ASSERT_NE(sim, nullptr);
  auto proxy = TunnelProxy::Start("collector:s3cr%t");
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  std::string url = sim->ws_url() + "/stream?streams=btcusdt@trade";
  std::string at = absl::StrCat("@127.0.0.1:", (*proxy)->port());
  for (auto [scheme, source] : {std::pair{"socks5h", "127.0.0.36"}, std::pair{"socks5", "127.0.0.37"}}) {
    auto via = WsProbe::Connect(*client_, url, source, absl::StrCat(scheme, "://collector:s3cr%25t", at));
    ASSERT_TRUE(via.ok()) << via.status();
    ASSERT_TRUE((*via)->WaitOpen(absl::Seconds(5))) << scheme << ": " << (*via)->close_reason();
    ASSERT_TRUE((*via)->WaitMessages(5, absl::Seconds(5))) << scheme;
    EXPECT_THAT((*via)->Messages()[0], HasSubstr(R"("e":"trade")"));
  }
  std::vector<TunnelProxy::Tunnel> tunnels = (*proxy)->tunnels();
  ASSERT_EQ(tunnels.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(tunnels[i].method, "SOCKS5");
    EXPECT_EQ(tunnels[i].target, absl::StrCat("127.0.0.1:", sim->port()));
  }
  EXPECT_EQ(tunnels[0].source_ip, "127.0.0.36") << "the tunnel to the proxy starts from the bound address";
  EXPECT_EQ(tunnels[1].source_ip, "127.0.0.37");
  auto stats = sim->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ((*stats)["exchanges"]["binance_spot"]["ips"]["127.0.0.1"]["ws_accepted"], 2);

  // A wrong password: the stream does not open, and says why.
  auto refused = WsProbe::Connect(*client_, url, "127.0.0.36", absl::StrCat("socks5h://collector:wrong", at));
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_FALSE((*refused)->WaitOpen(absl::Seconds(5)));
  ASSERT_TRUE((*refused)->WaitClosed(absl::Seconds(5)).has_value());
  EXPECT_THAT((*refused)->close_reason(), Not(HasSubstr("wrong"))) << "the password is never shown";
}

// wss:// as the exchanges serve it: verified against the CA the client is
// given, direct and through either kind of proxy (TLS end to end: the proxy
// carries bytes it cannot read), and refused when the certificate is not
// one the client trusts, proxy or not.
TEST_F(SimWsTest, WssIsVerifiedDirectAndThroughEitherProxy) {
  char dir_template[] = "/tmp/mp-wss-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  std::string dir = dir_template;
  absl::StatusOr<std::string> cert = SelfSignedCert(dir, "sim"), other = SelfSignedCert(dir, "other");
  ASSERT_TRUE(cert.ok() && other.ok()) << cert.status() << other.status();
  auto sim = StartSim({"--tls-cert", *cert, "--tls-key", dir + "/sim.key"});
  ASSERT_NE(sim, nullptr);
  ASSERT_TRUE(absl::StartsWith(sim->ws_url(), "wss://"));
  auto trusting = common::LwsWsClient::Create({.ca_bundle = *cert});
  auto wary = common::LwsWsClient::Create({.ca_bundle = *other});
  ASSERT_TRUE(trusting.ok() && wary.ok());
  auto proxy = TunnelProxy::Start();
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  std::string url = sim->ws_url() + "/stream?streams=btcusdt@trade";
  std::string socks = absl::StrCat("socks5h://127.0.0.1:", (*proxy)->port());
  for (const std::string& via : {std::string(), (*proxy)->url(), socks}) {
    auto p = WsProbe::Connect(**trusting, url, "127.0.0.38", via);
    ASSERT_TRUE(p.ok()) << p.status();
    ASSERT_TRUE((*p)->WaitOpen(absl::Seconds(5))) << "via '" << via << "': " << (*p)->close_reason();
    ASSERT_TRUE((*p)->WaitMessages(3, absl::Seconds(5))) << via;
    EXPECT_THAT((*p)->Messages()[0], HasSubstr(R"("e":"trade")"));
  }
  for (const std::string& via : {std::string(), socks}) {
    auto p = WsProbe::Connect(**wary, url, "127.0.0.39", via);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_FALSE((*p)->WaitOpen(absl::Seconds(3))) << "a certificate the client does not trust, via '" << via << "'";
    EXPECT_TRUE((*p)->WaitClosed(absl::Seconds(5)).has_value());
  }
  std::vector<TunnelProxy::Tunnel> tunnels = (*proxy)->tunnels();
  ASSERT_EQ(tunnels.size(), 3u);
  EXPECT_EQ(tunnels[0].method, "CONNECT");
  EXPECT_EQ(tunnels[1].method, "SOCKS5");
  for (const auto& t : tunnels) EXPECT_EQ(t.target, absl::StrCat("127.0.0.1:", sim->port()));
  // REST over https as well, verified (the sim's own client trusts `cert`).
  auto stats = sim->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  auto& ips = (*stats)["exchanges"]["binance_spot"]["ips"];
  EXPECT_EQ(ips["127.0.0.38"]["ws_accepted"], 1) << "direct";
  EXPECT_EQ(ips["127.0.0.1"]["ws_accepted"], 2) << "through the two proxies";
  EXPECT_FALSE(ips.contains("127.0.0.39") && ips["127.0.0.39"].value("ws_accepted", 0) > 0)
      << "no stream opened without a verified certificate";
  std::filesystem::remove_all(dir);
}

// A consumer that stops reading is cut once its backlog passes the bound, as
// the exchanges cut slow consumers; a reader beside it is not.
TEST_F(SimWsTest, AConsumerThatStopsReadingIsCutAndAReaderBesideItIsNot) {
  auto sim = StartSim({"--instruments", "120", "--trades-per-second", "1000"});
  ASSERT_NE(sim, nullptr);
  std::string streams;
  for (int i = 1; i <= 120; ++i) absl::StrAppend(&streams, i > 1 ? "/" : "", absl::StrFormat("x%04dusdt@trade", i));
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  sockaddr_in from{};
  from.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.41", &from.sin_addr);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof(from)), 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(sim->port()));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)), 0);
  std::string upgrade = absl::StrCat("GET /stream?streams=", streams,
                                     " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
  ASSERT_EQ(write(fd, upgrade.data(), upgrade.size()), static_cast<ssize_t>(upgrade.size()));
  auto reader = Connect(*sim, "/stream?streams=x0001usdt@trade", "127.0.0.42");
  ASSERT_TRUE(reader->WaitOpen(absl::Seconds(5)));
  auto ip = [&](const std::string& which) {
    auto stats = sim->Stats();
    return stats.ok() ? (*stats)["exchanges"]["binance_spot"]["ips"][which] : Json();
  };
  ASSERT_TRUE(WaitUntil([&] { return ip("127.0.0.41").value("ws_accepted", 0) == 1; }, absl::Seconds(5)));
  // Never read: the socket fills, the backlog grows, the consumer is cut.
  EXPECT_TRUE(WaitUntil([&] { return ip("127.0.0.41").value("ws_open", 1) == 0; }, absl::Seconds(20)))
      << ip("127.0.0.41").dump();
  close(fd);
  EXPECT_THAT(sim->process().Output(), HasSubstr("cutting a slow WebSocket consumer at 127.0.0.41"));
  EXPECT_THAT(sim->process().Output(), Not(HasSubstr("fell behind")));
  EXPECT_FALSE(reader->WaitClosed(absl::ZeroDuration()).has_value()) << "the reader is not cut: " << reader->close_reason();
  EXPECT_EQ(ip("127.0.0.42").value("ws_open", 0), 1);
}

TEST_F(SimWsTest, OurClientAnswersBinancesPingsAndTheStreamStaysOpen) {
  auto sim = StartSim({"--binance-ping-interval", "500ms", "--binance-pong-timeout", "2s"});
  ASSERT_NE(sim, nullptr);
  auto probe = Connect(*sim, "/stream?streams=btcusdt@trade", "127.0.0.35");
  ASSERT_TRUE(probe->WaitOpen(absl::Seconds(5)));
  // Eight pings come and go; without pongs the simulator closes at 2.5 s.
  EXPECT_FALSE(probe->WaitClosed(absl::Seconds(4)).has_value()) << "closed: " << probe->close_reason();
}

TEST_F(SimWsTest, BinanceSubscribeRateAndConnectionLimits) {
  auto sim = StartSim({"--limit", "binance_spot.WS_CONNECTIONS=3"});
  ASSERT_NE(sim, nullptr);
  auto chatty = Connect(*sim, "/ws", "127.0.0.32");
  ASSERT_TRUE(chatty->WaitOpen(absl::Seconds(5)));
  for (int i = 0; i < 6; ++i) {
    chatty->Send(absl::StrCat(R"({"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":)", i, "}"));
  }
  auto code = chatty->WaitClosed(absl::Seconds(5));
  ASSERT_TRUE(code.has_value()) << "the 6th message in a second disconnects";
  EXPECT_EQ(*code, 1008);
  // Two more connections from the same IP use the budget of 3 attempts...
  auto a = Connect(*sim, "/ws/btcusdt@trade", "127.0.0.32");
  auto b = Connect(*sim, "/ws/btcusdt@trade", "127.0.0.32");
  ASSERT_TRUE(a->WaitOpen(absl::Seconds(5)));
  ASSERT_TRUE(b->WaitOpen(absl::Seconds(5)));
  // ...so the 4th attempt is refused, while another IP connects.
  auto refused = Connect(*sim, "/ws/btcusdt@trade", "127.0.0.32");
  EXPECT_FALSE(refused->WaitOpen(absl::Seconds(5)));
  auto other = Connect(*sim, "/ws/btcusdt@trade", "127.0.0.33");
  EXPECT_TRUE(other->WaitOpen(absl::Seconds(5)));
  Json ip = (*sim->Stats())["exchanges"]["binance_spot"]["ips"]["127.0.0.32"];
  EXPECT_EQ(ip["ws_accepted"], 3);
  EXPECT_EQ(ip["ws_refused"], 1);
}

TEST_F(SimWsTest, OkxBooksPingAndConnectionRate) {
  auto sim = StartSim();
  ASSERT_NE(sim, nullptr);
  auto ws = Connect(*sim, "/ws/v5/public", "127.0.0.34");
  ASSERT_TRUE(ws->WaitOpen(absl::Seconds(5)));
  ws->Send("ping");
  ws->Send(R"({"op":"subscribe","args":[{"channel":"books","instId":"ETH-USDT"}]})");
  ASSERT_TRUE(ws->WaitMessages(12, absl::Seconds(15))) << ws->Messages().size() << " messages";
  std::vector<std::string> m = ws->Messages();
  EXPECT_EQ(m[0], "pong");
  EXPECT_EQ(Json::parse(m[1])["event"], "subscribe");
  int64_t last_seq = Json::parse(m[2])["data"][0]["prevSeqId"];
  for (size_t i = 2; i < m.size(); ++i) {
    Json push = Json::parse(m[i]);
    EXPECT_EQ(push["action"], "update") << "OKX sends no snapshot push since 2026";
    EXPECT_EQ(push["data"][0]["prevSeqId"].get<int64_t>(), last_seq);
    last_seq = push["data"][0]["seqId"];
  }
  // 3 connection requests per second per IP: the 4th within the second fails.
  std::vector<std::unique_ptr<WsProbe>> burst;
  for (int i = 0; i < 4; ++i) burst.push_back(Connect(*sim, "/ws/v5/public", "127.0.0.35"));
  int opened = 0;
  for (auto& p : burst) opened += p->WaitOpen(absl::Seconds(5)) ? 1 : 0;
  EXPECT_EQ(opened, 3);
}

TEST_F(SimWsTest, DroppedConnectionsFault) {
  auto sim = StartSim();
  ASSERT_NE(sim, nullptr);
  auto a = Connect(*sim, "/ws/btcusdt@trade", "127.0.0.37");
  auto b = Connect(*sim, "/ws/v5/public", "127.0.0.37");
  ASSERT_TRUE(a->WaitOpen(absl::Seconds(5)));
  ASSERT_TRUE(b->WaitOpen(absl::Seconds(5)));
  ASSERT_EQ(sim->Post("127.0.0.1", "/sim/ws/drop", "")->status, 200);
  auto code = a->WaitClosed(absl::Seconds(5));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, -1) << "dropped without a close frame";
  EXPECT_TRUE(b->WaitClosed(absl::Seconds(5)).has_value());
  auto c = Connect(*sim, "/ws/btcusdt@trade", "127.0.0.37");
  EXPECT_TRUE(c->WaitOpen(absl::Seconds(5))) << "new connections are fine";
  EXPECT_TRUE(c->WaitMessages(1, absl::Seconds(5)));
}

TEST_F(SimWsTest, DeribitSubscribeAndConnectionCap) {
  auto sim = StartSim();
  ASSERT_NE(sim, nullptr);
  std::vector<std::unique_ptr<WsProbe>> conns;
  for (int i = 0; i < 32; ++i) conns.push_back(Connect(*sim, "/ws/api/v2", "127.0.0.36"));
  for (auto& c : conns) ASSERT_TRUE(c->WaitOpen(absl::Seconds(5)));
  auto extra = Connect(*sim, "/ws/api/v2", "127.0.0.36");
  EXPECT_FALSE(extra->WaitOpen(absl::Seconds(5))) << "a 33rd connection from one IP";
  conns[0]->Send(
      R"({"jsonrpc":"2.0","id":1,"method":"public/subscribe","params":{"channels":["book.ETH-PERPETUAL.100ms"]}})");
  ASSERT_TRUE(conns[0]->WaitMessages(6, absl::Seconds(5)));
  std::vector<std::string> m = conns[0]->Messages();
  EXPECT_EQ(Json::parse(m[0])["result"][0], "book.ETH-PERPETUAL.100ms");
  int64_t last = -1;
  for (size_t i = 1; i < m.size(); ++i) {
    Json d = Json::parse(m[i])["params"]["data"];
    if (i > 1) EXPECT_EQ(d["prev_change_id"].get<int64_t>(), last);
    last = d["change_id"];
  }
  conns[1]->Close();
  ASSERT_TRUE(conns[1]->WaitClosed(absl::Seconds(5)).has_value());
  // The client has seen the close; wait for the server to free the slot.
  auto open_from_ip = [&] {
    auto stats = sim->Stats();
    if (!stats.ok()) return int64_t{-1};
    const Json& ips = (*stats)["exchanges"]["deribit"]["ips"];
    if (!ips.contains("127.0.0.36")) return int64_t{-1};
    return ips["127.0.0.36"].value("ws_open", int64_t{-1});
  };
  ASSERT_TRUE(WaitUntil([&] { return open_from_ip() == 31; }, absl::Seconds(5)))
      << "the server still holds " << open_from_ip() << " connections from 127.0.0.36";
  auto again = Connect(*sim, "/ws/api/v2", "127.0.0.36");
  EXPECT_TRUE(again->WaitOpen(absl::Seconds(5))) << "a slot freed by a close";
}

}  // namespace
}  // namespace marketprism::testing
