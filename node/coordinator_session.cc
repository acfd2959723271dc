#include "node/coordinator_session.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/wire/node_api.h"
#include "marketprism/v1/node.grpc.pb.h"

#ifndef MP_VERSION
#define MP_VERSION "dev"
#endif

namespace marketprism::node {

namespace v1 = ::marketprism::v1;

ChannelFactory InsecureChannelFactory() {
  return [](const std::string& target) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10'000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5'000);
    return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  };
}

CoordinatorSession::CoordinatorSession(SessionOptions options, SessionParts parts)
    : options_(std::move(options)), parts_(std::move(parts)), wake_(parts_.clock, [this] {
        absl::MutexLock lock(&mu_);
        woken_ = true;
      }) {}

CoordinatorSession::~CoordinatorSession() { Stop(); }

void CoordinatorSession::Start(std::string advertise) {
  advertise_ = std::move(advertise);
  thread_ = std::thread([this] { Loop(); });
}

void CoordinatorSession::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return;
    stop_ = true;
    if (ctx_) ctx_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
  wake_.Stop();
}

void CoordinatorSession::Nudge() {
  absl::MutexLock lock(&mu_);
  nudge_ = true;
}

void CoordinatorSession::CheckLeader() {
  absl::MutexLock lock(&mu_);
  leader_check_ = true;
}

void CoordinatorSession::Publish(std::vector<v1::MarketEvent> events) {
  absl::MutexLock lock(&mu_);
  for (v1::MarketEvent& e : events) outbox_.push_back(std::move(e));
  while (outbox_.size() > kOutboxMax) {
    outbox_.pop_front();
    ++records_dropped_;
  }
}

int64_t CoordinatorSession::records_dropped() {
  absl::MutexLock lock(&mu_);
  return records_dropped_;
}

std::string CoordinatorSession::current_target() {
  absl::MutexLock lock(&mu_);
  return target_;
}

bool CoordinatorSession::Stopping() {
  absl::MutexLock lock(&mu_);
  return stop_;
}

void CoordinatorSession::Loop() {
  absl::Duration backoff = absl::Milliseconds(100);
  while (!Stopping()) {
    absl::Time started = parts_.clock.Now();
    RunOnce();
    if (parts_.clock.Now() - started > absl::Seconds(5)) backoff = absl::Milliseconds(100);
    absl::MutexLock lock(&mu_);
    if (!redirect_.empty()) {
      backoff = absl::Milliseconds(100);
      continue;  // a follower named the leader: go there now
    }
    // The back-off runs on the clock's timer; news of a leader from gossip ends it.
    woken_ = false;
    wake_.ArmIn(std::min(backoff, options_.reconnect_max));
    mu_.Await(absl::Condition(
        +[](CoordinatorSession* s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
          return s->stop_ || s->leader_check_ || s->woken_;
        },
        this));
    leader_check_ = false;
    backoff = std::min(backoff * 2, options_.reconnect_max);
  }
}

std::optional<LeaderClaim> CoordinatorSession::ObserveLeaderClaims() {
  std::optional<LeaderClaim> claim = parts_.leader_claim ? parts_.leader_claim() : std::nullopt;
  if (claim) (void)parts_.admit_term(claim->term, claim->name);
  return claim;
}

std::string CoordinatorSession::PickTarget() {
  {
    absl::MutexLock lock(&mu_);
    if (!redirect_.empty()) return std::exchange(redirect_, "");
  }
  // Seeing a claim raises the fence: the old leader is refused from now.
  if (std::optional<LeaderClaim> leader = ObserveLeaderClaims()) {
    if (!leader->grpc.empty()) return leader->grpc;
  }
  const auto& list = options_.coordinators;
  if (list.empty()) return "";
  return list[next_target_++ % list.size()].ToString();
}

bool CoordinatorSession::Superseded(int64_t term, const std::string& coordinator) const {
  auto [highest, holder] = parts_.fence.highest();
  return highest > term ||
         (highest == term && !holder.empty() && !coordinator.empty() && holder != coordinator);
}

