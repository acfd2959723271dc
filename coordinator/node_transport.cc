#include "coordinator/node_transport.h"

#include <chrono>
#include <vector>

#include "common/grpc_status.h"

namespace marketprism::coordinator {

GrpcNodeClient::GrpcNodeClient(common::Clock& clock, common::ChannelFactory channels)
    : clock_(clock), channels_(std::move(channels)) {}

void GrpcNodeClient::SetNode(const std::string& id, const std::string& address) {
  absl::MutexLock lock(&mu_);
  Entry& e = nodes_[id];
  if (e.address == address && e.stub) return;
  e.address = address;
  e.stub = std::shared_ptr<v1::Node::Stub>(v1::Node::NewStub(channels_(address)));
}

void GrpcNodeClient::ForgetNode(const std::string& id) {
  std::vector<std::shared_ptr<grpc::ClientContext>> calls;
  {
    absl::MutexLock lock(&mu_);
    nodes_.erase(id);
    auto it = calls_.find(id);
    if (it != calls_.end()) calls.assign(it->second.begin(), it->second.end());
  }
  for (auto& c : calls) c->TryCancel();
}

void GrpcNodeClient::CallEnded(const std::string& node_id, const std::shared_ptr<grpc::ClientContext>& ctx) {
  absl::MutexLock lock(&mu_);
  auto it = calls_.find(node_id);
  if (it == calls_.end()) return;
  it->second.erase(ctx);
  if (it->second.empty()) calls_.erase(it);
}

void GrpcNodeClient::Dispatch(const std::string& node_id, v1::DispatchRequest request, absl::Time deadline,
                              DispatchDone done) {
  std::shared_ptr<v1::Node::Stub> stub;
  {
    absl::MutexLock lock(&mu_);
    auto it = nodes_.find(node_id);
    if (it != nodes_.end()) stub = it->second.stub;
  }
  if (!stub) {
    v1::DispatchResponse r;
    r.set_outcome(v1::DispatchResponse::NOT_SENT);
    r.set_detail("the node is not connected");
    done(absl::OkStatus(), std::move(r));
    return;
  }
  struct Call {
    std::shared_ptr<grpc::ClientContext> ctx = std::make_shared<grpc::ClientContext>();
    v1::DispatchRequest req;
    v1::DispatchResponse resp;
    DispatchDone done;
    std::shared_ptr<v1::Node::Stub> stub;  // keeps the channel up until the reply
  };
  auto* call = new Call;
  call->req = std::move(request);
  call->done = std::move(done);
  call->stub = stub;
  // gRPC deadlines are real wall-clock times (STYLE rule 20).
  absl::Duration left = std::max(deadline - clock_.Now(), absl::Milliseconds(1));
  call->ctx->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMicroseconds(left));
  {
    absl::MutexLock lock(&mu_);
    calls_[node_id].insert(call->ctx);
  }
  stub->async()->Dispatch(call->ctx.get(), &call->req, &call->resp, [this, call, node_id](grpc::Status s) {
    CallEnded(node_id, call->ctx);
    call->done(common::FromGrpc(s), std::move(call->resp));
    delete call;
  });
}

}  // namespace marketprism::coordinator
