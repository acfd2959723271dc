#include "tests/testing/subscriber.h"

namespace marketprism::testing {

Subscriber::Subscriber(const std::string& address, v1::SubscribeRequest req)
    : stub_(v1::Collector::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))),
      thread_([this, req = std::move(req)] {
        auto reader = stub_->Subscribe(&ctx_, req);
        v1::MarketEvent e;
        while (reader->Read(&e)) {
          absl::Time at = absl::Now();
          absl::MutexLock lock(&mu_);
          events_.push_back({at, e});
        }
        grpc::Status end = reader->Finish();
        absl::MutexLock lock(&mu_);
        status_ = std::move(end);
      }) {}

Subscriber::~Subscriber() {
  ctx_.TryCancel();
  thread_.join();
}

std::vector<Subscriber::Got> Subscriber::events() {
  absl::MutexLock lock(&mu_);
  return events_;
}

size_t Subscriber::size() {
  absl::MutexLock lock(&mu_);
  return events_.size();
}

std::optional<grpc::Status> Subscriber::status() {
  absl::MutexLock lock(&mu_);
  return status_;
}

}  // namespace marketprism::testing