void CoordinatorSession::RunOnce() {
  std::string target = PickTarget();
  if (target.empty()) return;  // no coordinator known yet: gossip will tell
  auto stub = v1::NodeControl::NewStub(parts_.channel(target));
  auto ctx = std::make_shared<grpc::ClientContext>();
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return;
    ctx_ = ctx;
  }
  auto stream = stub->Session(ctx.get());
  v1::NodeMessage hello;
  *hello.mutable_register_() = BuildRegister();
  v1::CoordinatorMessage first;
  if (!stream->Write(hello) || !stream->Read(&first) || !first.has_registered()) {
    Finish(*stream, ctx);
    return;
  }
  const v1::Registered& reg = first.registered();
  if (!reg.accepted()) {
    bool redirected = !reg.leader_address().empty() && reg.leader_address() != target;
    common::Log(redirected ? common::LogLevel::kInfo : common::LogLevel::kError, "node",
                absl::StrCat(target, " refused registration: ", reg.reason()));
    if (redirected) {
      absl::MutexLock lock(&mu_);
      redirect_ = reg.leader_address();
    }
    Finish(*stream, ctx);
    return;
  }
  if (!parts_.admit_term(reg.term(), reg.coordinator_id())) {
    auto [highest, holder] = parts_.fence.highest();
    common::Log(
        common::LogLevel::kWarning, "node",
        absl::StrCat(target, " leads term ", reg.term(), ", but this node has seen term ", highest,
                     holder.empty() ? "" : absl::StrCat(" of ", holder), ": not its node"));
    Finish(*stream, ctx);
    return;
  }
  const int64_t term = reg.term();
  const std::string leader = reg.coordinator_id();
  common::Log(common::LogLevel::kInfo, "node",
              absl::StrCat("registered with ", leader.empty() ? target : leader, " at ", target,
                           " (term ", term, ")"));
  {
    absl::MutexLock lock(&mu_);
    target_ = target;
  }
  Apply(first);
  std::atomic<bool> broken{false};
  std::thread reader([&] {
    v1::CoordinatorMessage msg;
    while (stream->Read(&msg)) Apply(msg);
    broken.store(true);
    absl::MutexLock lock(&mu_);
    nudge_ = true;  // wake the writer
  });
  {
    // Reports every interval, on the clock's timer (nudges come between).
    absl::MutexLock lock(&mu_);
    woken_ = false;
    wake_.ArmIn(options_.report_interval);
  }
  while (true) {
    bool report_now = false, check = false;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](CoordinatorSession* s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return s->stop_ || s->nudge_ || s->leader_check_ || s->woken_ || !s->outbox_.empty();
          },
          this));
      if (stop_) break;
      check = leader_check_;
      report_now = nudge_ || woken_;  // nudged, or the interval passed
      if (woken_) {
        woken_ = false;
        wake_.ArmIn(options_.report_interval);
      }
      nudge_ = false;
      leader_check_ = false;
    }
    if (broken.load()) break;
    if (check || report_now) {
      (void)ObserveLeaderClaims();  // a newer claim (from gossip or a dispatch) ends the session
      if (Superseded(term, leader)) {
        auto [highest, holder] = parts_.fence.highest();
        common::Log(
            common::LogLevel::kInfo, "node",
            absl::StrCat("term ", highest, holder.empty() ? "" : absl::StrCat(" of ", holder),
                         " supersedes term ", term, ": leaving ", target));
        break;
      }
    }
    if (!WriteRecords(*stream)) break;
    if (!report_now) continue;
    v1::NodeMessage report;
    FillCommon(report.mutable_report());
    if (!stream->Write(report)) break;
    if (parts_.on_reported) parts_.on_reported();
  }
  ctx->TryCancel();
  reader.join();
  Finish(*stream, ctx);
  {
    absl::MutexLock lock(&mu_);
    target_.clear();
  }
  common::Log(common::LogLevel::kWarning, "node", absl::StrCat("lost the coordinator at ", target));
}

template <typename Stream>
bool CoordinatorSession::WriteRecords(Stream& stream) {
  constexpr size_t kBatch = 1000;
  while (true) {
    v1::NodeMessage m;
    {
      absl::MutexLock lock(&mu_);
      if (outbox_.empty()) return true;
      size_t n = std::min(kBatch, outbox_.size());
      for (size_t i = 0; i < n; ++i) {
        *m.mutable_records()->add_events() = std::move(outbox_.front());
        outbox_.pop_front();
      }
    }
    // A failed write loses this batch with the stream: the leader's next
    // plan reassigns the units and their records resume with a gap.
    if (!stream.Write(m)) return false;
  }
}

template <typename Stream>
void CoordinatorSession::Finish(Stream& stream, const std::shared_ptr<grpc::ClientContext>& ctx) {
  ctx->TryCancel();
  (void)stream.Finish();
  absl::MutexLock lock(&mu_);
  ctx_.reset();
}

