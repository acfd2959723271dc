// mp-bench latency:   Execute's overhead over a direct libcurl request.
// mp-bench admission: percentiles of a node's admission decision.
// mp-bench memory:    resident size of an idle node, and of a coordinator
//                     with 100 registered nodes.
#include "tests/bench/latency_bench.h"

#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <fstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/budget/budget_book.h"
#include "common/flags.h"
#include "common/net/curl_http_client.h"
#include "marketprism/v1/node.grpc.pb.h"
#include "tests/bench/http_load.h"
#include "tests/testing/cluster.h"
#include <nlohmann/json.hpp>

namespace marketprism::bench {

namespace {

double Micros(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

int64_t RssKb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      int64_t kb = 0;
      (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(6, line.size() - 9)), &kb);
      return kb;
    }
  }
  return -1;
}

}  // namespace

int RunLatencyBench(const std::vector<std::string>& args) {
  int64_t samples = 3000;
  common::FlagSet f("mp-bench latency", "Execute's overhead over a direct libcurl request");
  f.Int("samples", &samples, "sequential requests per path");
  auto rest = f.Parse(args);
  if (f.help_requested()) return std::fputs(f.Help().c_str(), stdout) < 0;
  if (!rest.ok()) return common::ExitCodeFor("mp-bench latency", rest.status());
  testing::ClusterOptions o;
  o.nodes = 1;
  o.exchanges = {"binance_spot"};
  o.node_flags = {"--exchange", "binance_spot"};
  o.sim_flags = {"--limit", "binance_spot.REQUEST_WEIGHT=2000000000", "--limit", "binance_spot.RAW_REQUESTS=2000000000"};
  auto cluster = testing::Cluster::Start(o);
  if (!cluster.ok()) return common::ExitCodeFor("mp-bench latency", cluster.status());
  testing::Cluster& c = **cluster;

  grpc::ClientContext lctx;
  v1::ListNodesResponse nodes;
  grpc::Status ls = c.stub().ListNodes(&lctx, v1::ListNodesRequest(), &nodes);
  if (!ls.ok() || nodes.nodes_size() == 0) {
    return common::ExitCodeFor("mp-bench latency", absl::UnavailableError("no node listed"));
  }
  auto node = v1::Node::NewStub(
      grpc::CreateChannel(nodes.nodes(0).grpc_address(), grpc::InsecureChannelCredentials()));

  // Four paths, timed in turn within each round so that the machine's drift
  // falls on all of them alike:
  //  d: libcurl straight to the simulator (what Execute's overhead is over);
  //  e: Execute through the coordinator and the node;
  //  n: Dispatch straight to the node (its hop, admission, the exchange);
  //  g: GetStatus, a coordinator round trip touching no exchange (the floor
  //     under each of Execute's two gRPC hops).
  common::CurlHttpClient direct(common::CurlHttpOptions{.source_ip = "127.0.0.20"});
  common::HttpRequestSpec req;
  req.url = c.sim().base_url() + "/api/v3/ping";
  v1::ExecuteRequest er = testing::MakeRequest("binance_spot", "/api/v3/ping");
  v1::DispatchRequest dr;
  dr.set_exchange("binance_spot");
  dr.set_method("GET");
  dr.set_path("/api/v3/ping");
  dr.set_term(1);
  std::vector<double> d, e, n, g;
  int64_t failures = 0;
  auto time = [](auto&& call, std::vector<double>* into, bool keep, int64_t* failures) {
    auto t0 = std::chrono::steady_clock::now();
    bool ok = call();
    double us = Micros(std::chrono::steady_clock::now() - t0);
    if (!ok) ++*failures;
    if (ok && keep) into->push_back(us);
  };
  constexpr int64_t kWarmup = 200;
  for (int64_t i = 0; i < samples + kWarmup; ++i) {
    bool keep = i >= kWarmup;
    time([&] { return direct.Send(req).ok(); }, &d, keep, &failures);
    time([&] {
      v1::ExecuteResponse resp;
      return c.Execute(er, &resp).ok();
    }, &e, keep, &failures);
    time([&] {
      grpc::ClientContext ctx;
      v1::DispatchResponse resp;
      return node->Dispatch(&ctx, dr, &resp).ok() && resp.outcome() == v1::DispatchResponse::REPLIED;
    }, &n, keep, &failures);
    time([&] {
      grpc::ClientContext ctx;
      v1::GetStatusResponse resp;
      return c.stub().GetStatus(&ctx, v1::GetStatusRequest(), &resp).ok();
    }, &g, keep, &failures);
  }
  double d50 = Percentile(d, 50), d99 = Percentile(d, 99), e50 = Percentile(e, 50), e99 = Percentile(e, 99);
  nlohmann::ordered_json j = {{"bench", "execute_latency"}, {"samples", samples},
                              {"direct_p50_us", std::round(d50)}, {"direct_p99_us", std::round(d99)},
                              {"execute_p50_us", std::round(e50)}, {"execute_p99_us", std::round(e99)},
                              {"overhead_p50_us", std::round(e50 - d50)}, {"overhead_p99_us", std::round(e99 - d99)},
                              {"grpc_status_p50_us", std::round(Percentile(g, 50))},
                              {"grpc_status_p99_us", std::round(Percentile(g, 99))},
                              {"node_dispatch_p50_us", std::round(Percentile(n, 50))},
                              {"node_dispatch_p99_us", std::round(Percentile(n, 99))},
                              {"failures", failures}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

int RunAdmissionBench(const std::vector<std::string>& args) {
  int64_t samples = 1'000'000;
  common::FlagSet f("mp-bench admission", "percentiles of a node's admission decision");
  f.Int("samples", &samples, "decisions to time one by one");
  auto rest = f.Parse(args);
  if (f.help_requested()) return std::fputs(f.Help().c_str(), stdout) < 0;
  if (!rest.ok()) return common::ExitCodeFor("mp-bench admission", rest.status());
  auto rules = common::RulesBook::LoadDefault();
  if (!rules.ok()) return common::ExitCodeFor("mp-bench admission", rules.status());
  (void)rules->ApplyLimitOverride("binance_spot.REQUEST_WEIGHT=2000000000");
  (void)rules->ApplyLimitOverride("binance_spot.RAW_REQUESTS=2000000000");
  const common::ExchangeRules& ex = *rules->Find("binance_spot");
  common::BudgetBook book(ex, absl::Milliseconds(1));
  absl::Time t = absl::FromUnixSeconds(1'795'046'401);
  std::vector<double> us;
  us.reserve(static_cast<size_t>(samples));
  int64_t used = 0;
  for (int64_t i = 0; i < samples; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    // What the node does per request: price it, check, charge.
    auto cost = ex.Price("GET", "/api/v3/depth", {{"symbol", "BTCUSDT"}, {"limit", "100"}});
    bool fits = book.Fits(t, *cost);
    auto ticket = book.Charge(t, *cost);
    auto t1 = std::chrono::steady_clock::now();
    benchmark_sink(fits);
    used += 5;
    book.Complete(ticket, t, std::make_pair(0, used));
    t += absl::Nanoseconds(100);
    us.push_back(Micros(t1 - t0));
  }
  double p50 = Percentile(us, 50), p99 = Percentile(us, 99), p999 = Percentile(us, 99.9);
  nlohmann::ordered_json j = {{"bench", "node_admission"}, {"samples", samples},
                              {"p50_us", p50}, {"p99_us", p99}, {"p999_us", p999}, {"max_us", us.back()}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

int RunMemoryBench(const std::vector<std::string>& args) {
  int64_t fake_nodes = 100;
  common::FlagSet f("mp-bench memory", "resident size of an idle node and of a loaded coordinator");
  f.Int("nodes", &fake_nodes, "nodes registered with the coordinator");
  auto rest = f.Parse(args);
  if (f.help_requested()) return std::fputs(f.Help().c_str(), stdout) < 0;
  if (!rest.ok()) return common::ExitCodeFor("mp-bench memory", rest.status());
  testing::ClusterOptions o;
  o.nodes = 1;
  auto cluster = testing::Cluster::Start(o);
  if (!cluster.ok()) return common::ExitCodeFor("mp-bench memory", cluster.status());
  testing::Cluster& c = **cluster;
  absl::SleepFor(absl::Seconds(2));
  int64_t node_kb = RssKb(c.node(0).pid());
  int64_t coordinator_one = RssKb(c.coordinator().pid());
  // Register N more nodes, each a real Session stream with a full usage report.
  auto channel = grpc::CreateChannel(c.coordinator_address(), grpc::InsecureChannelCredentials());
  auto stub = v1::NodeControl::NewStub(channel);
  struct Session {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReaderWriter<v1::NodeMessage, v1::CoordinatorMessage>> stream;
  };
  std::vector<std::unique_ptr<Session>> sessions;
  for (int64_t i = 0; i < fake_nodes; ++i) {
    auto s = std::make_unique<Session>();
    s->stream = stub->Session(&s->ctx);
    v1::NodeMessage m;
    v1::Register* r = m.mutable_register_();
    r->set_node_id(absl::StrCat("fake-", i));
    r->set_egress_ip(absl::StrCat("10.", i / 250, ".", i % 250, ".1"));
    r->set_grpc_address("127.0.0.1:1");
    r->set_version("bench");
    for (const char* e : {"binance_spot", "binance_usdm", "okx", "deribit"}) {
      r->add_exchanges(e);
      v1::ClockEstimate* ce = r->add_clocks();
      ce->set_exchange(e);
      ce->set_uncertainty_us(500);
    }
    s->stream->Write(m);
    v1::CoordinatorMessage reply;
    s->stream->Read(&reply);
    sessions.push_back(std::move(s));
  }
  absl::SleepFor(absl::Seconds(2));
  grpc::ClientContext ctx;
  v1::GetStatusResponse status;  // also touches every node's ledgers
  (void)c.stub().GetStatus(&ctx, {}, &status);
  int64_t coordinator_kb = RssKb(c.coordinator().pid());
  nlohmann::ordered_json j = {{"bench", "memory"},
                              {"idle_node_rss_kb", node_kb},
                              {"coordinator_rss_kb_1_node", coordinator_one},
                              {"coordinator_rss_kb", coordinator_kb},
                              {"coordinator_registered_nodes", status.nodes_size()}};
  std::printf("%s\n", j.dump().c_str());
  for (auto& s : sessions) s->ctx.TryCancel();
  return 0;
}

}  // namespace marketprism::bench
