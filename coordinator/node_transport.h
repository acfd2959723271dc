// File: coordinator/node_transport.h
//
// How the coordinator's router reaches nodes: Node.Dispatch over gRPC,
// through the injected ChannelFactory. The node sessions say where each node
// serves (SetNode, on registering); gossip's death of a node cancels its
// calls in flight (ForgetNode), so the router retries idempotent ones
// elsewhere.
//
// Thread-safe. Dispatch never blocks: the call is asynchronous and `done`
// runs on a gRPC thread.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/net/grpc_channels.h"
#include "coordinator/router.h"
#include "marketprism/v1/node.grpc.pb.h"

namespace marketprism::coordinator {

class GrpcNodeClient final : public NodeClient {
 public:
  // `clock` must outlive this object.
  GrpcNodeClient(common::Clock& clock, common::ChannelFactory channels);

  void SetNode(const std::string& id, const std::string& address);
  // Cancels its calls in flight; it gets no more until SetNode.
  void ForgetNode(const std::string& id);

  // A node not set is answered NOT_SENT at once.
  void Dispatch(const std::string& node_id, v1::DispatchRequest request, absl::Time deadline,
                DispatchDone done) override;

 private:
  struct Entry {
    std::string address;
    std::shared_ptr<v1::Node::Stub> stub;
  };
  void CallEnded(const std::string& node_id, const std::shared_ptr<grpc::ClientContext>& ctx);

  common::Clock& clock_;
  const common::ChannelFactory channels_;
  absl::Mutex mu_;
  std::map<std::string, Entry> nodes_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::set<std::shared_ptr<grpc::ClientContext>>> calls_ ABSL_GUARDED_BY(mu_);
};

}  // namespace marketprism::coordinator
