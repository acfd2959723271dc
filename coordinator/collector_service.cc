#include "coordinator/collector_service.h"

#include <atomic>
#include <chrono>
#include <deque>
#include <optional>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "coordinator/forward.h"

namespace marketprism::coordinator {

namespace {

class SubscribeReactor;

// At a follower: the leader's Subscribe, read as fast as it comes and
// offered to the client's queue.
class Upstream final : public grpc::ClientReadReactor<v1::MarketEvent> {
 public:
  Upstream(SubscribeReactor* down, std::shared_ptr<v1::Collector::Stub> stub, const v1::SubscribeRequest& request)
      : down_(down), stub_(std::move(stub)), request_(request) {}

  void Start() {
    stub_->async()->Subscribe(&ctx_, &request_, this);
    StartRead(&event_);
    StartCall();
  }
  void Cancel() { ctx_.TryCancel(); }

  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& s) override;

 private:
  SubscribeReactor* const down_;
  const std::shared_ptr<v1::Collector::Stub> stub_;
  const v1::SubscribeRequest request_;
  grpc::ClientContext ctx_;
  v1::MarketEvent event_;
};

// One subscriber: records queue here (bounded) and are written one at a
// time. They come from this coordinator's hub (FromHub) or, at a follower,
// from the leader's stream (FromLeader). Deleted when the client's call and
// the leader's are both done.
class SubscribeReactor final : public grpc::ServerWriteReactor<v1::MarketEvent>, public RecordSink {
 public:
  explicit SubscribeReactor(size_t max) : max_(max) {}

  void FromHub(RecordHub& hub, const v1::SubscribeRequest& request) {
    hub_ = &hub;
    id_ = hub.Subscribe(request, this);
  }
  void FromLeader(std::shared_ptr<v1::Collector::Stub> stub, const v1::SubscribeRequest& request) {
    refs_.fetch_add(1);
    upstream_ = std::make_unique<Upstream>(this, std::move(stub), request);
    upstream_->Start();
  }

  bool Offer(const v1::MarketEvent& e) override {
    absl::MutexLock lock(&mu_);
    if (finished_ || cut_) return true;  // going: nothing more to queue
    if (queue_.size() >= max_) return false;
    queue_.push_back(e);
    return true;
  }

  void Kick() override {
    absl::MutexLock lock(&mu_);
    if (!writing_ && !queue_.empty() && !cut_) WriteNext();
  }

  void Cut(const absl::Status& why) override {
    absl::MutexLock lock(&mu_);
    if (cut_) return;
    cut_ = why;
    queue_.clear();  // what is queued is behind anyway
    if (!writing_) FinishOnce(common::ToGrpc(why));
  }

  // A full queue at a follower: as the hub cuts a slow subscriber.
  void CutSlow() {
    Cut(absl::ResourceExhaustedError(
        absl::StrCat("subscriber too slow: ", max_, " records behind; subscribe again (books start over)")));
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
    {
      absl::MutexLock lock(&mu_);
      if (!writing_) FinishOnce(grpc::Status::CANCELLED);
      cancelled_ = true;
    }
    if (upstream_) upstream_->Cancel();
  }

  void OnDone() override {
    if (hub_ != nullptr) hub_->Unsubscribe(id_);
    if (upstream_) upstream_->Cancel();
    Unref();
  }

