#include "tests/testing/cluster.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace marketprism::testing {

std::string Cluster::egress_ip(int i) const {
  return absl::StrCat(options_.ip_prefix, options_.first_ip + i);
}

absl::StatusOr<std::unique_ptr<Cluster>> Cluster::Start(ClusterOptions options) {
  auto c = std::unique_ptr<Cluster>(new Cluster());
  c->options_ = std::move(options);
  MP_ASSIGN_OR_RETURN(c->sim_, SimProcess::Start(c->options_.sim_flags));
  std::vector<std::string> argv = {BinDir() + "/mp-coordinator", "--listen", "127.0.0.1:0"};
  for (std::string& flag : c->sim_->CoordinatorFlags(c->options_.exchanges)) argv.push_back(std::move(flag));
  // No exchange health probes unless the test asks (its flag comes later and
  // wins): tests count requests and weight exactly.
  argv.insert(argv.end(), {"--monitor-interval", "0s"});
  argv.insert(argv.end(), c->options_.coordinator_flags.begin(), c->options_.coordinator_flags.end());
  MP_ASSIGN_OR_RETURN(c->coordinator_, Subprocess::Start(argv));
  MP_ASSIGN_OR_RETURN(std::string line, c->coordinator_->WaitForLine("listening on", absl::Seconds(10)));
  if (!absl::SimpleAtoi(line.substr(line.rfind(':') + 1), &c->coordinator_port_)) {
    return absl::InternalError("cannot read the coordinator's port: " + line);
  }
  c->stub_ = v1::Coordinator::NewStub(
      grpc::CreateChannel(c->coordinator_address(), grpc::InsecureChannelCredentials()));
  for (int i = 0; i < c->options_.nodes; ++i) MP_RETURN_IF_ERROR(c->AddNode(i));
  MP_RETURN_IF_ERROR(c->WaitForActive(c->options_.nodes, absl::Seconds(10)));
  return c;
}

absl::Status Cluster::AddNode(int index) {
  std::vector<std::string> argv = {BinDir() + "/mp-node",   "--egress-ip", egress_ip(index),
                                   "--listen",              "127.0.0.1:0", "--coordinator",
                                   coordinator_address(),   "--report-interval", "200ms"};
  argv.insert(argv.end(), options_.node_flags.begin(), options_.node_flags.end());
  MP_ASSIGN_OR_RETURN(auto p, Subprocess::Start(argv));
  MP_RETURN_IF_ERROR(p->WaitForLine("registered with", absl::Seconds(10)).status());
  if (static_cast<size_t>(index) >= nodes_.size()) nodes_.resize(static_cast<size_t>(index) + 1);
  nodes_[static_cast<size_t>(index)] = std::move(p);
  return absl::OkStatus();
}

absl::Status Cluster::WaitForActive(int active, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    v1::ListNodesResponse r;
    grpc::Status s = stub_->ListNodes(&ctx, {}, &r);
    int n = 0;
    if (s.ok()) {
      for (const auto& node : r.nodes()) {
        bool ready = node.ready_exchanges_size() == static_cast<int>(options_.exchanges.size());
        n += node.state() == "active" && ready ? 1 : 0;
      }
    }
    if (n == active) return absl::OkStatus();
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(n, " nodes active, waiting for ", active));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

grpc::Status Cluster::Execute(const v1::ExecuteRequest& req, v1::ExecuteResponse* resp,
                              absl::Duration timeout) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
  return stub_->Execute(&ctx, req, resp);
}

v1::ExecuteRequest MakeRequest(const std::string& exchange, const std::string& path,
                               std::vector<std::pair<std::string, std::string>> query, int priority) {
  v1::ExecuteRequest r;
  r.set_exchange(exchange);
  r.set_method("GET");
  r.set_path(path);
  r.set_priority(priority);
  for (auto& [k, v] : query) {
    v1::QueryParam* q = r.add_query();
    q->set_key(k);
    q->set_value(v);
  }
  return r;
}

}  // namespace marketprism::testing
