// mpctl: talks to a coordinator.
//
//   mpctl [--coordinator ADDR:PORT] [--json] status
//   mpctl health | nodes | drain NODE [--undrain]
//     (nodes: with gossip, every member with its gossip state, incarnation
//     and when it was last heard; any coordinator answers)
//   mpctl exec EXCHANGE METHOD PATH [key=value ...] [--priority N] [--body JSON]
//             [--header NAME:VALUE ...]
//   mpctl jobs [create FILE | delete NAME] | tail EXCHANGE CHANNEL [SYMBOL ...]
//     (cli/collect_commands.h)
//
// Tables by default; --json prints the reply as JSON for scripts.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "cli/collect_commands.h"
#include "common/flags.h"
#include "google/protobuf/util/json_util.h"
#include "marketprism/v1/coordinator.grpc.pb.h"

namespace {

namespace v1 = marketprism::v1;

// A plain-text table with columns as wide as their widest cell.
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string Render() const {
    std::vector<size_t> width;
    for (const auto& r : rows_) {
      width.resize(std::max(width.size(), r.size()));
      for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
    }
    std::string out;
    for (const auto& r : rows_) {
      std::string line;
      for (size_t i = 0; i < r.size(); ++i) {
        line += r[i];
        if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
      }
      out += line + "\n";
    }
    return out;
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

std::string Json(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

std::string Ago(int64_t ms) {
  if (ms <= 0) return "-";
  int64_t d = absl::ToUnixMillis(absl::Now()) - ms;
  return d < 1000 ? absl::StrCat(d, "ms ago") : absl::StrCat(d / 1000, "s ago");
}

int Fail(const grpc::Status& s) {
  std::fprintf(stderr, "mpctl: error: %s (%s)\n", s.error_message().c_str(),
               s.error_code() == grpc::StatusCode::UNAVAILABLE ? "is the coordinator running?"
                                                               : absl::StrCat("code ", s.error_code()).c_str());
  return s.error_code() == grpc::StatusCode::INVALID_ARGUMENT ? 2 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace marketprism;
  std::string coordinator = "127.0.0.1:7000", body;
  bool json = false, undrain = false;
  int64_t priority = 0;
  absl::Duration timeout = absl::Seconds(30);
  common::FlagSet f("mpctl",
                    "talks to a coordinator: status | health | nodes | drain NODE | "
                    "exec EXCHANGE METHOD PATH [key=value ...] | jobs [create FILE | delete NAME] | "
                    "tail EXCHANGE CHANNEL [SYMBOL ...]");
  f.String("coordinator", &coordinator, "the coordinator's ADDR:PORT");
  f.Bool("json", &json, "print replies as JSON");
  f.Duration("timeout", &timeout, "deadline of the call");
  f.Int("priority", &priority, "exec: higher goes first");
  f.String("body", &body, "exec: request body (Deribit JSON-RPC over POST)");
  std::vector<std::string> headers;
  f.List("header", &headers, "exec: NAME:VALUE sent to the exchange (repeatable), e.g. X-MBX-APIKEY:<key> for orders");
  f.Bool("undrain", &undrain, "drain: put the node back in rotation");
  auto args = f.ParseWithSources({argv + 1, argv + argc}, "MP_", common::ProcessEnvironment());
  if (f.help_requested()) {
    std::fputs(f.Help().c_str(), stdout);
    return 0;
  }
  if (!args.ok()) return common::ExitCodeFor("mpctl", args.status());
  if (args->empty()) {
    std::fputs(f.Help().c_str(), stderr);
    return 2;
  }
  auto channel = grpc::CreateChannel(coordinator, grpc::InsecureChannelCredentials());
  if (args->front() == "jobs") return cli::RunJobs(channel, *args, json, timeout);
  if (args->front() == "tail") return cli::RunTail(channel, *args, json);
  auto stub = v1::Coordinator::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
  const std::string& cmd = args->front();

  if (cmd == "status") {
    v1::GetStatusResponse r;
    grpc::Status s = stub->GetStatus(&ctx, {}, &r);
    if (!s.ok()) return Fail(s);
    if (json) return std::printf("%s", Json(r).c_str()) < 0;
    std::printf("mode %s, %d of %d egress IPs available, success rate %.1f%%, %ld queued\n\n",
                r.mode().c_str(), r.available_ips(), r.total_ips(), r.success_rate() * 100,
                static_cast<long>(r.queued()));
    Table t({"NODE", "EGRESS", "STATE", "EXCHANGE", "POOL", "USED", "RESERVED", "CAPACITY", "USE", "BAN"});
    for (const v1::NodeStatus& n : r.nodes()) {
      std::vector<std::string> bans;
      for (const v1::Ban& b : n.bans()) {
        bans.push_back(absl::StrCat(b.exchange(), " ", b.kind(), " ",
                                    (b.until_ms() - r.server_time_ms() + 999) / 1000, "s"));
      }
      bool any = false;
      for (const v1::PoolUsage& p : n.pools()) {
        // A node's lease of an account pool shows while it holds a share.
        bool lease = absl::StartsWith(p.scope_key(), "account:");
        if (p.used() == 0 && p.reserved() == 0 && !(lease && p.capacity() > 0)) continue;
        any = true;
        std::string pool = lease ? absl::StrCat(p.pool(), " (lease, ", p.scope_key(), ")") : p.pool();
        t.Add({n.node_id(), n.egress_ip(), n.state(), p.exchange(), pool, absl::StrCat(p.used()),
               absl::StrCat(p.reserved()), absl::StrCat(p.capacity()),
               absl::StrFormat("%.0f%%", 100.0 * p.used() / std::max<int64_t>(1, p.capacity())),
               absl::StrJoin(bans, "; ")});
      }
      if (!any) t.Add({n.node_id(), n.egress_ip(), n.state(), "-", "-", "0", "0", "-", "0%", absl::StrJoin(bans, "; ")});
    }
    std::printf("%s", t.Render().c_str());
    Table sinks({"NODE", "SINK", "STATE", "WRITTEN", "QUEUED", "SPOOLED", "SPOOL BYTES", "SPOOL AGE", "DROPPED", "ERROR"});
    bool any_sink = false;
    for (const v1::NodeStatus& n : r.nodes()) {
      for (const v1::SinkState& k : n.sinks()) {
        any_sink = true;
        sinks.Add({n.node_id(), k.name(), k.healthy() ? "writing" : "failing", absl::StrCat(k.written_total()),
                   absl::StrCat(k.queued()), absl::StrCat(k.spool_records()), absl::StrCat(k.spool_bytes()),
                   absl::StrCat(k.spool_age_ms() / 1000, "s"), absl::StrCat(k.dropped_total()),
                   k.healthy() ? "" : k.last_error()});
      }
    }
    if (any_sink) std::printf("\n%s", sinks.Render().c_str());
    return 0;
  }
  if (cmd == "health") {
    v1::GetHealthResponse r;
    grpc::Status s = stub->GetHealth(&ctx, {}, &r);
    if (!s.ok()) return Fail(s);
    if (json) return std::printf("%s", Json(r).c_str()) < 0;
    std::string overall = v1::GetHealthResponse::Health_Name(r.overall_health());
    std::printf("overall: %s\n\n", absl::AsciiStrToLower(overall).c_str());
    Table t({"CHECK", "STATUS", "VALUE", "THRESHOLD", "DETAIL"});
    for (const v1::HealthCheck& c : r.checks()) {
      t.Add({c.name(), c.status(), absl::StrFormat("%.3f", c.value()),
             absl::StrFormat("%.3f", c.threshold()), c.message()});
    }
    std::printf("%s", t.Render().c_str());
    for (const std::string& rec : r.recommendations()) std::printf("\n- %s", rec.c_str());
    if (r.recommendations_size() > 0) std::printf("\n");
    return r.overall_health() == v1::GetHealthResponse::UNHEALTHY ? 3 : 0;
  }
  if (cmd == "nodes") {
    v1::ListNodesResponse r;
    grpc::Status s = stub->ListNodes(&ctx, {}, &r);
    if (!s.ok()) return Fail(s);
    if (json) return std::printf("%s", Json(r).c_str()) < 0;
    bool gossip = false;
    for (const v1::NodeInfo& n : r.nodes()) gossip = gossip || !n.gossip_state().empty();
    if (!r.leader().empty()) {
      std::printf("leader %s (term %ld), answered by %s\n\n", r.leader().c_str(), static_cast<long>(r.term()),
                  r.answered_by().c_str());
    }
    if (!gossip) {
      Table t({"NODE", "EGRESS", "ADDRESS", "STATE", "VERSION", "IN-FLIGHT", "REQUESTS", "LAST SEEN"});
      for (const v1::NodeInfo& n : r.nodes()) {
        t.Add({n.node_id(), n.egress_ip(), n.grpc_address(), n.state(), n.version(),
               absl::StrCat(n.in_flight()), absl::StrCat(n.requests_total()), Ago(n.last_seen_ms())});
      }
      std::printf("%s", t.Render().c_str());
      return 0;
    }
    Table t({"MEMBER", "ROLE", "EGRESS", "ADDRESS", "STATE", "GOSSIP", "INC", "HEARD", "IN-FLIGHT", "REQUESTS",
             "USAGE"});
    for (const v1::NodeInfo& n : r.nodes()) {
      t.Add({n.node_id(), n.role().empty() ? "-" : n.role(), n.egress_ip().empty() ? "-" : n.egress_ip(),
             n.grpc_address(), n.state(), n.gossip_state().empty() ? "-" : n.gossip_state(),
             absl::StrCat(n.incarnation()), Ago(n.gossip_last_seen_ms()), absl::StrCat(n.in_flight()),
             absl::StrCat(n.requests_total()), n.usage().empty() ? "-" : n.usage()});
    }
    std::printf("%s", t.Render().c_str());
    return 0;
  }
  if (cmd == "drain") {
    if (args->size() != 2) {
      std::fprintf(stderr, "mpctl: usage: mpctl drain NODE [--undrain]\n");
      return 2;
    }
    v1::DrainNodeRequest req;
    req.set_node_id((*args)[1]);
    req.set_undrain(undrain);
    v1::DrainNodeResponse r;
    grpc::Status s = stub->DrainNode(&ctx, req, &r);
    if (!s.ok()) return Fail(s);
    if (json) return std::printf("%s", Json(r).c_str()) < 0;
    std::printf("%s is %s\n", r.node().node_id().c_str(), r.node().state().c_str());
    return 0;
  }
  if (cmd == "exec") {
    if (args->size() < 4) {
      std::fprintf(stderr, "mpctl: usage: mpctl exec EXCHANGE METHOD PATH [key=value ...]\n");
      return 2;
    }
    v1::ExecuteRequest req;
    req.set_exchange((*args)[1]);
    req.set_method((*args)[2]);
    req.set_path((*args)[3]);
    req.set_priority(static_cast<int32_t>(priority));
    req.set_body(body);
    for (const std::string& h : headers) {
      size_t colon = h.find(':');
      if (colon == std::string::npos || colon == 0) {
        std::fprintf(stderr, "mpctl: error: --header \"%s\" must be NAME:VALUE\n", h.c_str());
        return 2;
      }
      v1::Header* out = req.add_headers();
      out->set_name(h.substr(0, colon));
      out->set_value(std::string(absl::StripLeadingAsciiWhitespace(h.substr(colon + 1))));
    }
    for (size_t i = 4; i < args->size(); ++i) {
      const std::string& kv = (*args)[i];
      size_t eq = kv.find('=');
      if (eq == std::string::npos) {
        std::fprintf(stderr, "mpctl: error: query parameter \"%s\" must be key=value\n", kv.c_str());
        return 2;
      }
      v1::QueryParam* q = req.add_query();
      q->set_key(kv.substr(0, eq));
      q->set_value(kv.substr(eq + 1));
    }
    v1::ExecuteResponse r;
    grpc::Status s = stub->Execute(&ctx, req, &r);
    if (!s.ok()) {
      auto retry = ctx.GetServerTrailingMetadata().find("retry-after-ms");
      if (retry != ctx.GetServerTrailingMetadata().end()) {
        std::fprintf(stderr, "mpctl: retry after %s ms\n", std::string(retry->second.data(), retry->second.size()).c_str());
      }
      return Fail(s);
    }
    if (json) return std::printf("%s", Json(r).c_str()) < 0;
    std::vector<std::string> cost;
    for (const v1::PoolCharge& c : r.cost()) cost.push_back(absl::StrCat(c.pool(), "=", c.units()));
    std::fprintf(stderr, "HTTP %d via %s (%s), cost %s, queued %.1f ms, exchange %.1f ms\n",
                 r.http_status(), r.node_id().c_str(), r.egress_ip().c_str(),
                 absl::StrJoin(cost, ",").c_str(), r.queued_us() / 1000.0, r.exchange_us() / 1000.0);
    std::printf("%s\n", r.body().c_str());
    return 0;
  }
  std::fprintf(stderr, "mpctl: unknown command \"%s\" (status, health, nodes, drain, exec, jobs, tail)\n", cmd.c_str());
  return 2;
}
