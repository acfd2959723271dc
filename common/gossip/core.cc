#include "common/gossip/core.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/int_math.h"

namespace marketprism::common::gossip {

namespace {

MemberState FromProto(v1::MemberState s) {
  switch (s) {
    case v1::SUSPECT:
      return MemberState::kSuspect;
    case v1::DEAD:
      return MemberState::kDead;
    case v1::LEFT:
      return MemberState::kLeft;
    default:
      return MemberState::kAlive;
  }
}

v1::MemberState ToProto(MemberState s) {
  switch (s) {
    case MemberState::kAlive:
      return v1::ALIVE;
    case MemberState::kSuspect:
      return v1::SUSPECT;
    case MemberState::kDead:
      return v1::DEAD;
    case MemberState::kLeft:
      return v1::LEFT;
  }
  return v1::ALIVE;
}

// Within one incarnation a later state wins: alive < suspect < dead < left.
int Rank(MemberState s) { return static_cast<int>(s); }

bool Live(MemberState s) { return s == MemberState::kAlive || s == MemberState::kSuspect; }

}  // namespace

absl::string_view MemberStateName(MemberState s) {
  switch (s) {
    case MemberState::kAlive:
      return "alive";
    case MemberState::kSuspect:
      return "suspect";
    case MemberState::kDead:
      return "dead";
    case MemberState::kLeft:
      return "left";
  }
  return "?";
}

absl::string_view MemberEventName(MemberEvent::Kind k) {
  switch (k) {
    case MemberEvent::Kind::kJoined:
      return "joined";
    case MemberEvent::Kind::kUpdated:
      return "updated";
    case MemberEvent::Kind::kSuspect:
      return "suspect";
    case MemberEvent::Kind::kAlive:
      return "alive";
    case MemberEvent::Kind::kDead:
      return "dead";
    case MemberEvent::Kind::kLeft:
      return "left";
    case MemberEvent::Kind::kReaped:
      return "reaped";
  }
  return "?";
}

Core::Core(GossipOptions options, MemberId self, absl::Time now, uint64_t seed)
    : options_(std::move(options)), self_(self), rng_(seed) {
  Entry& me = members_[self_];
  me.id = self_;
  me.name = options_.name;
  me.addr = options_.addr;
  me.incarnation = 1;
  me.state_since = now;
  me.last_heard = now;
  ring_.push_back(self_);
  next_probe_at_ = NextSlotStart(now);
  next_gossip_ = now + options_.gossip_interval;
  int64_t sync_us = std::max<int64_t>(1, absl::ToInt64Microseconds(options_.sync_interval));
  sync_phase_us_ = std::uniform_int_distribution<int64_t>(0, sync_us - 1)(rng_);
  next_round_sync_ = NextSyncRound(now);
  next_sync_ = next_round_sync_;
  next_seed_ = absl::InfiniteFuture();
  next_reconnect_ = now + options_.reconnect_interval;
  next_reap_ = now + absl::Seconds(1);
  expected_wake_ = NextWake();
}

// ---- membership -----------------------------------------------------------------

Core::Entry& Core::SelfEntry() { return members_.at(self_); }
const Core::Entry& Core::SelfEntry() const { return members_.at(self_); }

Core::Entry* Core::Find(MemberId id) {
  auto it = members_.find(id);
  return it == members_.end() ? nullptr : &it->second;
}

Core::Entry* Core::FindByAddr(const std::string& addr) {
  auto ids = by_addr_.find(addr);
  if (ids == by_addr_.end()) return nullptr;
  Entry* found = nullptr;
  for (MemberId id : ids->second) {
    Entry& e = members_.at(id);
    if (id == self_) continue;
    // Prefer the live one: a restarted process has a new id at the same
    // address. Among equals, the lowest id.
    if (found == nullptr || (Live(e.state) && !Live(found->state)) ||
        (Live(e.state) == Live(found->state) && id < found->id)) {
      found = &e;
    }
  }
  return found;
}

void Core::AddPending(uint32_t seq, PendingAck p) {
  pending_deadlines_.emplace(p.deadline, seq);
  pending_[seq] = std::move(p);
}

void Core::ErasePending(absl::flat_hash_map<uint32_t, PendingAck>::iterator it) {
  pending_deadlines_.erase({it->second.deadline, it->first});
  pending_.erase(it);
}

void Core::IndexAddr(MemberId id, const std::string& addr, bool in) {
  if (addr.empty()) return;
  std::vector<MemberId>& ids = by_addr_[addr];
  if (in) {
    ids.push_back(id);
    return;
  }
  ids.erase(std::remove(ids.begin(), ids.end(), id), ids.end());
  if (ids.empty()) by_addr_.erase(addr);
}

uint32_t Core::incarnation() const { return SelfEntry().incarnation; }

MemberView Core::View(const Entry& e) const {
  MemberView v;
  v.id = e.id;
  v.name = e.name;
  v.addr = e.addr;
  v.incarnation = e.incarnation;
  v.state = e.state;
  v.state_since = e.state_since;
  v.last_heard = e.last_heard;
  v.records = e.records;
  v.self = e.id == self_;
  return v;
}

std::vector<MemberView> Core::Members() const {
  std::vector<MemberView> out;
  out.reserve(members_.size());
  for (const auto& [id, e] : members_) out.push_back(View(e));
  std::sort(out.begin(), out.end(), [](const MemberView& a, const MemberView& b) {
    return a.name != b.name ? a.name < b.name : a.id < b.id;
  });
  return out;
}

std::optional<MemberView> Core::Member(MemberId id) const {
  auto it = members_.find(id);
  if (it == members_.end()) return std::nullopt;
  return View(it->second);
}

std::optional<MemberState> Core::StateOf(MemberId id) const {
  auto it = members_.find(id);
  if (it == members_.end()) return std::nullopt;
  return it->second.state;
}

std::optional<std::string> Core::RecordOf(MemberId id, const std::string& key) const {
  auto it = members_.find(id);
  if (it == members_.end()) return std::nullopt;
  auto r = it->second.records.find(key);
  if (r == it->second.records.end()) return std::nullopt;
  return r->second.value;
}

void Core::Emit(MemberEvent::Kind kind, const Entry& e, std::string reason) {
  out_.events.push_back(MemberEvent{kind, View(e), std::move(reason)});
}

void Core::SetState(absl::Time now, Entry& e, MemberState s) {
  suspicion_wake_.reset();  // the live count, or the suspects, change
  if (e.state == MemberState::kDead && Live(s)) {
    e.revived_at = now;
    if (now - last_revival_ < 2 * options_.reconnect_interval) {
      // Several members back from the dead at once: a partition healing.
      // Sync soon (and again while revivals go on) rather than in a sync
      // interval, to pick up the verdicts and records of the other side.
      next_sync_ = std::min(next_sync_, now + options_.reconnect_interval);
    }
    last_revival_ = now;
  }
  e.state = s;
  e.state_since = now;
  if (s == MemberState::kSuspect) {
    suspects_.insert(e.id);
  } else {
    e.suspicion.reset();
    suspects_.erase(e.id);
  }
  SetInRing(e.id, e.id == self_ ? !left_ : Live(s));
  if (e.id != self_ && !Live(s)) {
    gone_.insert(e.id);
  } else {
    gone_.erase(e.id);
  }
}

void Core::SetInRing(MemberId id, bool in) {
  auto it = std::lower_bound(ring_.begin(), ring_.end(), id);
  bool there = it != ring_.end() && *it == id;
  if (in && !there) ring_.insert(it, id);
  if (!in && there) ring_.erase(it);
}

bool Core::CutOff(absl::Time now, MemberId id) const {
  auto it = members_.find(id);
  if (it == members_.end() || id == self_) return false;
  return !Live(it->second.state) || now - it->second.revived_at < 2 * options_.stall_budget;
}

void Core::MarkHeard(absl::Time now, MemberId id) {
  if (Entry* e = Find(id)) e->last_heard = now;
}

void Core::Apply(absl::Time now, const v1::MemberUpdate& u, const std::string& informant_addr,
                 bool from_sync, bool doubtful_source) {
  MemberState state = FromProto(u.state());
  if (u.id() == self_) {
    if (left_) return;
    Entry& me = SelfEntry();
    if ((state != MemberState::kAlive && u.incarnation() >= me.incarnation) ||
        (state == MemberState::kAlive && u.incarnation() > me.incarnation)) {
      Refute(now, u.incarnation(), informant_addr);
    } else if (state != MemberState::kAlive && !informant_addr.empty()) {
      // The informant holds an older doubt about us, one we refuted while
      // it could not hear (across a partition). Our refutation, and any
      // records it carried, never reached it: send it our present self.
      std::vector<v1::GossipMessage> self_now = {MemberMessage(me)};
      for (const auto& [key, rec] : me.records) self_now.push_back(RecordMessage(me, key));
      Send(informant_addr, self_now);
      // The accuser holds the stale view too (the informant may only pass
      // its word on), and may hear nothing else of us for a while: tell it
      // over TCP, so that a lost datagram does not leave it believing it.
      const Entry* accuser = Find(u.accuser());
      if (accuser != nullptr && accuser->id != self_ && accuser->addr != informant_addr &&
          now - last_self_notice_[accuser->id] >= absl::Seconds(1)) {
        last_self_notice_[accuser->id] = now;
        v1::StreamRequest push;
        *push.mutable_push()->add_entries() = SelfWithRecords();
        StartStream(accuser->addr, std::move(push), PendingStream{PendingStream::Kind::kPush, accuser->id, 0, ""});
      }
    }
    return;
  }
  Entry* e = Find(u.id());
  if (e == nullptr) {
    Entry fresh;
    fresh.id = u.id();
    fresh.name = u.name();
    fresh.addr = u.addr();
    fresh.incarnation = u.incarnation();
    fresh.state = Live(state) ? MemberState::kAlive : state;
    fresh.state_since = now;
    if (fresh.addr.empty()) return;  // nothing to reach it by: wait for its alive
    Entry& added = members_[fresh.id] = std::move(fresh);
    IndexAddr(added.id, added.addr, true);
    if (!Live(added.state)) gone_.insert(added.id);
    if (Live(added.state)) {
      SetInRing(added.id, true);
      Emit(MemberEvent::Kind::kJoined, added);
      if (!from_sync) {
        Broadcast(MemberMessage(added), Reach::kGossip);
        CatchUp(now, added, u.record_version());
      }
    }
    return;
  }
  switch (state) {
    case MemberState::kAlive: {
      if (!from_sync) CatchUp(now, *e, u.record_version());
      if (u.incarnation() <= e->incarnation) return;
      MemberState before = e->state;
      e->incarnation = u.incarnation();
      if (!u.addr().empty() && u.addr() != e->addr) {
        IndexAddr(e->id, e->addr, false);
        e->addr = u.addr();
        IndexAddr(e->id, e->addr, true);
      }
      if (!u.name().empty()) e->name = u.name();
      if (before != MemberState::kAlive) {
        SetState(now, *e, MemberState::kAlive);
        Emit(before == MemberState::kSuspect ? MemberEvent::Kind::kAlive : MemberEvent::Kind::kJoined, *e);
      }
      Broadcast(MemberMessage(*e), Reach::kGossip);
      return;
    }
    case MemberState::kSuspect:
    case MemberState::kDead: {
      if (u.incarnation() < e->incarnation || !Live(e->state)) return;
      bool fresh_contact = e->last_heard != absl::InfinitePast() &&
                           now - e->last_heard < options_.stall_budget;
      // A death declared by one who had not heard from it for longer than we
      // have: we heard from it after the accuser lost it (a partition).
      bool heard_since = state == MemberState::kDead && u.silent_ms() > 0 && fresh_contact &&
                         now - e->last_heard + absl::Milliseconds(250) < absl::Milliseconds(u.silent_ms());
      // From a sender we held dead until just now (across a healed
      // partition), a death of a member we hold alive is its stale view.
      // So is a death declared by a member we hold dead or revived only just
      // now, whoever passes it on: after a partition heals, each side's
      // verdicts on the other reach members that never lost touch with the
      // accused, by relays that were on neither side.
      bool stale_view = e->state == MemberState::kAlive && (doubtful_source || CutOff(now, u.accuser()));
      auto tell_accused = [&] {
        v1::GossipMessage m;
        *m.mutable_member() = u;
        Send(e->addr, {m});
      };
      if ((from_sync && fresh_contact) || heard_since || stale_view) {
        // Someone across a (healed) partition thinks it is gone, but it talks
        // to us: tell it, so it refutes, rather than doubting it ourselves.
        tell_accused();
        return;
      }
      // A suspicion or verdict reporting a silence longer than the budget
      // that we did not share (we held it plainly alive, or doubted it only
      // on such news): the accuser was cut off from us, so its doubt is news
      // here, and possibly stale (both sides of a healed partition hold the
      // other dead). Doubt it from now, and tell the accused so that, if it
      // is alive, it refutes in time. (Crashes confirmed on the spot carry
      // no silence.)
      bool doubted_before = e->state == MemberState::kSuspect && e->suspicion && e->suspicion->from_verdict;
      if (!from_sync && (e->state == MemberState::kAlive || doubted_before) &&
          absl::Milliseconds(u.silent_ms()) >= options_.stall_budget) {
        e->incarnation = u.incarnation();
        Suspect(now, *e, u.accuser(), now, /*local=*/false);
        if (e->suspicion) e->suspicion->from_verdict = true;
        tell_accused();
        return;
      }
      e->incarnation = u.incarnation();
      if (state == MemberState::kSuspect || from_sync) {
        Suspect(now, *e, u.accuser(), from_sync ? now : now - absl::Milliseconds(u.silent_ms()), /*local=*/false);
        return;
      }
      SetState(now, *e, MemberState::kDead);
      const Entry* accuser = Find(u.accuser());
      Emit(MemberEvent::Kind::kDead, *e,
           absl::StrCat("declared dead by ", accuser != nullptr ? accuser->name : "another member"));
      Broadcast(MemberMessage(*e, u.accuser(), u.silent_ms()), Reach::kGossip);
      return;
    }
    case MemberState::kLeft: {
      if (u.incarnation() < e->incarnation || e->state == MemberState::kLeft) return;
      e->incarnation = u.incarnation();
      SetState(now, *e, MemberState::kLeft);
      Emit(MemberEvent::Kind::kLeft, *e);
      Broadcast(MemberMessage(*e), Reach::kGossip);
      return;
    }
  }
}

void Core::CatchUp(absl::Time now, Entry& e, uint64_t their_version, absl::Duration delay) {
  // Records travel best-effort; the alive message says how far the owner
  // is. If we are behind (a lost packet), ask the owner for the rest. The
  // records may still be on their way in this very packet: ask a little
  // later, only if still behind.
  if (their_version <= e.record_version || e.id == self_) return;
  // A probe's hint does not raise a pending catch-up's mark: with a record
  // updated every second, the newest hint is always just ahead of us.
  if (delay > absl::ZeroDuration() && catch_ups_.count(e.id)) return;
  e.catch_up_version = std::max(e.catch_up_version, their_version);
  if (catch_ups_.count(e.id)) return;
  e.catch_up_at = now + (delay > absl::ZeroDuration() ? delay : options_.gossip_interval);
  catch_ups_.insert(e.id);
  catch_up_wake_ = std::min(catch_up_wake_, e.catch_up_at);
}

void Core::CatchUpTick(absl::Time now) {
  if (now < catch_up_wake_) return;
  std::vector<MemberId> due;
  catch_up_wake_ = absl::InfiniteFuture();
  for (MemberId id : catch_ups_) {
    absl::Time at = members_.at(id).catch_up_at;
    if (at <= now) {
      due.push_back(id);
    } else {
      catch_up_wake_ = std::min(catch_up_wake_, at);
    }
  }
  for (MemberId id : due) {
    catch_ups_.erase(id);
    Entry& e = members_.at(id);
    e.catch_up_at = absl::InfiniteFuture();
    if (e.record_version >= e.catch_up_version || !Live(e.state)) continue;
    StartStream(e.addr, SyncRequest(/*only=*/&e), PendingStream{PendingStream::Kind::kCatchUp, e.id, 0, ""});
  }
}

void Core::ApplyRecord(absl::Time now, const v1::RecordUpdate& r, bool from_sync, const SharedMessage* as_received) {
  if (r.owner() == self_) return;
  Entry* e = Find(r.owner());
  if (e == nullptr) return;  // its entry (and records) will come by sync
  Record& rec = e->records[r.key()];
  if (r.version() <= rec.version) return;
  rec.version = r.version();
  rec.value = r.value();
  e->record_version = std::max(e->record_version, r.version());
  if (options_.report_updates) Emit(MemberEvent::Kind::kUpdated, *e);
  if (from_sync) return;
  switch (r.spread()) {
    case v1::SPREAD_DONE:
      return;
    case v1::SPREAD_FORWARD: {
      v1::GossipMessage m;
      *m.mutable_record() = r;
      m.mutable_record()->set_spread(v1::SPREAD_DONE);
      QueueForColumn(now, std::make_shared<const v1::GossipMessage>(std::move(m)));
      return;
    }
    default:
      break;
  }
  if (as_received != nullptr) {
    Broadcast(*as_received, Reach::kGossip, /*soft=*/true);  // what we now hold
  } else {
    v1::GossipMessage m;
    *m.mutable_record() = r;
    Broadcast(std::move(m), Reach::kGossip, /*soft=*/true);
  }
}

void Core::Suspect(absl::Time now, Entry& e, MemberId accuser, absl::Time anchor, bool local) {
  if (!Live(e.state)) return;
  suspicion_wake_.reset();
  bool news = false;
  if (e.state != MemberState::kSuspect) {
    SetState(now, e, MemberState::kSuspect);
    e.suspicion = Suspicion{anchor, {accuser}, absl::InfinitePast()};
    news = true;
    const Entry* by = Find(accuser);
    Emit(MemberEvent::Kind::kSuspect, e,
         local ? "did not answer this member's probes"
               : absl::StrCat("suspected by ", by != nullptr ? by->name : "another member"));
  } else {
    // Accusers beyond those that shorten the wait change nothing: they are
    // counted but not passed on.
    news = e.suspicion->accusers.insert(accuser).second &&
           static_cast<int>(e.suspicion->accusers.size()) <= Confirmations() + 1;
    e.suspicion->anchor = std::min(e.suspicion->anchor, anchor);
  }
  if (local && now - e.suspicion->last_notice >= options_.probe_interval) {
    // Tell the suspect at once, so that if it is merely slow it refutes.
    Send(e.addr, {MemberMessage(e, self_, 0)});
    e.suspicion->last_notice = now;
  }
  if (news) {
    auto silent = static_cast<uint32_t>(std::max<int64_t>(0, absl::ToInt64Milliseconds(now - anchor)));
    Broadcast(MemberMessage(e, accuser, silent), Reach::kGossip);
  }
}

void Core::DeclareDead(absl::Time now, Entry& e, const std::string& reason, bool confirmed, bool direct) {
  if (!Live(e.state)) return;
  // How long we had not heard from it: a receiver that heard from it since
  // knows our verdict is stale (we were cut off from it, it was not gone).
  // Never heard from it directly (in a large cluster, quite possible): at
  // least since the earliest unanswered probe. A crash confirmed just now
  // is fresh evidence: no silence.
  absl::Time since = e.last_heard;
  if (since == absl::InfinitePast() && e.suspicion) since = e.suspicion->anchor;
  SetState(now, e, MemberState::kDead);
  e.confirming = false;
  Emit(MemberEvent::Kind::kDead, e, reason);
  uint32_t silent = 0;
  if (!confirmed && since != absl::InfinitePast()) {
    silent = static_cast<uint32_t>(std::clamp<int64_t>(absl::ToInt64Milliseconds(now - since), 1, 1 << 30));
  }
  Broadcast(MemberMessage(e, self_, silent), direct ? Reach::kEveryone : Reach::kGossip);
}

void Core::Refute(absl::Time now, uint32_t accused_incarnation, const std::string& informant_addr) {
  Entry& me = SelfEntry();
  me.incarnation = std::max(me.incarnation, accused_incarnation) + 1;
  Broadcast(MemberMessage(me), Reach::kEveryone);
  // Those who doubted us may have missed our records meanwhile (while they
  // held us dead, or across a partition): resend them with the refutation.
  for (const auto& [key, rec] : me.records) Broadcast(RecordMessage(me, key), Reach::kEveryone);
  if (!informant_addr.empty()) urgent_extra_addrs_.push_back(informant_addr);
  RaiseHealth(1);
}

void Core::Confirm(absl::Time now, Entry& e) {
  if (e.confirming) return;
  e.confirming = true;
  uint32_t seq = next_seq_++;
  v1::StreamRequest req;
  req.mutable_ping()->set_seq(seq);
  req.mutable_ping()->set_target(e.id);
  StartStream(e.addr, std::move(req), PendingStream{PendingStream::Kind::kConfirm, e.id, seq, ""});
}

void Core::RaiseHealth(int by) { lhm_ = std::min(options_.max_local_health, lhm_ + by); }

// ---- messages ---------------------------------------------------------------------

v1::MemberUpdate Core::UpdateOf(const Entry& e) const {
  v1::MemberUpdate u;
  u.set_id(e.id);
  u.set_incarnation(e.incarnation);
  u.set_state(ToProto(e.state));
  if (e.state == MemberState::kAlive || e.state == MemberState::kLeft) {
    u.set_addr(e.addr);
    u.set_name(e.name);
  }
  if (e.state == MemberState::kAlive) u.set_record_version(e.record_version);
  return u;
}

v1::GossipMessage Core::MemberMessage(const Entry& e, MemberId accuser, uint32_t silent_ms) const {
  v1::GossipMessage m;
  v1::MemberUpdate* u = m.mutable_member();
  *u = UpdateOf(e);
  if (accuser != 0) u->set_accuser(accuser);
  if (silent_ms != 0) u->set_silent_ms(silent_ms);
  return m;
}

v1::GossipMessage Core::RecordMessage(const Entry& e, const std::string& key) const {
  v1::GossipMessage m;
  v1::RecordUpdate* r = m.mutable_record();
  r->set_owner(e.id);
  r->set_key(key);
  const Record& rec = e.records.at(key);
  r->set_version(rec.version);
  r->set_value(rec.value);
  return m;
}

int Core::Limit(bool soft) const {
  int mult = soft ? options_.soft_retransmit_mult : options_.retransmit_mult;
  int scale = static_cast<int>(std::ceil(std::log10(static_cast<double>(LiveCount()) + 1)));
  return std::max(1, mult * std::max(1, scale));
}

void Core::Broadcast(v1::GossipMessage m, Reach reach, bool soft) {
  Broadcast(std::make_shared<const v1::GossipMessage>(std::move(m)), reach, soft);
}

void Core::Broadcast(SharedMessage m, Reach reach, bool soft) {
  BroadcastQueue::Key key;
  if (m->has_record()) {
    key.subject = m->record().owner();
    key.record_key = m->record().key();
  } else {
    key.subject = m->member().id();
    key.suspicion = m->member().state() == v1::SUSPECT;
    key.accuser = m->member().accuser();
  }
  if (reach == Reach::kDirect) urgent_.push_back(m);
  if (reach == Reach::kEveryone) critical_.push_back(m);
  queue_.Push(std::move(key), std::move(m), Limit(soft));
}

namespace {

// Fills packets to `addr` with messages, starting a new one when the next
// does not fit in `max_payload` serialized bytes.
class PacketFiller {
 public:
  PacketFiller(std::vector<Outbox::Packet>& out, MemberId from, const std::string& addr, size_t max_payload)
      : out_(out), max_payload_(max_payload) {
    packet_.from = from;
    packet_.addr = addr;
  }
  void Add(SharedMessage m) {
    size_t bytes = m->ByteSizeLong() + 3;
    Add(std::move(m), bytes);
  }
  // `bytes`: its size plus framing, as measured by the caller.
  void Add(SharedMessage m, size_t bytes) {
    if (used_ + bytes > max_payload_ && !packet_.messages.empty()) Flush();
    used_ += bytes;
    packet_.messages.push_back(std::move(m));
  }
  // Adds a message the broadcast queue took to fit room(): it has measured
  // it already. Only Flush() may follow.
  void Append(SharedMessage m) { packet_.messages.push_back(std::move(m)); }
  size_t room() const { return max_payload_ - std::min(max_payload_, used_); }
  // Queues the packet being filled, if it holds anything.
  void Flush() {
    if (packet_.messages.empty()) return;
    Outbox::Packet next;
    next.from = packet_.from;
    next.addr = packet_.addr;
    out_.push_back(std::move(packet_));
    packet_ = std::move(next);
    used_ = kOverhead;
  }

