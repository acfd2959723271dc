// File: coordinator/collector_service.h
//
// Collector, the collection API, on the coordinator's client address. Any
// coordinator answers: the leader from its own Collection, a follower by
// passing the call to the leader — Subscribe as a relay of the leader's
// stream, the job calls forwarded (ListJobs with no leader known shows the
// jobs this coordinator holds). Subscribe streams the merged records
// (record_hub.h) of the units that match; a slow subscriber is cut off with
// RESOURCE_EXHAUSTED, and a leader that steps down (or a relayed stream whose
// leader went away) ends its subscribers with UNAVAILABLE, to subscribe
// again at any coordinator.
//
// JobReplication (between coordinators) serves a follower's SyncJobs from
// the leader's Collection; GrpcSyncJobs is the follower's side of it.
//
// Thread-safe; gRPC callback reactors, nothing blocks.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/net/grpc_channels.h"
#include "coordinator/collection.h"
#include "coordinator/election.h"
#include "marketprism/v1/collector.grpc.pb.h"

namespace marketprism::coordinator {

class CollectorService final : public v1::Collector::CallbackService {
 public:
  // `collection` must outlive the service; `leadership` says who leads and
  // `channels` reaches the leader. `queue`: records a subscriber may fall
  // behind before it is cut off.
  CollectorService(Collection& collection, std::function<Leadership()> leadership, common::ChannelFactory channels,
                   size_t queue = 10'000);

  grpc::ServerWriteReactor<v1::MarketEvent>* Subscribe(grpc::CallbackServerContext* ctx,
                                                      const v1::SubscribeRequest* request) override;
  grpc::ServerUnaryReactor* CreateJob(grpc::CallbackServerContext* ctx, const v1::CreateJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerUnaryReactor* DeleteJob(grpc::CallbackServerContext* ctx, const v1::DeleteJobRequest* request,
                                      v1::DeleteJobResponse* response) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* ctx, const v1::ListJobsRequest* request,
                                     v1::ListJobsResponse* response) override;

 private:
  // The leader's stub when another coordinator leads; null when we lead.
  // kUnavailable when no leader is known.
  absl::StatusOr<std::shared_ptr<v1::Collector::Stub>> Leader();
  // Forwards a unary call to the leader when we do not lead (true: it is
  // taken care of, `reactor` finished or to be).
  template <typename Req, typename Resp, typename Call>
  bool Forward(grpc::CallbackServerContext* ctx, grpc::ServerUnaryReactor* reactor, const Req* req, Resp* resp,
               Call call);

  Collection& collection_;
  const std::function<Leadership()> leadership_;
  common::StubCache<v1::Collector> stubs_;
  const size_t queue_;
};

class JobReplicationService final : public v1::JobReplication::CallbackService {
 public:
  explicit JobReplicationService(Collection& collection) : collection_(collection) {}

  grpc::ServerUnaryReactor* SyncJobs(grpc::CallbackServerContext* ctx, const v1::SyncJobsRequest* request,
                                     v1::SyncJobsResponse* response) override;

 private:
  Collection& collection_;
};

// A follower's SyncJobs over gRPC, each call given `margin` beyond the wait
// it asks for.
Collection::SyncJobs GrpcSyncJobs(common::ChannelFactory channels, absl::Duration margin = absl::Seconds(3));

}  // namespace marketprism::coordinator
