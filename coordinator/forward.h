// File: coordinator/forward.h
//
// A follower passes a client's unary call to the leader: the same request
// on the leader's stub, its answer (or failure) finishing the client's call.
// The client's deadline goes with it (a call without one gets 30 s).
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>

namespace marketprism::coordinator {

// `call(stub->async(), client_context, req, resp, on_done)` starts the call.
template <typename Stub, typename Req, typename Resp, typename Call>
void ForwardUnary(grpc::CallbackServerContext* ctx, grpc::ServerUnaryReactor* reactor, std::shared_ptr<Stub> stub,
                  const Req* req, Resp* resp, Call call) {
  auto cctx = std::make_shared<grpc::ClientContext>();
  auto deadline = ctx->deadline();
  if (deadline - std::chrono::system_clock::now() > std::chrono::hours(1)) {
    deadline = std::chrono::system_clock::now() + std::chrono::seconds(30);
  }
  cctx->set_deadline(deadline);
  call(stub->async(), cctx.get(), req, resp, [cctx, stub, reactor](grpc::Status s) { reactor->Finish(s); });
}

}  // namespace marketprism::coordinator
