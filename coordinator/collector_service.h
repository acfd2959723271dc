// File: coordinator/collector_service.h
//
// Collector, the collection API, on the coordinator's client address:
// Subscribe streams the merged records (record_hub.h) of the units that
// match, a slow subscriber cut off with RESOURCE_EXHAUSTED; CreateJob,
// DeleteJob and ListJobs manage the jobs (collection.h).
//
// Thread-safe; gRPC callback reactors, nothing blocks.
#pragma once

#include <cstddef>

#include "coordinator/collection.h"
#include "marketprism/v1/collector.grpc.pb.h"

namespace marketprism::coordinator {

class CollectorService final : public v1::Collector::CallbackService {
 public:
  // `collection` must outlive the service. `queue`: records a subscriber
  // may fall behind before it is cut off.
  explicit CollectorService(Collection& collection, size_t queue = 10'000) : collection_(collection), queue_(queue) {}

  grpc::ServerWriteReactor<v1::MarketEvent>* Subscribe(grpc::CallbackServerContext* ctx,
                                                      const v1::SubscribeRequest* request) override;
  grpc::ServerUnaryReactor* CreateJob(grpc::CallbackServerContext* ctx, const v1::CreateJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerUnaryReactor* DeleteJob(grpc::CallbackServerContext* ctx, const v1::DeleteJobRequest* request,
                                      v1::DeleteJobResponse* response) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* ctx, const v1::ListJobsRequest* request,
                                     v1::ListJobsResponse* response) override;

 private:
  Collection& collection_;
  const size_t queue_;
};

}  // namespace marketprism::coordinator
