#include "tests/bench/sinks_bench.h"

#include <nats/nats.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/flags.h"
#include "common/net/ws_client.h"
#include "node/sinks/clickhouse_writer.h"
#include "node/sinks/nats_writer.h"
#include "node/sinks/sink_pipeline.h"
#include "tests/bench/direct_client.h"
#include "tests/bench/http_load.h"
#include "tests/testing/cluster.h"
#include "tests/testing/data_servers.h"
#include "tests/testing/wait.h"

namespace marketprism::bench {

namespace {

constexpr int kSymbols = 10;

// `n` trades with ids from `first`, spread over kSymbols symbols, keyed as
// the collector keys them.
std::vector<v1::MarketEvent> Trades(int64_t first, int64_t n) {
  std::vector<v1::MarketEvent> out;
  out.reserve(static_cast<size_t>(n));
  const int64_t t0 = absl::ToUnixMicros(absl::Now());
  for (int64_t id = first; id < first + n; ++id) {
    v1::MarketEvent& e = out.emplace_back();
    std::string symbol = absl::StrCat("SYM", id % kSymbols, "USDT");
    e.set_exchange("binance_spot");
    e.set_channel("trades");
    e.set_symbol(symbol);
    e.set_node_id("bench");
    e.set_exchange_time_us(t0 + id);
    e.set_received_time_us(t0 + id + 300);
    e.set_key(absl::StrCat("binance_spot/trades/", symbol, "/", id));
    v1::Trade* t = e.mutable_trade();
    t->set_trade_id(absl::StrCat(id));
    t->set_price(absl::StrCat("43210.", id % 100));
    t->set_quantity(absl::StrCat("0.0", id % 9 + 1, "5"));
    t->set_side(id % 2 ? v1::SIDE_BUY : v1::SIDE_SELL);
    t->set_sequence(id);
  }
  return out;
}

struct Rate {
  double per_second = 0;
  double seconds = 0;
};

absl::StatusOr<Rate> WriteDirect(node::RecordWriter& w, const std::vector<v1::MarketEvent>& records, size_t batch) {
  absl::Time start = absl::Now();
  for (size_t i = 0; i < records.size(); i += batch) {
    std::vector<v1::MarketEvent> b(records.begin() + static_cast<ptrdiff_t>(i),
                                   records.begin() + static_cast<ptrdiff_t>(std::min(records.size(), i + batch)));
    absl::Status s = w.Write(b);
    if (!s.ok()) return s;
  }
  double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return Rate{static_cast<double>(records.size()) / seconds, seconds};
}

// Through the node's whole path: Offer in the collector's small batches,
// the pipeline's queue, spool and batching, until every record is written.
absl::StatusOr<Rate> WritePipeline(std::unique_ptr<node::RecordWriter> w, const std::vector<v1::MarketEvent>& records,
                                   const std::string& spool_dir, int64_t* spooled_max) {
  node::SinkPipelineOptions o;
  o.spool_dir = spool_dir;
  auto p = node::SinkPipeline::Create(o, std::move(w), common::RealClock::Get());
  if (!p.ok()) return p.status();
  (*p)->Start();
  absl::Time start = absl::Now();
  constexpr size_t kOffer = 100;
  for (size_t i = 0; i < records.size(); i += kOffer) {
    (*p)->Offer(std::vector<v1::MarketEvent>(
        records.begin() + static_cast<ptrdiff_t>(i),
        records.begin() + static_cast<ptrdiff_t>(std::min(records.size(), i + kOffer))));
  }
  const int64_t n = static_cast<int64_t>(records.size());
  node::SinkStatus st;
  bool done = testing::WaitUntil(
      [&] {
        st = (*p)->Status();
        *spooled_max = std::max(*spooled_max, st.spool_records);
        return st.written_total >= n;
      },
      absl::Minutes(5));
  double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  (*p)->Stop();
  if (!done) return absl::DeadlineExceededError(absl::StrCat("the pipeline wrote ", st.written_total, " of ", n,
                                                             " records in 5 min: ", st.last_error));
  return Rate{static_cast<double>(n) / seconds, seconds};
}

int64_t Count(testing::ClickHouseServer& ch, const std::string& sql) {
  auto r = ch.Query(sql);
  int64_t n = -1;
  if (r.ok()) (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(*r), &n);
  return n;
}

int64_t StreamMessages(const std::string& url, const std::string& stream) {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  jsStreamInfo* si = nullptr;
  int64_t n = -1;
  if (natsConnection_ConnectTo(&nc, url.c_str()) == NATS_OK && natsConnection_JetStream(&js, nc, nullptr) == NATS_OK &&
      js_GetStreamInfo(&si, js, stream.c_str(), nullptr, nullptr) == NATS_OK) {
    n = static_cast<int64_t>(si->State.Msgs);
    jsStreamInfo_Destroy(si);
  }
  if (js != nullptr) jsCtx_Destroy(js);
  if (nc != nullptr) natsConnection_Destroy(nc);
  return n;
}

double Round(double v) { return std::round(v); }

// The key a latency sample is matched by: DirectClient's.
DirectClient::Key KeyOf(const std::string& symbol, bool trade, const std::string& id) {
  return {symbol, absl::StrCat(trade ? "t" : "u", id)};
}

// When each record was first readable at a store.
class Arrivals {
 public:
  void Saw(DirectClient::Key key, absl::Time at) {
    absl::MutexLock lock(&mu_);
    at_.emplace(std::move(key), at);
  }
  std::map<DirectClient::Key, absl::Time> Get() {
    absl::MutexLock lock(&mu_);
    return at_;
  }