void CoordinatorSession::Apply(const v1::CoordinatorMessage& msg) {
  auto apply_limits = [&](const v1::Limits& limits) {
    for (const auto& [exchange, pool, capacity] : wire::LimitsFromProto(limits)) {
      if (ExchangeLane* lane = FindLane(parts_.lanes, exchange)) {
        (void)lane->SetCapacity(pool, capacity);
      }
    }
  };
  if (msg.has_registered()) {
    const v1::Registered& r = msg.registered();
    apply_limits(r.limits());
    if (parts_.on_sinks) parts_.on_sinks(std::vector<std::string>(r.sinks().begin(), r.sinks().end()));
    std::map<std::string, std::string> offered;
    for (const v1::ExchangeEndpoint& e : r.endpoints()) {
      offered[e.exchange()] = e.rest_url();
      if (!e.ws_url().empty() && parts_.set_ws_endpoint) parts_.set_ws_endpoint(e.exchange(), e.ws_url());
    }
    for (const auto& [exchange, lane] : parts_.lanes) {
      if (options_.own_urls.contains(exchange)) continue;  // our own setting wins
      auto it = offered.find(exchange);
      std::string url = it != offered.end() ? it->second : lane->rules().rest_base();
      if (lane->rest_url() != url) parts_.set_endpoint(exchange, url);
    }
  } else if (msg.has_limits()) {
    apply_limits(msg.limits());
  } else if (msg.has_leases()) {
    ApplyLeases(msg.leases());
  } else if (msg.has_units()) {
    if (parts_.on_units && parts_.admit_term(msg.units().term(), msg.units().coordinator_id())) {
      parts_.on_units(msg.units());
    }
  } else if (msg.has_drain()) {
    common::Log(common::LogLevel::kInfo, "node",
                msg.drain().draining() ? "drained by the coordinator" : "back in rotation");
  }
}

void CoordinatorSession::ApplyLeases(const v1::Leases& leases) {
  // Only the newest leader hands out shares of an account.
  if (!parts_.admit_term(leases.term(), leases.coordinator_id())) return;
  absl::Time expires = parts_.clock.Now() + absl::Milliseconds(leases.duration_ms());
  std::map<std::string, std::vector<LeasedPool>> by_exchange;
  for (const v1::AccountLease& l : leases.leases()) {
    by_exchange[l.exchange()].push_back({l.account(), l.pool(), l.units()});
  }
  for (const auto& [exchange, lane] : parts_.lanes) lane->SetLeases(by_exchange[exchange], expires);
  absl::MutexLock lock(&mu_);
  leases_ = leases;
  leases_received_ = parts_.clock.Now();
  leases_expire_ = expires;
}

// What a registration and a report both carry: clocks, bans, the lanes' own
// requests, the ledger, the node's time.
template <typename Msg>
void CoordinatorSession::FillCommon(Msg* m) {
  for (const auto& [exchange, lane] : parts_.lanes) {
    if (ClockView c = lane->clock(); c.measured) {
      wire::ClockToProto({exchange, c.offset, c.uncertainty}, m->add_clocks());
    }
    if (std::optional<Park> p = lane->ActivePark()) {
      wire::BanToProto(p->ToBan(exchange), m->add_bans());
    }
    for (const common::UsageEvent& ev : lane->TakeEvents()) {
      wire::UsageEventToProto(lane->rules(), ev, m->add_events());
    }
    wire::PoolUsageToProto(exchange, options_.egress_ip, lane->Usage(), m->mutable_usage());
  }
  m->set_node_time_unix_us(common::ToUnixMicros(parts_.clock.Now()));
  if (parts_.sink_states) {
    for (v1::SinkState& s : parts_.sink_states()) *m->add_sinks() = std::move(s);
  }
}

v1::Register CoordinatorSession::BuildRegister() {
  v1::Register r;
  r.set_node_id(options_.node_id);
  r.set_egress_ip(options_.egress_ip);
  r.set_grpc_address(advertise_);
  r.set_version(MP_VERSION);
  for (const auto& [exchange, lane] : parts_.lanes) r.add_exchanges(exchange);
  r.set_highest_term(parts_.fence.highest().first);
  FillCommon(&r);
  {
    // The leases still running, with the allocation they came from, so
    // a new leader shares out no account twice.
    absl::MutexLock lock(&mu_);
    absl::Time now = parts_.clock.Now();
    if (now < leases_expire_) {
      // What the leader was still taking back, counted from when it came.
      int64_t since = absl::ToInt64Milliseconds(now - leases_received_);
      for (const v1::AccountLease& l : leases_.leases()) {
        v1::AccountLease* out = r.add_leases();
        *out = l;
        for (v1::LeaseFreeing& f : *out->mutable_freeing()) {
          f.set_ms_left(std::max<int64_t>(0, f.ms_left() - since));
        }
      }
    }
  }
  for (const auto& [exchange, lane] : parts_.lanes) {
    for (const common::UsageEvent& ev : lane->RecentRolling()) {
      wire::UsageEventToProto(lane->rules(), ev, r.add_recent());
    }
  }
  r.set_recent_complete(true);
  return r;
}

}  // namespace marketprism::node
