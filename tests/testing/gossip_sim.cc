#include "tests/testing/gossip_sim.h"

#include "absl/strings/str_cat.h"

namespace marketprism::testing {

using common::gossip::Core;
using common::gossip::MemberEvent;
using common::gossip::StreamResult;

GossipSim::GossipSim(Options options)
    : options_(std::move(options)),
      rng_(options_.seed),
      start_(absl::FromUnixSeconds(1'790'000'000)),
      now_(start_) {}

void GossipSim::Mix(uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    trace_ ^= (v >> (8 * i)) & 0xff;
    trace_ *= 1099511628211ULL;
  }
}

void GossipSim::At(absl::Time t, Action a) { events_.push(Event{t, seq_++, std::move(a)}); }

int GossipSim::Add(std::vector<int> seeds, absl::Time at) {
  int i = size();
  return AddAt(absl::StrCat("10.", (i / 250) % 250, ".", i % 250, ".1:7946"), std::move(seeds), at);
}

int GossipSim::Restart(int i, std::vector<int> seeds) {
  Crash(i);
  return AddAt(members_[static_cast<size_t>(i)]->addr, std::move(seeds), now_);
}

int GossipSim::AddAt(std::string addr, std::vector<int> seeds, absl::Time at) {
  int i = size();
  auto m = std::make_unique<Member>();
  m->addr = std::move(addr);
  do {
    m->id = rng_();
  } while (m->id == 0 || by_id_.count(m->id));
  by_addr_[m->addr] = i;
  by_id_[m->id] = i;
  members_.push_back(std::move(m));
  uint64_t core_seed = rng_();
  At(at, [this, i, seeds, core_seed] {
    Member& m = *members_[static_cast<size_t>(i)];
    common::gossip::GossipOptions o = options_.gossip;
    o.name = absl::StrCat("m", i);
    o.addr = m.addr;
    m.core = std::make_unique<Core>(o, m.id, now_, core_seed);
    std::vector<std::string> addrs;
    for (int s : seeds) addrs.push_back(members_[static_cast<size_t>(s)]->addr);
    m.core->Join(now_, addrs);
    Drain(i);
  });
  return i;
}

void GossipSim::AddMany(int n, absl::Duration spacing) {
  int first = size();
  for (int k = 0; k < n; ++k) {
    std::vector<int> seeds;
    if (first + k > 0) seeds.push_back(0);
    Add(seeds, now_ + spacing * k);
  }
}

void GossipSim::RunUntil(absl::Time t) {
  while (!events_.empty() && events_.top().at <= t) {
    Event e = events_.top();
    events_.pop();
    now_ = e.at;
    e.action();
  }
  now_ = std::max(now_, t);
}

bool GossipSim::running(int i) const {
  const Member& m = *members_[static_cast<size_t>(i)];
  return m.core != nullptr && !m.crashed && !m.down;
}

int GossipSim::IndexOf(common::gossip::MemberId id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? -1 : it->second;
}

int GossipSim::ByAddr(const std::string& addr) const {
  auto it = by_addr_.find(addr);
  return it == by_addr_.end() ? -1 : it->second;
}

absl::Duration GossipSim::Delay() {
  int64_t lo = absl::ToInt64Microseconds(options_.min_delay);
  int64_t hi = std::max(lo, absl::ToInt64Microseconds(options_.max_delay));
  return absl::Microseconds(std::uniform_int_distribution<int64_t>(lo, hi)(rng_));
}

bool GossipSim::Connected(int a, int b) const {
  return members_[static_cast<size_t>(a)]->side == members_[static_cast<size_t>(b)]->side;
}

void GossipSim::Defer(int i, Action a) {
  Member& m = *members_[static_cast<size_t>(i)];
  At(m.stalled_until, [this, i, a = std::move(a)]() mutable { OnMember(i, std::move(a)); });
}

void GossipSim::Schedule(int i) {
  Member& m = *members_[static_cast<size_t>(i)];
  absl::Time t = std::max(now_, m.core->NextWake());
  if (t <= m.last_tick) {
    // The core ticked at this instant and still wants a tick now: a timer
    // that does not advance would spin here forever. Count it (tests check
    // there are none) and move on a millisecond.
    ++stuck_ticks_;
    t = m.last_tick + absl::Milliseconds(1);
  }
  if (t >= m.scheduled_tick) return;
  m.scheduled_tick = t;
  At(t, [this, i, t] {
    Member& m = *members_[static_cast<size_t>(i)];
    if (m.scheduled_tick != t) return;
    m.scheduled_tick = absl::InfiniteFuture();
    OnMember(i, [this, i] {
      members_[static_cast<size_t>(i)]->last_tick = now_;
      members_[static_cast<size_t>(i)]->core->Tick(now_);
      Drain(i);
    });
  });
}

void GossipSim::Drain(int i) {
  Member& m = *members_[static_cast<size_t>(i)];
  common::gossip::Outbox out = m.core->TakeOutbox();
  for (const MemberEvent& e : out.events) {
    int subject = IndexOf(e.member.id);
    log_.push_back(Observation{now_, i, subject, e.kind, e.member.incarnation});
    Mix(static_cast<uint64_t>(absl::ToUnixMicros(now_)));
    Mix(static_cast<uint64_t>(i) << 32 | static_cast<uint32_t>(subject));
    Mix(static_cast<uint64_t>(e.kind));
  }
  for (auto& p : out.packets) {
    DeliverPacket(i, std::make_shared<const common::gossip::Outbox::Packet>(std::move(p)));
  }
  for (auto& s : out.streams) DeliverStream(i, s.id, s.addr, std::move(s.request));
  Schedule(i);
}

void GossipSim::DeliverPacket(int from, std::shared_ptr<const common::gossip::Outbox::Packet> p) {
  ++packets_;
  Mix(static_cast<uint64_t>(from) << 32 | p->messages.size());
  for (const common::gossip::SharedMessage& m : p->messages) Mix(static_cast<uint64_t>(m->kind_case()));
  const std::string& to_addr = p->addr;
  int j = ByAddr(to_addr);
  if (j < 0 || !Connected(from, j)) return;
  if (std::uniform_real_distribution<double>(0, 1)(rng_) < options_.loss) return;
  std::string from_addr = members_[static_cast<size_t>(from)]->addr;
  At(now_ + Delay(), [this, from, j, from_addr, p] {
    Member& to = *members_[static_cast<size_t>(j)];
    if (to.down) return;
    if (to.crashed) {
      // The host answers: ICMP port unreachable.
      if (std::uniform_real_distribution<double>(0, 1)(rng_) < options_.loss) return;
      At(now_ + Delay(), [this, from, p] {
        OnMember(from, [this, from, p] {
          members_[static_cast<size_t>(from)]->core->HandleUnreachable(now_, p->addr);
          Drain(from);
        });
      });
      return;
    }
    OnMember(j, [this, j, from_addr, p] {
      members_[static_cast<size_t>(j)]->core->HandlePacket(now_, from_addr, p->anonymous() ? 0 : p->from, p->messages);
      Drain(j);
    });
  });
}

void GossipSim::DeliverStream(int from, uint64_t id, const std::string& to_addr, v1::StreamRequest request) {
  // Requests and responses (a sync carries every member) are shared, not
  // copied, between the events that carry them.
  auto req = std::make_shared<const v1::StreamRequest>(std::move(request));
  auto done = std::make_shared<bool>(false);
  auto finish = [this, from, id, done](std::shared_ptr<StreamResult> r) {
    if (*done) return;
    *done = true;
    OnMember(from, [this, from, id, r] {
      members_[static_cast<size_t>(from)]->core->HandleStreamResult(now_, id, std::move(*r));
      Drain(from);
    });
  };
  At(now_ + options_.stream_timeout, [finish] { finish(std::make_shared<StreamResult>()); });
  int j = ByAddr(to_addr);
  if (j < 0) {
    At(now_ + Delay() * 2, [finish] { finish(std::make_shared<StreamResult>(StreamResult{std::nullopt, true})); });
    return;
  }
  if (req->has_sync() && !req->sync().partial()) {
    ++syncs_started_[from];
    ++syncs_answered_[j];
  }
  if (!Connected(from, j)) return;  // times out
  auto rto = [this] {
    return std::uniform_real_distribution<double>(0, 1)(rng_) < options_.loss ? absl::Milliseconds(200)
                                                                             : absl::ZeroDuration();
  };
  std::string from_addr = members_[static_cast<size_t>(from)]->addr;
  At(now_ + Delay() + rto(), [this, j, from_addr, req, finish, rto] {
    Member& to = *members_[static_cast<size_t>(j)];
    if (to.down) return;
    if (to.crashed) {
      At(now_ + Delay(), [finish] { finish(std::make_shared<StreamResult>(StreamResult{std::nullopt, true})); });
      return;
    }
    OnMember(j, [this, j, from_addr, req, finish, rto] {
      auto result = std::make_shared<StreamResult>();
      result->response = members_[static_cast<size_t>(j)]->core->HandleStream(now_, from_addr, *req);
      Drain(j);
      At(now_ + Delay() + rto(), [finish, result] { finish(result); });
    });
  });
}

void GossipSim::Crash(int i) { members_[static_cast<size_t>(i)]->crashed = true; }

void GossipSim::HostDown(int i) {
  members_[static_cast<size_t>(i)]->crashed = true;
  members_[static_cast<size_t>(i)]->down = true;
}

void GossipSim::Stall(int i, absl::Duration d) {
  Member& m = *members_[static_cast<size_t>(i)];
  m.stalled_until = std::max(m.stalled_until, now_ + d);
}

void GossipSim::Partition(std::vector<int> side) {
  for (auto& m : members_) m->side = 0;
  for (int i : side) members_[static_cast<size_t>(i)]->side = 1;
}

void GossipSim::Heal() {
  for (auto& m : members_) m->side = 0;
}

void GossipSim::SetRecord(int i, const std::string& key, const std::string& value, bool urgent) {
  OnMember(i, [this, i, key, value, urgent] {
    members_[static_cast<size_t>(i)]->core->SetRecord(now_, key, value, urgent);
    Drain(i);
  });
}

void GossipSim::Leave(int i) {
  OnMember(i, [this, i] {
    members_[static_cast<size_t>(i)]->core->Leave(now_);
    Drain(i);
    At(now_ + absl::Milliseconds(200), [this, i] { Crash(i); });
  });
}

std::optional<common::gossip::MemberState> GossipSim::StateAt(int observer, int subject) const {
  const Member& o = *members_[static_cast<size_t>(observer)];
  if (o.core == nullptr) return std::nullopt;
  return o.core->StateOf(members_[static_cast<size_t>(subject)]->id);
}

}  // namespace marketprism::testing
