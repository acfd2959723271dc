#include "coordinator/collector_service.h"

#include <deque>

#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"

namespace marketprism::coordinator {

namespace {

// One subscriber: records queue here (bounded) and are written one at a time.
class SubscribeReactor final : public grpc::ServerWriteReactor<v1::MarketEvent>, public RecordSink {
 public:
  SubscribeReactor(RecordHub& hub, const v1::SubscribeRequest& request, size_t max) : hub_(hub), max_(max) {
    id_ = hub_.Subscribe(request, this);
  }

  bool Offer(const v1::MarketEvent& e) override {
    absl::MutexLock lock(&mu_);
    if (finished_ || cut_) return true;  // going: nothing more to queue
    if (queue_.size() >= max_) return false;
    queue_.push_back(e);
    if (!writing_) WriteNext();
    return true;
  }

  void Cut(const absl::Status& why) override {
    absl::MutexLock lock(&mu_);
    cut_ = why;
    queue_.clear();  // what is queued is behind anyway
    if (!writing_) FinishOnce(common::ToGrpc(why));
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "the subscriber went away"));
      return;
    }
    queue_.pop_front();
    if (cut_) {
      FinishOnce(common::ToGrpc(*cut_));
    } else if (!queue_.empty()) {
      WriteNext();
    }
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    if (!writing_) FinishOnce(grpc::Status::CANCELLED);
    cancelled_ = true;
  }

  void OnDone() override {
    hub_.Unsubscribe(id_);
    delete this;
  }

 private:
  void WriteNext() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || cancelled_) return;
    writing_ = true;
    StartWrite(&queue_.front());
  }
  void FinishOnce(const grpc::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(s);
  }

  RecordHub& hub_;
  const size_t max_;
  int64_t id_ = 0;
  absl::Mutex mu_;
  std::deque<v1::MarketEvent> queue_ ABSL_GUARDED_BY(mu_);  // front: being written
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Status> cut_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

grpc::ServerWriteReactor<v1::MarketEvent>* CollectorService::Subscribe(grpc::CallbackServerContext*,
                                                                      const v1::SubscribeRequest* request) {
  return new SubscribeReactor(collection_.hub(), *request, queue_);
}

grpc::ServerUnaryReactor* CollectorService::CreateJob(grpc::CallbackServerContext* ctx,
                                                      const v1::CreateJobRequest* request, v1::Job* response) {
  auto* r = ctx->DefaultReactor();
  absl::StatusOr<v1::Job> job = collection_.CreateJob(request->job());
  if (job.ok()) *response = *std::move(job);
  r->Finish(job.ok() ? grpc::Status::OK : common::ToGrpc(job.status()));
  return r;
}

grpc::ServerUnaryReactor* CollectorService::DeleteJob(grpc::CallbackServerContext* ctx,
                                                      const v1::DeleteJobRequest* request,
                                                      v1::DeleteJobResponse* response) {
  auto* r = ctx->DefaultReactor();
  absl::Status s = collection_.DeleteJob(request->name());
  response->set_deleted(s.ok());
  r->Finish(common::ToGrpc(s));
  return r;
}

grpc::ServerUnaryReactor* CollectorService::ListJobs(grpc::CallbackServerContext* ctx, const v1::ListJobsRequest*,
                                                     v1::ListJobsResponse* response) {
  auto* r = ctx->DefaultReactor();
  for (v1::Job& j : collection_.ListJobs()) *response->add_jobs() = std::move(j);
  r->Finish(grpc::Status::OK);
  return r;
}

}  // namespace marketprism::coordinator
