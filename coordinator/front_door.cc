#include "coordinator/front_door.h"

#include <chrono>

#include "absl/strings/numbers.h"
#include "common/grpc_status.h"
#include "common/metadata_keys.h"
#include "coordinator/client_wire.h"

namespace marketprism::coordinator {

namespace {
constexpr absl::Duration kHeldCheck = absl::Milliseconds(50);
constexpr absl::Duration kHeldRetry = absl::Milliseconds(250);
}  // namespace

FrontDoor::FrontDoor(Options options, common::Clock& clock, Router& router, common::ChannelFactory channels)
    : options_(std::move(options)),
      clock_(clock),
      router_(router),
      channels_(std::move(channels)),
      expiry_(clock, [this] { ExpireHeld(); }) {}

FrontDoor::~FrontDoor() { Shutdown(); }

void FrontDoor::LeadAlone(const std::string& advertise) {
  absl::MutexLock lock(&mu_);
  lead_.leading = true;
  lead_.term = 1;
  lead_.leader = options_.name;
  lead_.leader_grpc = advertise;
  led_since_ = absl::InfinitePast();
}

void FrontDoor::StartElection(const std::string& advertise) {
  absl::MutexLock lock(&mu_);
  election_ = std::make_unique<Election>(options_.name, advertise, options_.leader_hold_down);
}

Leadership FrontDoor::leadership() {
  absl::MutexLock lock(&mu_);
  return lead_;
}

FrontDoor::Change FrontDoor::Reelect(const std::vector<CoordinatorSeen>& others, int64_t floor) {
  Change c;
  {
    absl::MutexLock lock(&mu_);
    if (!election_) return c;
    c.before = lead_;
    c.now = election_->Update(clock_.Now(), others, floor);
    lead_ = c.now;
    if (c.now.claimed_now) led_since_ = clock_.Now();
  }
  if (c.gained()) router_.set_term(c.now.term);
  return c;
}

void FrontDoor::ObserveTerm(int64_t term) {
  absl::MutexLock lock(&mu_);
  if (election_) election_->ObserveTerm(term);
}

std::shared_ptr<v1::Coordinator::Stub> FrontDoor::StubFor(const std::string& address) {
  absl::MutexLock lock(&mu_);
  auto& stub = stubs_[address];
  if (!stub) stub = std::shared_ptr<v1::Coordinator::Stub>(v1::Coordinator::NewStub(channels_(address)));
  return stub;
}

void FrontDoor::Route(const v1::ExecuteRequest& req, absl::Time deadline, Done done,
                      std::function<bool()> cancelled) {
  Leadership l;
  bool taking_over = false;
  {
    absl::MutexLock lock(&mu_);
    l = lead_;
    taking_over = l.leading && clock_.Now() - led_since_ < options_.takeover_grace;
  }
  auto again = [this, req, deadline, done, cancelled] { Route(req, deadline, done, cancelled); };
  if (l.leading && !taking_over) {
    router_.Execute(req, deadline, std::move(done), std::move(cancelled));
  } else if (l.leading) {
    // Just took over: nodes are still registering. A request that finds no
    // node waits for them rather than failing.
    router_.Execute(
        req, deadline,
        [this, deadline, done, again](absl::StatusOr<v1::ExecuteResponse> r) {
          if (r.ok() || r.status().code() != absl::StatusCode::kUnavailable) {
            done(std::move(r));
            return;
          }
          Hold(deadline, again, done);
        },
        cancelled);
  } else if (!l.leader_grpc.empty()) {
    Forward(req, deadline, l.leader_grpc, std::move(done), std::move(cancelled));
  } else {
    Hold(deadline, again, std::move(done));
  }
}

void FrontDoor::Forward(const v1::ExecuteRequest& req, absl::Time deadline, const std::string& leader, Done done,
                        std::function<bool()> cancelled) {
  struct Call {
    grpc::ClientContext ctx;
    v1::ExecuteRequest req;
    v1::ExecuteResponse resp;
  };
  auto call = std::make_shared<Call>();
  call->req = req;
  absl::Duration left = std::max(deadline - clock_.Now(), absl::Milliseconds(1));
  call->ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMicroseconds(left));
  StubFor(leader)->async()->Execute(
      &call->ctx, &call->req, &call->resp, [this, call, deadline, done, cancelled](grpc::Status s) {
        if (s.ok()) {
          done(std::move(call->resp));
          return;
        }
        const auto& md = call->ctx.GetServerTrailingMetadata();
        bool answered = md.find(common::kAnsweredByKey) != md.end();
        if (!answered && s.error_code() == grpc::StatusCode::UNAVAILABLE && IsIdempotent(call->req) &&
            !(cancelled && cancelled())) {
          // The leader went away under the call: wait for the next one.
          Hold(deadline, [this, call, deadline, done, cancelled] { Route(call->req, deadline, done, cancelled); },
               done);
          return;
        }
        absl::Status out = common::FromGrpc(s);
        auto retry = md.find(common::kRetryAfterMsKey);
        int64_t ms = 0;
        if (retry != md.end() && absl::SimpleAtoi(absl::string_view(retry->second.data(), retry->second.size()), &ms)) {
          out = WithRetryAfter(out, absl::Milliseconds(ms));
        }
        done(std::move(out));
      });
}

void FrontDoor::Hold(absl::Time deadline, std::function<void()> retry, Done done) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      held_.push_back({deadline, std::move(retry), std::move(done), clock_.Now() + kHeldRetry});
      expiry_.ArmBy(clock_.SteadyNow() + kHeldCheck);
      return;
    }
  }
  done(absl::UnavailableError("the coordinator is shutting down"));
}

void FrontDoor::ReleaseHeld() {
  std::vector<Held> held;
  {
    absl::MutexLock lock(&mu_);
    held.swap(held_);
  }
  for (Held& h : held) h.retry();
}

void FrontDoor::ExpireHeld() {
  std::vector<Held> expired, retry;
  {
    absl::MutexLock lock(&mu_);
    absl::Time now = clock_.Now();
    std::vector<Held> keep;
    for (Held& h : held_) {
      if (now >= h.deadline - options_.dispatch_margin) {
        expired.push_back(std::move(h));
      } else if (now >= h.retry_at) {
        retry.push_back(std::move(h));
      } else {
        keep.push_back(std::move(h));
      }
    }
    held_.swap(keep);
    if (!held_.empty()) expiry_.ArmBy(clock_.SteadyNow() + kHeldCheck);
  }
  for (Held& h : expired) {
    h.done(WithRetryAfter(absl::UnavailableError("no leader coordinator with a node for it before the deadline"),
                          absl::Milliseconds(500)));
  }
  for (Held& h : retry) h.retry();
}

void FrontDoor::Shutdown() {
  std::vector<Held> held;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    held.swap(held_);
  }
  expiry_.Stop();
  for (Held& h : held) h.done(absl::UnavailableError("the coordinator is shutting down"));
}

}  // namespace marketprism::coordinator