 private:
  static constexpr size_t kOverhead = 9;  // the sender's id
  std::vector<Outbox::Packet>& out_;
  size_t max_payload_;
  Outbox::Packet packet_;
  size_t used_ = kOverhead;
};

}  // namespace

bool Outbox::Packet::anonymous() const {
  return !messages.empty() &&
         std::all_of(messages.begin(), messages.end(), [](const SharedMessage& m) { return m->has_ack(); });
}

v1::GossipPacket Outbox::Packet::ToProto() const {
  v1::GossipPacket p;
  if (!anonymous()) p.set_from(from);
  for (const SharedMessage& m : messages) *p.add_messages() = *m;
  return p;
}

void Core::Send(const std::string& addr, std::vector<v1::GossipMessage> messages) {
  std::vector<SharedMessage> shared;
  shared.reserve(messages.size());
  for (v1::GossipMessage& m : messages) shared.push_back(std::make_shared<const v1::GossipMessage>(std::move(m)));
  Send(addr, shared);
}

void Core::Send(const std::string& addr, const std::vector<SharedMessage>& messages) {
  if (addr.empty()) return;
  PacketFiller filler(out_.packets, self_, addr, options_.max_payload);
  for (const SharedMessage& m : messages) filler.Add(m);
  if (filler.room() > 0) {
    for (SharedMessage& m : queue_.Take(filler.room())) filler.Append(std::move(m));
  }
  filler.Flush();
}

GridTargets PlanGrid(size_t n, size_t me, size_t rows) {
  GridTargets t;
  if (n < 2 || me >= n) return t;
  rows = std::clamp<size_t>(rows, 1, n);
  // Row r holds positions [start(r), start(r + 1)): sizes differ by one at most.
  auto start = [&](size_t r) { return (r * n + rows - 1) / rows; };
  size_t mine = me * rows / n;
  size_t lo = start(mine), hi = start(mine + 1);
  size_t len = hi - lo, col = me - lo;
  for (size_t i = lo; i < hi; ++i) {
    if (i != me) t.row.push_back(i);
  }
  for (size_t r = 0; r < rows; ++r) {
    if (r == mine) continue;
    size_t a = start(r), lr = start(r + 1) - a;
    if (col < lr) t.column.push_back(a + col);
    // A column our row lacks (its row is one longer): covered by the member
    // at (column + row) mod our length, so no one of us takes them all.
    for (size_t c = len; c < lr; ++c) {
      if ((c + r) % len == col) t.column.push_back(a + c);
    }
  }
  return t;
}

size_t GridRows(size_t n, absl::Duration interval) {
  double rows = std::sqrt(static_cast<double>(n) * absl::ToDoubleSeconds(interval));
  return std::max<size_t>(1, static_cast<size_t>(std::llround(rows)));
}

GridTargets Core::Grid() const {
  auto it = std::lower_bound(ring_.begin(), ring_.end(), self_);
  if (it == ring_.end() || *it != self_) return {};  // we left
  return PlanGrid(ring_.size(), static_cast<size_t>(it - ring_.begin()),
                  GridRows(ring_.size(), options_.grid_interval));
}

void Core::SpreadSoft(absl::Time now, const Entry& me, const std::string& key) {
  v1::GossipMessage m = RecordMessage(me, key);
  m.mutable_record()->set_spread(v1::SPREAD_DONE);
  auto done = std::make_shared<const v1::GossipMessage>(m);
  if (LiveCount() - 1 <= options_.soft_direct_limit) {
    for (MemberId id : ring_) {
      if (id != self_) Send(members_.at(id).addr, std::vector<SharedMessage>{done});
    }
    return;
  }
  m.mutable_record()->set_spread(v1::SPREAD_FORWARD);
  std::vector<SharedMessage> forward{std::make_shared<const v1::GossipMessage>(std::move(m))};
  for (size_t i : Grid().row) Send(members_.at(ring_[i]).addr, forward);
  QueueForColumn(now, std::move(done));
}

void Core::QueueForColumn(absl::Time now, SharedMessage m) {
  const v1::RecordUpdate& r = m->record();
  for (SharedMessage& queued : column_batch_) {
    if (queued->record().owner() == r.owner() && queued->record().key() == r.key()) {
      if (queued->record().version() < r.version()) queued = std::move(m);
      return;
    }
  }
  column_batch_.push_back(std::move(m));
  if (column_flush_at_ == absl::InfiniteFuture()) column_flush_at_ = now + options_.grid_interval;
}

void Core::GridTick(absl::Time now) {
  if (now < column_flush_at_) return;
  column_flush_at_ = absl::InfiniteFuture();
  std::vector<SharedMessage> batch;
  batch.swap(column_batch_);
  for (size_t i : Grid().column) Send(members_.at(ring_[i]).addr, batch);
}

void Core::FlushUrgent() {
  if (urgent_.empty() && critical_.empty()) {
    urgent_extra_addrs_.clear();
    return;
  }
  std::vector<std::string> targets;
  for (MemberId id : ring_) {
    if (id != self_) targets.push_back(members_.at(id).addr);
  }
  if (!critical_.empty()) {
    // Critical news also goes to those we hold dead (not those that left):
    // across a healed partition they hold us dead too, and must hear it.
    for (MemberId id : gone_) {
      if (members_.at(id).state == MemberState::kDead) targets.push_back(members_.at(id).addr);
    }
  }
  std::shuffle(targets.begin(), targets.end(), rng_);
  size_t reach = static_cast<size_t>(std::max(0, critical_.empty() ? options_.direct_limit
                                                                  : options_.critical_direct_limit));
  if (targets.size() > reach) targets.resize(reach);
  size_t direct = std::min(targets.size(), static_cast<size_t>(std::max(0, options_.direct_limit)));
  for (const std::string& a : urgent_extra_addrs_) {
    auto it = std::find(targets.begin(), targets.end(), a);
    if (it == targets.end()) {
      targets.insert(targets.begin(), a);
    } else {
      std::iter_swap(targets.begin(), it);
    }
    direct = std::min(targets.size(), direct + 1);
  }
  // Measured once, not once per target (a thousand targets for critical news).
  auto sizes = [](const std::vector<SharedMessage>& ms) {
    std::vector<size_t> out;
    for (const SharedMessage& m : ms) out.push_back(m->ByteSizeLong() + 3);
    return out;
  };
  std::vector<size_t> critical_bytes = sizes(critical_), urgent_bytes = sizes(urgent_);
  for (size_t i = 0; i < targets.size(); ++i) {
    PacketFiller filler(out_.packets, self_, targets[i], options_.max_payload);
    for (size_t k = 0; k < critical_.size(); ++k) filler.Add(critical_[k], critical_bytes[k]);
    if (i < direct) {
      for (size_t k = 0; k < urgent_.size(); ++k) filler.Add(urgent_[k], urgent_bytes[k]);
    }
    filler.Flush();
  }
  urgent_.clear();
  critical_.clear();
  urgent_extra_addrs_.clear();
}

void Core::StartStream(const std::string& addr, v1::StreamRequest request, PendingStream p) {
  uint64_t id = next_stream_++;
  request.set_from(self_);
  p.addr = addr;
  streams_[id] = std::move(p);
  out_.streams.push_back({id, addr, std::move(request)});
}

std::vector<v1::DigestEntry> Core::Digest() const {
  std::vector<v1::DigestEntry> out;
  out.reserve(members_.size());
  for (const auto& [id, e] : members_) {
    v1::DigestEntry d;
    d.set_id(id);
    d.set_incarnation(e.incarnation);
    d.set_state(ToProto(e.state));
    d.set_record_version(e.record_version);
    out.push_back(d);
  }
  // Sorted: the order shows in what is sent, and runs must be reproducible.
  std::sort(out.begin(), out.end(),
            [](const v1::DigestEntry& a, const v1::DigestEntry& b) { return a.id() < b.id(); });
  return out;
}

v1::MemberEntry Core::SelfWithRecords() const {
  const Entry& me = SelfEntry();
  v1::MemberEntry entry;
  *entry.mutable_member() = UpdateOf(me);
  for (const auto& [key, rec] : me.records) *entry.add_records() = RecordMessage(me, key).record();
  return entry;
}

v1::StreamRequest Core::SyncRequest(const Entry* only) const {
  v1::StreamRequest req;
  v1::SyncRequest* s = req.mutable_sync();
  if (only != nullptr) {
    s->set_partial(true);
    v1::DigestEntry* d = s->add_digest();
    d->set_id(only->id);
    d->set_incarnation(only->incarnation);
    d->set_state(ToProto(only->state));
    d->set_record_version(only->record_version);
  } else {
    for (v1::DigestEntry& d : Digest()) *s->add_digest() = std::move(d);
  }
  *s->mutable_self() = SelfWithRecords();
  return req;
}

std::vector<v1::MemberEntry> Core::NewerThan(
    const google::protobuf::RepeatedPtrField<v1::DigestEntry>& digest, bool partial) const {
  absl::flat_hash_map<MemberId, const v1::DigestEntry*> theirs;
  for (const v1::DigestEntry& d : digest) theirs[d.id()] = &d;
  std::vector<MemberId> ids;
  if (partial) {
    for (const auto& [id, d] : theirs) {
      if (members_.count(id)) ids.push_back(id);
    }
  } else {
    ids.reserve(members_.size());
    for (const auto& [id, e] : members_) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  std::vector<v1::MemberEntry> out;
  for (MemberId id : ids) {
    const Entry& e = members_.at(id);
    auto it = theirs.find(id);
    const v1::DigestEntry* d = it == theirs.end() ? nullptr : it->second;
    bool state_newer = d == nullptr || e.incarnation > d->incarnation() ||
                       (e.incarnation == d->incarnation() && Rank(e.state) > Rank(FromProto(d->state())));
    bool records_newer = e.record_version > (d == nullptr ? 0 : d->record_version());
    if (!state_newer && !records_newer) continue;
    v1::MemberEntry entry;
    *entry.mutable_member() = UpdateOf(e);
    // A suspect or dead entry still needs its address to be useful to a
    // member that never saw it alive.
    entry.mutable_member()->set_addr(e.addr);
    entry.mutable_member()->set_name(e.name);
    if (e.state == MemberState::kSuspect && e.suspicion) {
      entry.mutable_member()->set_accuser(*e.suspicion->accusers.begin());
    }
    uint64_t since = d == nullptr ? 0 : d->record_version();
    for (const auto& [key, rec] : e.records) {
      if (rec.version > since) *entry.add_records() = RecordMessage(e, key).record();
    }
    out.push_back(std::move(entry));
  }
  return out;
}

int Core::TellDoubted(absl::Time now, const google::protobuf::RepeatedPtrField<v1::DigestEntry>& digest) {
  // Members the other side holds alive at the incarnation we hold them dead
  // at (we declared them dead across a partition, say): only they can
  // settle it, by refuting. Tell them directly rather than wait for a
  // probe of theirs to reach us.
  int told = 0;
  for (const v1::DigestEntry& d : digest) {
    if (FromProto(d.state()) != MemberState::kAlive) continue;
    Entry* e = Find(d.id());
    if (e == nullptr || e->state != MemberState::kDead || e->incarnation < d.incarnation()) continue;
    if (now - e->last_dead_notice < absl::Seconds(1)) continue;
    e->last_dead_notice = now;
    // Over TCP: a lost datagram here would leave both views apart until
    // the next sync.
    v1::StreamRequest push;
    *push.mutable_push()->add_entries()->mutable_member() = UpdateOf(*e);
    StartStream(e->addr, std::move(push), PendingStream{PendingStream::Kind::kPush, e->id, 0, ""});
    ++told;
  }
  if (told > 0) {
    // Merging after a partition: sync again soon (with another member)
    // rather than in a sync interval, until views agree.
    next_sync_ = std::min(next_sync_, now + options_.reconnect_interval);
  }
  return told;
}

void Core::MergeEntries(absl::Time now, const google::protobuf::RepeatedPtrField<v1::MemberEntry>& entries,
                        const std::string& from_addr, MemberId from) {
  // As for a packet: the view of a sender we held dead, or revived only just
  // now, is out of date on who is dead.
  bool doubtful = Find(from) == nullptr || CutOff(now, from);
  bool revived = false;
  for (const v1::MemberEntry& entry : entries) {
    const Entry* e = Find(entry.member().id());
    bool was_dead = e != nullptr && e->state == MemberState::kDead;
    Apply(now, entry.member(), from_addr, /*from_sync=*/true, doubtful);
    for (const v1::RecordUpdate& r : entry.records()) ApplyRecord(now, r, /*from_sync=*/true);
    e = Find(entry.member().id());
    revived |= was_dead && e != nullptr && Live(e->state);
  }
  if (revived) {
    // A merge under way (a healed partition): members across are still
    // refuting. Sync again soon, with another member, to catch the late ones.
    next_sync_ = std::min(next_sync_, now + options_.reconnect_interval);
  }
}

// ---- inputs -------------------------------------------------------------------------

void Core::Join(absl::Time now, std::vector<std::string> seeds) {
  seeds_ = std::move(seeds);
  for (const std::string& s : seeds_) {
    if (s == options_.addr) continue;
    StartStream(s, SyncRequest(), PendingStream{PendingStream::Kind::kSync, 0, 0, ""});
    announced_ = false;  // once a sync answers: say so to everyone
  }
  next_seed_ = now + options_.seed_interval;
  Finish();
}

void Core::SetRecord(absl::Time now, const std::string& key, std::string value, bool urgent) {
  if (left_) return;
  Entry& me = SelfEntry();
  Record& rec = me.records[key];
  if (rec.version != 0 && rec.value == value) return;
  rec.version = ++me.record_version;
  rec.value = std::move(value);
  if (urgent) {
    Broadcast(RecordMessage(me, key), Reach::kDirect);
  } else {
    SpreadSoft(now, me, key);
  }
  Finish();
}

void Core::Leave(absl::Time now) {
  if (left_) return;
  Entry& me = SelfEntry();
  me.incarnation += 1;
  me.state = MemberState::kLeft;
  me.state_since = now;
  left_ = true;
  probe_.reset();
  SetInRing(self_, false);
  Broadcast(MemberMessage(me), Reach::kEveryone);
  Finish();
}

void Core::HandlePacket(absl::Time now, const std::string& from_addr, v1::GossipPacket packet) {
  std::vector<SharedMessage> messages;
  messages.reserve(static_cast<size_t>(packet.messages_size()));
  for (v1::GossipMessage& m : *packet.mutable_messages()) {
    messages.push_back(std::make_shared<const v1::GossipMessage>(std::move(m)));
  }
  HandlePacket(now, from_addr, packet.from(), messages);
}

void Core::HandlePacket(absl::Time now, const std::string& from_addr, MemberId from,
                        const std::vector<SharedMessage>& messages) {
  // Acks alone travel without the sender's id (9 of ~90 bytes, at five a
  // second): the address says who it is.
  bool anonymous = from == 0;
  if (anonymous) {
    const Entry* e = FindByAddr(from_addr);
    from = e != nullptr ? e->id : 0;
  }
  if (from == self_) return;
  Entry* sender = Find(from);
  if (sender != nullptr) {
    sender->last_heard = now;
    if (sender->state == MemberState::kDead && now - sender->last_dead_notice >= absl::Seconds(1)) {
      // It talks to us though we hold it dead (a healed partition, or a
      // freeze it has come out of): tell it, so it refutes.
      sender->last_dead_notice = now;
      Send(from_addr, {MemberMessage(*sender)});
    }
  }
  // A sender we hold dead, or revived only just now, was cut off from us:
  // its word on who is dead is out of date.
  bool doubtful = sender == nullptr || CutOff(now, from);
  for (const SharedMessage& shared : messages) {
    const v1::GossipMessage& m = *shared;
    switch (m.kind_case()) {
      case v1::GossipMessage::kPing: {
        v1::GossipMessage ack;
        ack.mutable_ack()->set_seq(m.ping().seq());
        if (m.ping().target() != self_) {
          ack.mutable_ack()->set_wrong_target(true);
        } else {
          ack.mutable_ack()->set_record_version(SelfEntry().record_version);
        }
        Send(from_addr, {ack});
        if (sender != nullptr && Live(sender->state)) {
          CatchUp(now, *sender, m.ping().record_version(), kProbeCatchUpDelay);
        }
        break;
      }
      case v1::GossipMessage::kPingReq: {
        uint32_t seq = next_seq_++;
        PendingAck p{PendingAck::Kind::kRelay, m.ping_req().target(), from_addr, m.ping_req().seq(),
                     now + options_.probe_timeout * 0.8};
        AddPending(seq, p);
        v1::GossipMessage ping;
        ping.mutable_ping()->set_seq(seq);
        ping.mutable_ping()->set_target(m.ping_req().target());
        Send(m.ping_req().addr(), {ping});
        break;
      }
      case v1::GossipMessage::kAck: {
        auto it = pending_.find(m.ack().seq());
        if (it == pending_.end()) break;
        PendingAck p = it->second;
        bool wrong = m.ack().wrong_target();
        switch (p.kind) {
          case PendingAck::Kind::kProbe:
            if (probe_ && probe_->seq == m.ack().seq()) {
              probe_->acked = !wrong;
              if (wrong) probe_.reset();
            }
            if (Entry* e = Find(p.member)) {
              if (wrong) {
                DeclareDead(now, *e, "its address answers as another member (it restarted)", /*confirmed=*/true);
              } else {
                e->last_heard = now;
                if (Live(e->state)) CatchUp(now, *e, m.ack().record_version(), kProbeCatchUpDelay);
              }
            }
            ErasePending(it);
            break;
          case PendingAck::Kind::kRelay:
            if (!wrong) {
              v1::GossipMessage ack;
              ack.mutable_ack()->set_seq(p.origin_seq);
              Send(p.origin_addr, {ack});
            }
            ErasePending(it);
            break;
          case PendingAck::Kind::kReconnect:
            ErasePending(it);
            if (Entry* e = Find(p.member); e != nullptr && !wrong) {
              // A member we hold dead answers: merge what we each know.
              StartStream(e->addr, SyncRequest(), PendingStream{PendingStream::Kind::kSync, e->id, 0, ""});
            }
            break;
        }
        break;
      }
      case v1::GossipMessage::kNack:
        if (probe_ && probe_->seq == m.nack().seq()) ++probe_->nacks;
        break;
      case v1::GossipMessage::kMember:
        Apply(now, m.member(), from_addr, /*from_sync=*/false, doubtful);
        break;
      case v1::GossipMessage::kRecord:
        ApplyRecord(now, m.record(), /*from_sync=*/false, &shared);
        break;
      case v1::GossipMessage::KIND_NOT_SET:
        break;
    }
  }
  if (!anonymous && Find(from) == nullptr) {
    // A member that knows us, though we do not know it (nor did the packet
    // say who it is): exchange what we know.
    absl::Time& last = unknown_synced_[from_addr];
    if (now - last >= absl::Seconds(1)) {
      last = now;
      StartStream(from_addr, SyncRequest(), PendingStream{PendingStream::Kind::kSync, 0, 0, ""});
    }
    if (unknown_synced_.size() > 4096) unknown_synced_.clear();
  }
  Finish();
}

v1::StreamResponse Core::HandleStream(absl::Time now, const std::string& from_addr,
                                      const v1::StreamRequest& request) {
  v1::StreamResponse resp;
  resp.set_from(self_);
  MarkHeard(now, request.from());
  switch (request.kind_case()) {
    case v1::StreamRequest::kSync: {
      const v1::MemberEntry& them = request.sync().self();
      bool known = Find(them.member().id()) != nullptr;
      Apply(now, them.member(), from_addr, /*from_sync=*/false);
      for (const v1::RecordUpdate& r : them.records()) ApplyRecord(now, r, /*from_sync=*/true);
      Entry* joiner = Find(them.member().id());
      if (!known && joiner != nullptr && Live(joiner->state)) {
        // A join: tell everyone now, with its records.
        joiner->last_heard = now;
        Broadcast(MemberMessage(*joiner), Reach::kDirect);
        for (const auto& [key, rec] : joiner->records) Broadcast(RecordMessage(*joiner, key), Reach::kDirect);
      }
      v1::SyncResponse* s = resp.mutable_sync();
      for (v1::MemberEntry& e : NewerThan(request.sync().digest(), request.sync().partial())) {
        if (e.member().id() != them.member().id()) *s->add_entries() = std::move(e);
      }
      // A catch-up (partial) wants one member's records, not our whole view.
      if (!request.sync().partial()) {
        for (v1::DigestEntry& d : Digest()) *s->add_digest() = std::move(d);
        TellDoubted(now, request.sync().digest());
      }
      break;
    }
    case v1::StreamRequest::kPush:
      MergeEntries(now, request.push().entries(), from_addr, request.from());
      resp.mutable_empty();
      break;
    case v1::StreamRequest::kPing:
      resp.mutable_ack()->set_seq(request.ping().seq());
      if (request.ping().target() != self_) resp.mutable_ack()->set_wrong_target(true);
      break;
    default:
      resp.mutable_empty();
      break;
  }
  Finish();
  return resp;
}

void Core::HandleStreamResult(absl::Time now, uint64_t id, StreamResult result) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  PendingStream p = it->second;
  streams_.erase(it);
  Entry* e = p.member != 0 ? Find(p.member) : nullptr;
  const v1::StreamResponse* r = result.response ? &*result.response : nullptr;
  if (r != nullptr) MarkHeard(now, r->from());
  switch (p.kind) {
    case PendingStream::Kind::kSync: {
      if (r == nullptr || !r->has_sync()) break;
      bool first = !announced_;
      MergeEntries(now, r->sync().entries(), p.addr, r->from());
      TellDoubted(now, r->sync().digest());
      std::vector<v1::MemberEntry> push = NewerThan(r->sync().digest(), /*partial=*/false);
      Entry* peer = Find(r->from());
      if (!push.empty() && peer != nullptr) {
        v1::StreamRequest req;
        for (v1::MemberEntry& m : push) *req.mutable_push()->add_entries() = std::move(m);
        StartStream(peer->addr, std::move(req), PendingStream{PendingStream::Kind::kPush, peer->id, 0, ""});
      }
      if (first) {
        // Joined: say so to every member directly (one small datagram each,
        // once: gossip alone loses joins in a burst of them), and give our
        // records to some; the rest ask for them (CatchUp).
        announced_ = true;
        Entry& me = SelfEntry();
        Broadcast(MemberMessage(me), Reach::kEveryone);
        for (const auto& [key, rec] : me.records) Broadcast(RecordMessage(me, key), Reach::kDirect);
      }
      break;
    }
    case PendingStream::Kind::kCatchUp:
      if (r != nullptr && r->has_sync()) MergeEntries(now, r->sync().entries(), p.addr, r->from());
      break;
    case PendingStream::Kind::kPush:
      break;
    case PendingStream::Kind::kFallbackPing:
      if (e == nullptr) break;
      if (result.refused || (r != nullptr && r->has_ack() && r->ack().wrong_target())) {
        DeclareDead(now, *e,
                    result.refused ? "connection refused: its process is gone"
                                   : "its address answers as another member (it restarted)",
                    /*confirmed=*/true);
      } else if (r != nullptr && r->has_ack() && probe_ && probe_->seq == p.seq) {
        probe_->acked = true;
        e->last_heard = now;
      }
      break;
    case PendingStream::Kind::kConfirm:
      if (e == nullptr) break;
      e->confirming = false;
      if (result.refused) {
        DeclareDead(now, *e, "port unreachable and connection refused: its process is gone", /*confirmed=*/true);
      } else if (r != nullptr && r->has_ack() && r->ack().wrong_target()) {
        DeclareDead(now, *e, "its address answers as another member (it restarted)", /*confirmed=*/true);
      } else if (r != nullptr) {
        e->last_heard = now;
      }
      break;
  }
  Finish();
}

void Core::HandleUnreachable(absl::Time now, const std::string& addr) {
  Entry* e = FindByAddr(addr);
  if (e != nullptr && Live(e->state)) Confirm(now, *e);
  Finish();
}

// ---- timers ------------------------------------------------------------------------

absl::Time Core::NextSlotStart(absl::Time now) const {
  int64_t slot = std::max<int64_t>(1, absl::ToInt64Microseconds(options_.probe_interval));
  return absl::FromUnixMicros((FloorDiv(absl::ToUnixMicros(now), slot) + 1) * slot);
}

void Core::StartProbe(absl::Time now, MemberId target) {
  Entry& e = members_.at(target);
  Probe p;
  p.target = target;
  p.seq = next_seq_++;
  p.sent = now;
  p.direct_deadline = now + Scaled(options_.probe_timeout);
  p.end = now + Scaled(options_.probe_interval) * 0.8;
  probe_ = p;
  AddPending(p.seq, PendingAck{PendingAck::Kind::kProbe, target, "", 0,
                               p.end + options_.stall_budget + options_.dead_grace});
  v1::GossipMessage ping;
  ping.mutable_ping()->set_seq(p.seq);
  ping.mutable_ping()->set_target(target);
  ping.mutable_ping()->set_record_version(SelfEntry().record_version);
  Send(e.addr, {ping});
}

void Core::FinishProbe(absl::Time now) {
  Probe p = *probe_;
  probe_.reset();
  if (p.acked) {
    lhm_ = std::max(0, lhm_ - 1);
    return;
  }
  Entry* e = Find(p.target);
  if (e == nullptr || !Live(e->state)) return;
  if (now < quiet_until_) return;  // we were the slow one
  if (p.expected_nacks > 0 && p.nacks < p.expected_nacks) RaiseHealth(1);
  Suspect(now, *e, self_, p.sent, /*local=*/true);
}

void Core::ProbeTick(absl::Time now) {
  if (probe_) {
    if (!probe_->acked && !probe_->indirect_sent && now >= probe_->direct_deadline) {
      probe_->indirect_sent = true;
      Entry& target = members_.at(probe_->target);
      std::vector<MemberId> relays = SampleAlive(options_.indirect_probes, probe_->target);
      for (MemberId r : relays) {
        v1::GossipMessage req;
        req.mutable_ping_req()->set_seq(probe_->seq);
        req.mutable_ping_req()->set_target(target.id);
        req.mutable_ping_req()->set_addr(target.addr);
        Send(members_.at(r).addr, {req});
      }
      probe_->expected_nacks = static_cast<int>(relays.size());
      v1::StreamRequest ping;
      ping.mutable_ping()->set_seq(probe_->seq);
      ping.mutable_ping()->set_target(target.id);
      StartStream(target.addr, std::move(ping),
                  PendingStream{PendingStream::Kind::kFallbackPing, target.id, probe_->seq, ""});
    }
    if (probe_ && now >= probe_->end) FinishProbe(now);
  }
  if (left_) {
    next_probe_at_ = absl::InfiniteFuture();
    return;
  }
  if (now < next_probe_at_) return;
  int64_t slot_us = std::max<int64_t>(1, absl::ToInt64Microseconds(options_.probe_interval));
  int64_t slot = FloorDiv(absl::ToUnixMicros(now), slot_us);
  std::uniform_int_distribution<int64_t> jitter(0, slot_us / 5);
  next_probe_at_ = absl::FromUnixMicros((slot + 1) * slot_us + jitter(rng_));
  if (slot % (lhm_ + 1) != 0) return;  // an unhealthy member probes less often
  if (probe_) {
    // Still out (our multiplier dropped meanwhile): judge it only if its
    // time is up, else let it go unjudged.
    if (now >= probe_->end) {
      FinishProbe(now);
    } else if (probe_->acked) {
      lhm_ = std::max(0, lhm_ - 1);
    }
    probe_.reset();
  }
  if (ring_.size() < 2) return;
  StartProbe(now, RoundRobin(slot, 0));
}

int Core::Confirmations() const {
  return std::max(1, std::min(options_.suspicion_confirmations, LiveCount() - 2));
}

absl::Duration Core::SpreadTime() const {
  // Rounds for news to reach everyone by gossip, one round per interval:
  // ceil(log_(fanout + 1)(n)), capped at 4: a refutation also goes straight
  // to every member, and the rounds only cover one that was lost or sent
  // late (a member that was frozen works through its backlog first).
  double n = std::max(2, LiveCount());
  double rounds = std::min(4.0, std::ceil(std::log(n) / std::log(std::max(2, options_.gossip_fanout + 1))));
  return options_.gossip_interval * rounds;
}

absl::Time Core::DeadAt(const Entry& e) const {
  const Suspicion& s = *e.suspicion;
  int k = Confirmations();
  int c = static_cast<int>(s.accusers.size()) - 1;
  double frac = c >= k ? 1.0 : std::log(c + 1.0) / std::log(k + 1.0);
  absl::Duration lo = options_.stall_budget;
  absl::Duration hi = options_.stall_budget * std::max(1.0, options_.suspicion_max_factor);
  // The grace, plus time for a refutation to reach everyone.
  return s.anchor + hi - (hi - lo) * frac + options_.dead_grace + SpreadTime();
}

void Core::SuspicionTick(absl::Time now) {
  // Nothing due before the cached earliest deadline (or notice).
  if (suspicion_wake_ && now < *suspicion_wake_) return;
  std::vector<MemberId> due;
  for (MemberId id : suspects_) {
    Entry& e = members_.at(id);
    if (!e.suspicion) continue;
    if (now >= DeadAt(e)) due.push_back(id);
    if (e.suspicion->accusers.count(self_) && now - e.suspicion->last_notice >= absl::Milliseconds(500)) {
      // Tell the suspect again (the last notice may have been lost).
      e.suspicion->last_notice = now;
      Send(e.addr, {MemberMessage(e, self_, 0)});
    }
  }
  suspicion_wake_.reset();
  if (now < quiet_until_) return;
  // A death shrinks the cluster, and with it the others' waits: repeat
  // until nothing more is due (each member looked at once).
  std::set<MemberId> seen;
  while (!due.empty()) {
    for (MemberId id : due) {
      seen.insert(id);
      Entry& e = members_.at(id);
      if (e.last_heard != absl::InfinitePast() && now - e.last_heard < options_.stall_budget) {
        // It has talked to us within the budget (packets from it, though no
        // refutation yet: it may not know it is doubted). Not dead: count
        // the silence from then, and tell it.
        e.suspicion->anchor = e.last_heard;
        e.suspicion->last_notice = now;
        Send(e.addr, {MemberMessage(e, self_, 0)});
        continue;
      }
      DeclareDead(now, e,
                  absl::StrCat("no answer for ", absl::FormatDuration(now - e.suspicion->anchor), " (",
                               e.suspicion->accusers.size(), " accusers)"),
                  /*confirmed=*/false, /*direct=*/e.suspicion->accusers.count(self_) > 0);
    }
    due.clear();
    for (MemberId id : suspects_) {
      const Entry& e = members_.at(id);
      if (e.suspicion && !seen.count(id) && now >= DeadAt(e)) due.push_back(id);
    }
  }
}

void Core::GossipTick(absl::Time now) {
  if (now < next_gossip_) return;
  next_gossip_ = now + options_.gossip_interval;
  if (queue_.empty()) return;
  std::vector<MemberId> targets;
  for (MemberId id : ring_) {
    if (id != self_) targets.push_back(id);
  }
  std::shuffle(targets.begin(), targets.end(), rng_);
  if (static_cast<int>(targets.size()) > options_.gossip_fanout) targets.resize(options_.gossip_fanout);
  for (MemberId id : targets) {
    if (queue_.empty()) break;
    Send(members_.at(id).addr, std::vector<SharedMessage>{});
  }
}

std::vector<MemberId> Core::SampleAlive(int k, MemberId except) {
  // Random picks from the ring (cheap in large clusters); a full scan only
  // when picks keep missing (few alive members).
  std::vector<MemberId> out;
  size_t n = ring_.size();
  if (n == 0 || k <= 0) return out;
  std::uniform_int_distribution<size_t> pick(0, n - 1);
  for (int tries = 0; tries < 4 * k && static_cast<int>(out.size()) < k; ++tries) {
    MemberId id = ring_[pick(rng_)];
    if (id == self_ || id == except || members_.at(id).state != MemberState::kAlive) continue;
    if (std::find(out.begin(), out.end(), id) == out.end()) out.push_back(id);
  }
  if (static_cast<int>(out.size()) == k) return out;
  std::vector<MemberId> all;
  for (MemberId id : ring_) {
    if (id != self_ && id != except && members_.at(id).state == MemberState::kAlive) all.push_back(id);
  }
  std::shuffle(all.begin(), all.end(), rng_);
  if (static_cast<int>(all.size()) > k) all.resize(static_cast<size_t>(k));
  return all;
}

absl::Time Core::NextSyncRound(absl::Time now) const {
  int64_t sync_us = std::max<int64_t>(1, absl::ToInt64Microseconds(options_.sync_interval));
  int64_t round = FloorDiv(absl::ToUnixMicros(now) - sync_phase_us_, sync_us);
  return absl::FromUnixMicros((round + 1) * sync_us + sync_phase_us_);
}

MemberId Core::SyncPeer(absl::Time now) const {
  // Round r: the member at position i syncs with position
  // i + 1 + (r mod (n - 1)), as in probing. With the same list everywhere
  // each member is asked once a round, so no member carries several syncs
  // in a round while another carries none. The next alive one if that one
  // is suspect.
  int64_t n = static_cast<int64_t>(ring_.size());
  if (n < 2) return 0;
  int64_t sync_us = std::max<int64_t>(1, absl::ToInt64Microseconds(options_.sync_interval));
  int64_t round = FloorDiv(absl::ToUnixMicros(now) - sync_phase_us_, sync_us);
  for (int64_t k = 0; k < n - 1; ++k) {
    MemberId id = RoundRobin(round, k);
    if (id != self_ && members_.at(id).state == MemberState::kAlive) return id;
  }
  return 0;
}

MemberId Core::RoundRobin(int64_t round, int64_t skip) const {
  int64_t n = static_cast<int64_t>(ring_.size());
  int64_t pos = std::lower_bound(ring_.begin(), ring_.end(), self_) - ring_.begin();
  int64_t offset = 1 + (round % (n - 1) + (n - 1)) % (n - 1);
  return ring_[static_cast<size_t>((pos + offset + skip) % n)];
}

void Core::MaintenanceTick(absl::Time now) {
  if (now >= next_sync_) {
    // A round's sync (each member at its own phase of the interval), or an
    // extra one while a merge goes on: then with a member at random, for
    // variety.
    MemberId peer_id = 0;
    if (now >= next_round_sync_) {
      peer_id = SyncPeer(now);
      next_round_sync_ = NextSyncRound(now);
    } else if (std::vector<MemberId> peers = SampleAlive(1, 0); !peers.empty()) {
      peer_id = peers[0];
    }
    next_sync_ = next_round_sync_;
    if (peer_id != 0) {
      Entry& peer = members_.at(peer_id);
      StartStream(peer.addr, SyncRequest(), PendingStream{PendingStream::Kind::kSync, peer.id, 0, ""});
    }
  }
  if (now >= next_seed_) {
    next_seed_ = now + options_.seed_interval;
    for (const std::string& s : seeds_) {
      if (s == options_.addr) continue;
      const Entry* e = FindByAddr(s);  // the live one, if any
      bool alive = e != nullptr && Live(e->state);
      if (!alive) StartStream(s, SyncRequest(), PendingStream{PendingStream::Kind::kSync, 0, 0, ""});
    }
  }
  if (now >= next_reconnect_) {
    next_reconnect_ = now + options_.reconnect_interval;
    std::vector<MemberId> dead;
    for (MemberId id : gone_) {
      if (members_.at(id).state == MemberState::kDead) dead.push_back(id);
    }
    if (!dead.empty()) {
      Entry& e = members_.at(dead[std::uniform_int_distribution<size_t>(0, dead.size() - 1)(rng_)]);
      uint32_t seq = next_seq_++;
      AddPending(seq, PendingAck{PendingAck::Kind::kReconnect, e.id, "", 0, now + absl::Seconds(1)});
      v1::GossipMessage ping;
      ping.mutable_ping()->set_seq(seq);
      ping.mutable_ping()->set_target(e.id);
      Send(e.addr, {ping});
    }
  }
  // Relays that heard nothing say so; stale entries go.
  std::vector<uint32_t> expired;
  for (auto d = pending_deadlines_.begin(); d != pending_deadlines_.end() && d->first <= now; ++d) {
    expired.push_back(d->second);
  }
  std::sort(expired.begin(), expired.end());
  for (uint32_t seq : expired) {
    auto it = pending_.find(seq);
    PendingAck p = it->second;
    ErasePending(it);
    if (p.kind == PendingAck::Kind::kRelay) {
      v1::GossipMessage nack;
      nack.mutable_nack()->set_seq(p.origin_seq);
      Send(p.origin_addr, {nack});
    }
  }
  // Reap the long dead.
  if (now < next_reap_) return;
  next_reap_ = now + absl::Seconds(1);
  std::vector<MemberId> reap;
  for (MemberId id : gone_) {
    if (now - members_.at(id).state_since > options_.dead_retention) reap.push_back(id);
  }
  for (MemberId id : reap) {
    Emit(MemberEvent::Kind::kReaped, members_.at(id));
    IndexAddr(id, members_.at(id).addr, false);
    members_.erase(id);
    suspects_.erase(id);
    suspicion_wake_.reset();
    gone_.erase(id);
    catch_ups_.erase(id);
    queue_.Forget(id);
    last_self_notice_.erase(id);
    SetInRing(id, false);
  }
}

void Core::Tick(absl::Time now) {
  if (expected_wake_ != absl::InfiniteFuture() && now - expected_wake_ > options_.lag_threshold) {
    // This process was frozen or starved: what it saw (and did not see)
    // meanwhile says nothing about the others. Accuse no one for a while,
    // and if others may have started to doubt us, refute first.
    absl::Duration lag = now - expected_wake_;
    RaiseHealth(2);
    quiet_until_ = now + Scaled(options_.probe_interval);
    suspicion_wake_.reset();
    probe_.reset();
    if (lag >= options_.stall_budget / 4 && !left_) {
      Refute(now, SelfEntry().incarnation, "");
    }
  }
  ProbeTick(now);
  CatchUpTick(now);
  SuspicionTick(now);
  GossipTick(now);
  GridTick(now);
  MaintenanceTick(now);
  Finish();
}

void Core::Finish() {
  FlushUrgent();
  expected_wake_ = NextWake();
}

absl::Time Core::NextWake() const {
  absl::Time t = std::min({next_probe_at_, next_gossip_, next_sync_, next_seed_, next_reconnect_});
  if (probe_) {
    if (!probe_->acked && !probe_->indirect_sent) t = std::min(t, probe_->direct_deadline);
    t = std::min(t, probe_->end);
  }
  if (!suspicion_wake_) {
    // Recomputed only when a suspicion or the live count changed (this runs
    // after every packet; a partition leaves hundreds of suspects).
    absl::Time w = absl::InfiniteFuture();
    for (MemberId id : suspects_) {
      const Entry& e = members_.at(id);
      if (!e.suspicion) continue;
      w = std::min(w, std::max(DeadAt(e), quiet_until_));
      if (e.suspicion->accusers.count(self_)) w = std::min(w, e.suspicion->last_notice + absl::Milliseconds(500));
    }
    suspicion_wake_ = w;
  }
  t = std::min(t, *suspicion_wake_);
  // The earliest relay's deadline (others are only forgotten at theirs).
  for (const auto& [deadline, seq] : pending_deadlines_) {
    if (deadline >= t) break;
    if (pending_.at(seq).kind == PendingAck::Kind::kRelay) {
      t = deadline;
      break;
    }
  }
  t = std::min({t, catch_up_wake_, column_flush_at_});
  return t;
}

Outbox Core::TakeOutbox() {
  Outbox o = std::move(out_);
  out_ = Outbox();
  return o;
}

}  // namespace marketprism::common::gossip