 private:
  absl::Mutex mu_;
  std::map<DirectClient::Key, absl::Time> at_ ABSL_GUARDED_BY(mu_);
};

void OnNatsMsg(natsConnection*, natsSubscription*, natsMsg* m, void* closure) {
  absl::Time at = absl::Now();
  v1::MarketEvent e;
  if (e.ParseFromArray(natsMsg_GetData(m), natsMsg_GetDataLength(m))) {
    if (e.has_trade()) {
      static_cast<Arrivals*>(closure)->Saw(KeyOf(e.symbol(), true, e.trade().trade_id()), at);
    } else if (e.has_book() && !e.book().snapshot()) {
      static_cast<Arrivals*>(closure)->Saw(KeyOf(e.symbol(), false, absl::StrCat(e.book().last_update_id())), at);
    }
  }
  natsMsg_Destroy(m);
}

// Polls ClickHouse every 10 ms for trades and book updates not seen yet.
void PollClickHouse(testing::ClickHouseServer& ch, const std::string& db, std::atomic<bool>& stop, Arrivals& out) {
  int64_t since_us = 0;
  while (!stop.load()) {
    int64_t newest = since_us;
    for (bool trade : {true, false}) {
      auto r = ch.Query(absl::StrCat("SELECT symbol, ", trade ? "trade_id" : "toString(last_update_id)",
                                     ", received_time_us FROM ", db, trade ? ".trades" : ".book_updates",
                                     " WHERE received_time_us > ", since_us - 2000000));
      absl::Time at = absl::Now();
      if (!r.ok()) continue;
      for (absl::string_view line : absl::StrSplit(*r, '\n', absl::SkipEmpty())) {
        std::vector<std::string> f = absl::StrSplit(line, '\t');
        int64_t received = 0;
        if (f.size() != 3 || !absl::SimpleAtoi(f[2], &received)) continue;
        newest = std::max(newest, received);
        out.Saw(KeyOf(f[0], trade, f[1]), at);
      }
    }
    since_us = newest;
    absl::SleepFor(absl::Milliseconds(10));
  }
}

nlohmann::ordered_json LagFigures(const char* sink, const std::map<DirectClient::Key, absl::Time>& direct,
                                  const std::map<DirectClient::Key, absl::Time>& seen, absl::Time from, absl::Time to) {
  std::vector<double> ms;
  int64_t missing = 0;
  for (const auto& [key, sent] : direct) {
    if (sent < from || sent > to) continue;
    auto it = seen.find(key);
    if (it == seen.end()) {
      ++missing;
      continue;
    }
    ms.push_back(absl::ToDoubleMilliseconds(it->second - sent));
  }
  nlohmann::ordered_json j = {{"bench", "sinks_lag"}, {"sink", sink}, {"records", ms.size()}, {"missing", missing}};
  if (!ms.empty()) {
    j["lag_ms_p50"] = std::round(Percentile(ms, 50) * 10) / 10;
    j["lag_ms_p99"] = std::round(Percentile(ms, 99) * 10) / 10;
    j["lag_ms_max"] = std::round(*std::max_element(ms.begin(), ms.end()) * 10) / 10;
  }
  return j;
}

}  // namespace

int RunSinksBench(const std::vector<std::string>& args) {
  int64_t records = 500000;
  int64_t batch = 5000;
  absl::Duration measure = absl::Seconds(20);
  std::string root = absl::StrCat("/tmp/mp-bench-sinks-", getpid());
  common::FlagSet f("mp-bench sinks",
                    "records into ClickHouse and JetStream from one node's sink code (writer alone and the whole "
                    "pipeline), repeats written again, and the lag from the simulator's send to a readable record");
  f.Int("records", &records, "records per measurement");
  f.Int("batch", &batch, "records per write for the writer alone (the pipeline's batch is 5,000)");
  f.Duration("measure", &measure, "how long to measure the lag once records flow (0: skip the lag)");
  f.String("dir", &root, "where the servers keep their data (removed at the end)");
  auto rest = f.Parse(args);
  if (f.help_requested()) return std::fputs(f.Help().c_str(), stdout) < 0;
  if (!rest.ok()) return common::ExitCodeFor("mp-bench sinks", rest.status());
  if (records < 1 || batch < 1) return common::ExitCodeFor("mp-bench sinks", absl::InvalidArgumentError("--records and --batch must be at least 1"));
  if (!testing::NatsServer::Available() || !testing::ClickHouseServer::Available()) {
    return common::ExitCodeFor("mp-bench sinks", absl::FailedPreconditionError(
                                                     "needs nats-server and clickhouse-server (Debian packages)"));
  }
  std::filesystem::remove_all(root);
  std::filesystem::create_directories(root);
  auto nats = testing::NatsServer::Start(root + "/nats");
  if (!nats.ok()) return common::ExitCodeFor("mp-bench sinks", nats.status());
  auto ch = testing::ClickHouseServer::Start(root + "/clickhouse");
  if (!ch.ok()) return common::ExitCodeFor("mp-bench sinks", ch.status());
  int failed = 0;

  // Writer alone, then the pipeline, then the writer's records again.
  std::vector<v1::MarketEvent> first = Trades(0, records);
  std::vector<v1::MarketEvent> second = Trades(records, records);
  auto report = [&](const char* sink, const char* path, absl::StatusOr<Rate> r, double target, int64_t stored,
                    int64_t expected, int64_t spooled) {
    nlohmann::ordered_json j = {{"bench", "sinks_write"}, {"sink", sink}, {"path", path}, {"records", records}};
    if (!r.ok()) {
      j["error"] = std::string(r.status().message());
      ++failed;
    } else {
      j["per_second"] = Round(r->per_second);
      j["seconds"] = std::round(r->seconds * 100) / 100;
      j["target_per_second"] = target;
    }
    j["stored_after"] = stored;
    j["stored_expected"] = expected;
    if (spooled >= 0) j["spooled_max"] = spooled;
    if (stored != expected) ++failed;
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
  };

  {
    node::ClickHouseOptions o;
    o.url = (*ch)->url();
    o.database = "bench";
    node::ClickHouseWriter w(o);
    auto r = WriteDirect(w, first, static_cast<size_t>(batch));
    report("clickhouse", "writer", r, 200000, Count(**ch, "SELECT count() FROM bench.trades FINAL"), records, -1);
    int64_t spooled = 0;
    auto p = WritePipeline(std::make_unique<node::ClickHouseWriter>(o), second, root + "/spool-ch", &spooled);
    report("clickhouse", "pipeline", p, 200000, Count(**ch, "SELECT count() FROM bench.trades FINAL"), 2 * records,
           spooled);
    auto again = WriteDirect(w, first, static_cast<size_t>(batch));
    report("clickhouse", "writer, the same records again", again, 200000,
           Count(**ch, "SELECT count() FROM bench.trades FINAL"), 2 * records, -1);
  }
  {
    node::NatsOptions o;
    o.servers = {(*nats)->url()};
    node::NatsWriter w(o);
    auto r = WriteDirect(w, first, static_cast<size_t>(batch));
    report("nats", "writer", r, 100000, StreamMessages((*nats)->url(), o.stream), records, -1);
    int64_t spooled = 0;
    auto p = WritePipeline(std::make_unique<node::NatsWriter>(o), second, root + "/spool-nats", &spooled);
    report("nats", "pipeline", p, 100000, StreamMessages((*nats)->url(), o.stream), 2 * records, spooled);
    auto again = WriteDirect(w, first, static_cast<size_t>(batch));
    report("nats", "writer, the same records again", again, 100000, StreamMessages((*nats)->url(), o.stream),
           2 * records, -1);
    w.Close();
  }

  if (measure > absl::ZeroDuration()) {
    const std::vector<std::string> symbols = {"BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"};
    std::string list = absl::StrCat("[\"", absl::StrJoin(symbols, "\", \""), "\"]");
    std::string jobs = root + "/jobs.json";
    std::ofstream(jobs) << absl::StrCat(R"({"jobs": [
      {"name": "trades", "exchange": "binance_spot", "channel": "trades", "symbols": )", list, R"(},
      {"name": "books", "exchange": "binance_spot", "channel": "book", "symbols": )", list, "}]}");
    testing::ClusterOptions o;
    o.nodes = 1;
    o.exchanges = {"binance_spot"};
    o.coordinator_flags = {"--jobs", jobs};
    o.node_flags = {"--exchange", "binance_spot", "--sink", "nats=" + (*nats)->url(), "--sink",
                    "clickhouse=" + (*ch)->url() + "/?database=lag", "--spool-dir", root + "/spool-lag"};
    auto c = testing::Cluster::Start(o);
    if (!c.ok()) return common::ExitCodeFor("mp-bench sinks", c.status());
    DirectClient direct;
    Arrivals at_nats, at_ch;
    natsConnection* nc = nullptr;
    natsSubscription* sub = nullptr;
    if (natsConnection_ConnectTo(&nc, (*nats)->url().c_str()) != NATS_OK ||
        natsConnection_Subscribe(&sub, nc, ">", OnNatsMsg, &at_nats) != NATS_OK) {
      return common::ExitCodeFor("mp-bench sinks", absl::UnavailableError("cannot subscribe to NATS"));
    }
    auto ws = common::LwsWsClient::Create();
    if (!ws.ok()) return common::ExitCodeFor("mp-bench sinks", ws.status());
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
    if (!conn.ok()) return common::ExitCodeFor("mp-bench sinks", conn.status());
    std::atomic<bool> stop{false};
    std::thread poller([&] { PollClickHouse(**ch, "lag", stop, at_ch); });
    bool flowing = testing::WaitUntil(
        [&] { return at_ch.Get().size() > 50 && at_nats.Get().size() > 50 && direct.arrivals().size() > 50; },
        absl::Seconds(30));
    absl::Time from = absl::Now();
    if (flowing) absl::SleepFor(measure);
    absl::Time to = absl::Now();
    // Records sent at the end get a second to land before the count.
    absl::SleepFor(absl::Seconds(1));
    stop.store(true);
    poller.join();
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(nc);
    if (!flowing) {
      std::printf("%s\n", nlohmann::ordered_json({{"bench", "sinks_lag"}, {"error", "records did not flow within 30 s"}})
                              .dump()
                              .c_str());
      ++failed;
    } else {
      std::map<DirectClient::Key, absl::Time> sent = direct.arrivals();
      std::printf("%s\n", LagFigures("nats", sent, at_nats.Get(), from, to).dump().c_str());
      std::printf("%s\n", LagFigures("clickhouse", sent, at_ch.Get(), from, to).dump().c_str());
    }
  }
  ch->reset();
  nats->reset();
  std::filesystem::remove_all(root);
  return failed == 0 ? 0 : 1;
}

}  // namespace marketprism::bench
