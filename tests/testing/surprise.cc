#include "tests/testing/surprise.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "tests/testing/cluster.h"
#include "tests/testing/wait.h"

namespace marketprism::testing {
namespace {

using Json = nlohmann::json;

// The shipped rules with Binance spot's REQUEST_WEIGHT window shortened.
absl::StatusOr<std::string> ShortWindowRules(const SurpriseOptions& o) {
  std::ifstream in(o.rules_file);
  if (!in) return absl::NotFoundError(absl::StrCat(o.rules_file, ": cannot open rules file"));
  Json rules = Json::parse(in, nullptr, false);
  if (rules.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(o.rules_file, ": not JSON"));
  for (Json& pool : rules["exchanges"]["binance_spot"]["pools"]) {
    if (pool["name"] != "REQUEST_WEIGHT") continue;
    pool["seconds"] = o.window_seconds;
    pool["published_as"]["interval"] = "SECOND";  // as exchangeInfo then says it
    pool["published_as"]["intervalNum"] = o.window_seconds;
  }
  std::string path = absl::StrCat("/tmp/mp_short_window_rules_", getpid(), ".json");
  std::ofstream(path) << rules.dump();
  return path;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Cluster>> StartShortWindowCluster(const SurpriseOptions& o) {
  MP_ASSIGN_OR_RETURN(std::string rules, ShortWindowRules(o));
  ClusterOptions c;
  c.nodes = o.nodes;
  c.exchanges = {"binance_spot"};
  c.sim_flags = {"--rules", rules, "--limit", absl::StrCat("binance_spot.REQUEST_WEIGHT=", o.capacity)};
  c.coordinator_flags = {"--rules", rules};
  c.node_flags = {"--rules", rules, "--exchange", "binance_spot"};
  for (const std::string& f : o.cluster_flags) {
    c.coordinator_flags.push_back(f);
    c.node_flags.push_back(f);
  }
  return Cluster::Start(std::move(c));
}

namespace {

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
          if (c.Execute(Mix(i), &resp, absl::Seconds(2)).ok()) ok_.fetch_add(1);
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

IpCount CountOf(const Json& stats, const std::string& ip) {
  const Json& e = stats["exchanges"]["binance_spot"]["ips"][ip];
  IpCount c;
  c.ip = ip;
  if (e.is_null()) return c;
  c.refused_429 = e["rejections"].value("429", 0);
  c.banned_418 = e["rejections"].value("418", 0);
  const Json& windows = e["pools"]["REQUEST_WEIGHT"]["windows"];
  if (!windows.empty()) c.last_window_used = windows.back()["used"];
  return c;
}

// Every member's log lines about refusals and published limits, by member.
std::string RefusalLog(Cluster& c, int nodes) {
  std::string out;
  auto grep = [&out](const std::string& who, const std::string& log) {
    for (absl::string_view line : absl::StrSplit(log, '\n')) {
      if (absl::StrContains(line, "HTTP 429") || absl::StrContains(line, "publishes") ||
          absl::StrContains(line, "refused ")) {
        absl::StrAppend(&out, who, ": ", line, "\n");
      }
    }
  };
  grep("coordinator", c.coordinator().Output());
  for (int i = 0; i < nodes; ++i) grep(c.egress_ip(i), c.node(i).Output());
  return out;
}

int64_t WindowNow(const SurpriseOptions& o) { return absl::ToUnixSeconds(absl::Now()) / o.window_seconds; }

// Until every IP has spent (nearly) its whole window: saturated.
absl::Status WaitSaturated(Cluster& c, const SurpriseOptions& o) {
  bool saturated = WaitUntil(
      [&] {
        auto stats = c.sim().Stats();
        if (!stats.ok()) return false;
        for (int i = 0; i < o.nodes; ++i) {
          const Json& ip = (*stats)["exchanges"]["binance_spot"]["ips"][c.egress_ip(i)];
          if (ip.is_null() || ip["pools"]["REQUEST_WEIGHT"]["used"].get<int64_t>() < o.capacity - 10) return false;
        }
        return true;
      },
      absl::Seconds(2 * o.window_seconds + 5));
  if (saturated) return absl::OkStatus();
  auto stats = c.sim().Stats();
  return absl::DeadlineExceededError(absl::StrCat("the cluster never saturated: ", stats.ok() ? stats->dump() : ""));
}

// The REQUEST_WEIGHT capacity the coordinator shows for each node.
bool EveryIpAt(Cluster& c, int64_t capacity) {
  grpc::ClientContext ctx;
  v1::GetStatusResponse s;
  if (!c.stub().GetStatus(&ctx, {}, &s).ok()) return false;
  for (const auto& n : s.nodes()) {
    for (const auto& p : n.pools()) {
      if (p.exchange() == "binance_spot" && p.pool() == "REQUEST_WEIGHT" && p.capacity() != capacity) return false;
    }
  }
  return s.nodes_size() > 0;
}

}  // namespace

absl::StatusOr<LoweredLimitResult> RunLoweredLimit(const SurpriseOptions& o, int64_t lowered_to) {
  MP_ASSIGN_OR_RETURN(std::unique_ptr<Cluster> c, StartShortWindowCluster(o));
  Saturate load(*c, o.nodes * o.clients_per_node);
  MP_RETURN_IF_ERROR(WaitSaturated(*c, o));
  // The exchange lowers its limit without notice (its exchangeInfo says so,
  // but the cluster reads that only every 10 minutes, or after a refusal).
  absl::Time lowered = absl::Now();
  MP_ASSIGN_OR_RETURN(common::HttpReply posted,
                      c->sim().Post("127.0.0.1", "/sim/limits",
                                    absl::StrCat(R"({"binance_spot.REQUEST_WEIGHT": )", lowered_to, "}")));
  if (posted.status != 200) return absl::InternalError("POST /sim/limits: " + posted.body);
  int64_t lowered_in = WindowNow(o);
  LoweredLimitResult result;
  if (WaitUntil([&] { return EveryIpAt(*c, lowered_to); }, absl::Seconds(3 * o.window_seconds))) {
    result.adopted_after = absl::Now() - lowered;
  }
  // The window of the drop, the one that meets the new limit, the one that spends it.
  WaitUntil([&] { return WindowNow(o) >= lowered_in + 3; }, absl::Seconds(4 * o.window_seconds));
  result.calls_ok = load.Stop();
  MP_ASSIGN_OR_RETURN(Json stats, c->sim().Stats());
  for (int i = 0; i < o.nodes; ++i) result.ips.push_back(CountOf(stats, c->egress_ip(i)));
  result.sim_stats = stats.dump();
  result.refusal_log = RefusalLog(*c, o.nodes);
  return result;
}

absl::StatusOr<ForeignClientResult> RunForeignClient(const SurpriseOptions& o, int windows, int64_t foreign_weight,
                                                     absl::Duration delay) {
  MP_ASSIGN_OR_RETURN(std::unique_ptr<Cluster> c, StartShortWindowCluster(o));
  std::string victim = c->egress_ip(0);
  Saturate load(*c, o.nodes * o.clients_per_node);
  ForeignClientResult result;
  int64_t first = WindowNow(o) + 1;
  for (int64_t w = first; w < first + windows; ++w) {
    absl::Time start = absl::FromUnixSeconds(w * o.window_seconds) + delay;
    if (absl::Now() < start) absl::SleepFor(start - absl::Now());  // the top of the window: when it acts
    for (int64_t spent = 0; spent < foreign_weight; spent += 5) {
      auto r = c->sim().Get(victim, "/api/v3/depth?symbol=BTCUSDT&limit=100");
      if (!r.ok()) continue;
      if (r->status == 429 || r->status == 418) {
        ++result.foreign_refused;
        break;
      }
      ++result.foreign_ok;
    }
  }
  WaitUntil([&] { return WindowNow(o) >= first + windows; }, absl::Seconds(2 * o.window_seconds));
  result.calls_ok = load.Stop();
  MP_ASSIGN_OR_RETURN(Json stats, c->sim().Stats());
  result.victim = CountOf(stats, victim);
  for (int i = 1; i < o.nodes; ++i) result.others.push_back(CountOf(stats, c->egress_ip(i)));
  result.sim_stats = stats.dump();
  grpc::ClientContext ctx;
  v1::GetStatusResponse status;
  if (c->stub().GetStatus(&ctx, {}, &status).ok()) {
    for (const auto& n : status.nodes()) {
      for (const auto& l : n.lanes()) {
        if (n.egress_ip() == victim && l.exchange() == "binance_spot") result.foreign_seen = l.foreign_units();
      }
    }
  }
  return result;
}

}  // namespace marketprism::testing
