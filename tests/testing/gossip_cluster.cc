#include "tests/testing/gossip_cluster.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <thread>

#include "absl/synchronization/mutex.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace marketprism::testing {

namespace {

// The text after `marker` on the line that has it ("... gossip at 1.2.3.4:5").
std::string After(const std::string& line, const std::string& marker) {
  size_t at = line.find(marker);
  return at == std::string::npos ? "" : line.substr(at + marker.size());
}

}  // namespace

std::string GossipCluster::node_id(int i) const {
  return absl::StrCat("node-127.0.", options_.subnet, ".", 11 + i);
}

std::unique_ptr<v1::Coordinator::Stub> GossipCluster::Stub(int coordinator) const {
  return v1::Coordinator::NewStub(
      grpc::CreateChannel(coordinator_address(coordinator), grpc::InsecureChannelCredentials()));
}

absl::StatusOr<std::unique_ptr<GossipCluster>> GossipCluster::Start(GossipClusterOptions options) {
  auto c = std::unique_ptr<GossipCluster>(new GossipCluster());
  c->options_ = std::move(options);
  MP_ASSIGN_OR_RETURN(c->sim_, SimProcess::Start(c->options_.sim_flags));
  std::string seed;
  for (int i = 0; i < c->options_.coordinators; ++i) {
    std::string ip = absl::StrCat("127.0.", c->options_.subnet, ".", 1 + i);
    std::vector<std::string> argv = {BinDir() + "/mp-coordinator", "--listen", ip + ":0", "--gossip", ip + ":0",
                                     "--name", c->coordinator_name(i), "--exchange-info-refresh", "0",
                                     "--monitor-interval", "0s"};
    if (!seed.empty()) argv.insert(argv.end(), {"--join", seed});
    for (std::string& flag : c->sim_->CoordinatorFlags(c->options_.exchanges)) argv.push_back(std::move(flag));
    argv.insert(argv.end(), c->options_.coordinator_flags.begin(), c->options_.coordinator_flags.end());
    MP_ASSIGN_OR_RETURN(auto p, Subprocess::Start(argv));
    MP_ASSIGN_OR_RETURN(std::string g, p->WaitForLine("mp-coordinator gossip at ", absl::Seconds(10)));
    MP_ASSIGN_OR_RETURN(std::string l, p->WaitForLine("listening on ", absl::Seconds(10)));
    if (seed.empty()) seed = After(g, "gossip at ");
    c->addresses_.push_back(absl::StrCat(ip, ":", l.substr(l.rfind(':') + 1)));
    c->coordinators_.push_back(std::move(p));
  }
  for (int i = 0; i < c->options_.nodes; ++i) {
    std::string ip = absl::StrCat("127.0.", c->options_.subnet, ".", 11 + i);
    std::vector<std::string> argv = {BinDir() + "/mp-node", "--egress-ip", ip, "--listen", ip + ":0",
                                     "--gossip", ip + ":0", "--join", seed, "--report-interval", "200ms"};
    for (const std::string& e : c->options_.exchanges) argv.insert(argv.end(), {"--exchange", e});
    argv.insert(argv.end(), c->options_.node_flags.begin(), c->options_.node_flags.end());
    MP_ASSIGN_OR_RETURN(auto p, Subprocess::Start(argv));
    c->nodes_.push_back(std::move(p));
  }
  for (auto& p : c->nodes_) MP_RETURN_IF_ERROR(p->WaitForLine("registered with", absl::Seconds(15)).status());
  return c;
}

absl::StatusOr<v1::ListNodesResponse> GossipCluster::WaitForLeader(int via, int64_t min_term, int active,
                                                                   absl::Duration timeout) {
  auto stub = Stub(via);
  absl::Time deadline = absl::Now() + timeout;
  std::string last = "no answer";
  while (true) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    v1::ListNodesResponse r;
    grpc::Status s = stub->ListNodes(&ctx, {}, &r);
    if (s.ok()) {
      int n = 0;
      for (const auto& node : r.nodes()) {
        bool ready = node.ready_exchanges_size() == static_cast<int>(options_.exchanges.size());
        n += node.role() == "node" && node.state() == "active" && ready ? 1 : 0;
      }
      if (!r.leader().empty() && r.term() >= min_term && n == active) return r;
      last = absl::StrCat("leader \"", r.leader(), "\" term ", r.term(), ", ", n, " nodes active");
    } else {
      last = s.error_message();
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("waiting for a leader of term >= ", min_term, " with ", active, " nodes: ", last));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

absl::Status GossipCluster::WaitForNode(int via, const std::string& node_id, const std::string& field,
                                        const std::string& value, absl::Duration timeout) {
  auto stub = Stub(via);
  absl::Time deadline = absl::Now() + timeout;
  std::string seen = "not listed";
  while (true) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    v1::ListNodesResponse r;
    if (stub->ListNodes(&ctx, {}, &r).ok()) {
      for (const auto& n : r.nodes()) {
        if (n.node_id() != node_id) continue;
        seen = field == "state" ? n.state() : n.gossip_state();
        if (seen == value) return absl::OkStatus();
      }
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(node_id, " ", field, " is \"", seen, "\", not ", value));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

}  // namespace marketprism::testing

namespace marketprism::testing {

LoadRecord RunClosedLoop(const std::string& coordinator, int threads, absl::Time until,
                         const v1::ExecuteRequest& request, absl::Duration deadline) {
  LoadRecord out;
  absl::Mutex mu;
  auto stub = v1::Coordinator::NewStub(grpc::CreateChannel(coordinator, grpc::InsecureChannelCredentials()));
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      while (absl::Now() < until) {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(deadline));
        v1::ExecuteResponse resp;
        grpc::Status s = stub->Execute(&ctx, request, &resp);
        absl::Time now = absl::Now();
        absl::MutexLock lock(&mu);
        if (s.ok()) {
          out.completions.push_back(now);
          ++out.http[resp.http_status()];
        } else if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
          ++out.exhausted;
        } else {
          ++out.errors[absl::StrCat(s.error_code(), ": ", s.error_message())];
        }
      }
    });
  }
  for (auto& w : workers) w.join();
  std::sort(out.completions.begin(), out.completions.end());
  return out;
}

}  // namespace marketprism::testing