  void Unref() {
    if (refs_.fetch_sub(1) == 1) delete this;
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

  const size_t max_;
  RecordHub* hub_ = nullptr;
  int64_t id_ = 0;
  std::unique_ptr<Upstream> upstream_;
  std::atomic<int> refs_{1};  // the client's call, and the leader's while it runs
  absl::Mutex mu_;
  std::deque<v1::MarketEvent> queue_ ABSL_GUARDED_BY(mu_);  // front: being written
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Status> cut_ ABSL_GUARDED_BY(mu_);
};

void Upstream::OnReadDone(bool ok) {
  if (!ok) return;  // OnDone follows, with the status
  if (!down_->Offer(event_)) {
    down_->CutSlow();
    ctx_.TryCancel();
    return;
  }
  down_->Kick();
  StartRead(&event_);
}

void Upstream::OnDone(const grpc::Status& s) {
  absl::Status why = common::FromGrpc(s);
  if (why.ok() || why.code() == absl::StatusCode::kCancelled) {
    why = absl::UnavailableError("the leader's stream ended (the leader changed?); subscribe again");
  } else {
    why = absl::Status(why.code(), absl::StrCat("from the leader: ", why.message()));
  }
  down_->Cut(why);  // nothing if the client's call is over
  down_->Unref();
}

}  // namespace

CollectorService::CollectorService(Collection& collection, std::function<Leadership()> leadership,
                                   common::ChannelFactory channels, size_t queue)
    : collection_(collection), leadership_(std::move(leadership)), stubs_(std::move(channels)), queue_(queue) {}

absl::StatusOr<std::shared_ptr<v1::Collector::Stub>> CollectorService::Leader() {
  Leadership l = leadership_();
  if (l.leading) return nullptr;
  if (l.leader_grpc.empty()) {
    return absl::UnavailableError("no leader coordinator yet (an election is under way); retry shortly");
  }
  return stubs_.For(l.leader_grpc);
}

template <typename Req, typename Resp, typename Call>
bool CollectorService::Forward(grpc::CallbackServerContext* ctx, grpc::ServerUnaryReactor* reactor, const Req* req,
                               Resp* resp, Call call) {
  absl::StatusOr<std::shared_ptr<v1::Collector::Stub>> leader = Leader();
  if (!leader.ok()) {
    reactor->Finish(common::ToGrpc(leader.status()));
    return true;
  }
  if (*leader == nullptr) return false;
  ForwardUnary(ctx, reactor, *leader, req, resp, call);
  return true;
}

grpc::ServerWriteReactor<v1::MarketEvent>* CollectorService::Subscribe(grpc::CallbackServerContext*,
                                                                      const v1::SubscribeRequest* request) {
  auto* r = new SubscribeReactor(queue_);
  absl::StatusOr<std::shared_ptr<v1::Collector::Stub>> leader = Leader();
  if (!leader.ok()) {
    r->Cut(leader.status());
  } else if (*leader == nullptr) {
    r->FromHub(collection_.hub(), *request);
  } else {
    r->FromLeader(*leader, *request);
  }
  return r;
}

grpc::ServerUnaryReactor* CollectorService::CreateJob(grpc::CallbackServerContext* ctx,
                                                      const v1::CreateJobRequest* request, v1::Job* response) {
  auto* r = ctx->DefaultReactor();
  if (Forward(ctx, r, request, response,
              [](auto* a, auto* c, auto* q, auto* p, auto cb) { a->CreateJob(c, q, p, std::move(cb)); })) {
    return r;
  }
  collection_.CreateJob(request->job(), [r, response](absl::StatusOr<v1::Job> job) {
    if (job.ok()) *response = *std::move(job);
    r->Finish(job.ok() ? grpc::Status::OK : common::ToGrpc(job.status()));
  });
  return r;
}

grpc::ServerUnaryReactor* CollectorService::DeleteJob(grpc::CallbackServerContext* ctx,
                                                      const v1::DeleteJobRequest* request,
                                                      v1::DeleteJobResponse* response) {
  auto* r = ctx->DefaultReactor();
  if (Forward(ctx, r, request, response,
              [](auto* a, auto* c, auto* q, auto* p, auto cb) { a->DeleteJob(c, q, p, std::move(cb)); })) {
    return r;
  }
  collection_.DeleteJob(request->name(), [r, response](absl::Status s) {
    response->set_deleted(s.ok());
    r->Finish(common::ToGrpc(s));
  });
  return r;
}

grpc::ServerUnaryReactor* CollectorService::ListJobs(grpc::CallbackServerContext* ctx, const v1::ListJobsRequest* req,
                                                     v1::ListJobsResponse* response) {
  auto* r = ctx->DefaultReactor();
  // With no leader known, the jobs this coordinator holds.
  if (!leadership_().leader_grpc.empty() &&
      Forward(ctx, r, req, response,
              [](auto* a, auto* c, auto* q, auto* p, auto cb) { a->ListJobs(c, q, p, std::move(cb)); })) {
    return r;
  }
  for (v1::Job& j : collection_.ListJobs()) *response->add_jobs() = std::move(j);
  r->Finish(grpc::Status::OK);
  return r;
}

grpc::ServerUnaryReactor* JobReplicationService::SyncJobs(grpc::CallbackServerContext* ctx,
                                                          const v1::SyncJobsRequest* request,
                                                          v1::SyncJobsResponse* response) {
  auto* r = ctx->DefaultReactor();
  collection_.ServeSync(*request, [r, response](absl::StatusOr<v1::SyncJobsResponse> answer) {
    if (answer.ok()) *response = *std::move(answer);
    r->Finish(answer.ok() ? grpc::Status::OK : common::ToGrpc(answer.status()));
  });
  return r;
}

Collection::SyncJobs GrpcSyncJobs(common::ChannelFactory channels, absl::Duration margin) {
  auto stubs = std::make_shared<common::StubCache<v1::JobReplication>>(std::move(channels));
  return [margin, stubs](const std::string& address, const v1::SyncJobsRequest& req,
                                                          Collection::SyncDone done) {
    std::shared_ptr<v1::JobReplication::Stub> stub = stubs->For(address);
    struct Call {
      grpc::ClientContext ctx;
      v1::SyncJobsRequest req;
      v1::SyncJobsResponse resp;
    };
    auto call = std::make_shared<Call>();
    call->req = req;
    call->ctx.set_deadline(std::chrono::system_clock::now() +
                           absl::ToChronoMilliseconds(absl::Milliseconds(req.wait_ms()) + margin));
    stub->async()->SyncJobs(&call->ctx, &call->req, &call->resp, [call, stub, done](grpc::Status s) {
      if (!s.ok()) return done(common::FromGrpc(s));
      done(std::move(call->resp));
    });
  };
}

}  // namespace marketprism::coordinator
