// File: node/dispatch_service.h
//
// Node.Dispatch: the coordinator's assignments, each one exchange request
// to send from this node's egress IP. A dispatch is answered
//
//   STALE_TERM  if its (term, coordinator) is not the newest the term fence
//               has seen (never sent);
//   NOT_SENT    if the node does not serve the exchange, or the caller's
//               deadline passed while it waited for a worker;
//   otherwise   what the exchange lane made of it (REPLIED, REFUSED by the
//               node's own ledger, PARKED, NOT_SENT, LOST), with the cost
//               charged, the exchange-clock times, the usage header and,
//               when the reply parked the IP, the ban.
//
// Threads: gRPC's callback threads only hand the call to `executor`; the
// exchange round trip runs there (reactors never block). Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "common/clock.h"
#include "common/executor.h"
#include "marketprism/v1/node.grpc.pb.h"
#include "node/coordinator_session.h"
#include "node/exchange_lane.h"
#include "node/term_fence.h"

namespace marketprism::node {

// What the service works with, borrowed: everything here must outlive it.
struct DispatchParts {
  const Lanes& lanes;
  const TermFence& fence;  // read only: the refusal names the newest term
  AdmitTermFn admit_term;
  common::ThreadPool& executor;
  common::Clock& clock;
  // Tell the coordinator now (the exchange parked this IP). Runs on a worker.
  std::function<void()> report_now;
  std::string egress_ip;  // the usage's scope key
  std::string node_id;    // a written record's
  // A request the leader asked to be written (DispatchRequest.record): its
  // record, to the node's sinks. Runs on a worker.
  std::function<void(marketprism::v1::MarketEvent)> on_record;
};

class DispatchService final : public marketprism::v1::Node::CallbackService {
 public:
  explicit DispatchService(DispatchParts parts) : parts_(std::move(parts)) {}

  grpc::ServerUnaryReactor* Dispatch(grpc::CallbackServerContext* ctx,
                                     const marketprism::v1::DispatchRequest* req,
                                     marketprism::v1::DispatchResponse* resp) override;

 private:
  // Runs on a worker: fences, sends, answers into `resp`.
  void Handle(grpc::CallbackServerContext* ctx, const marketprism::v1::DispatchRequest& req,
              marketprism::v1::DispatchResponse* resp);

  const DispatchParts parts_;
};

}  // namespace marketprism::node
