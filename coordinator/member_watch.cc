#include "coordinator/member_watch.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace marketprism::coordinator {

namespace g = common::gossip;

namespace {
constexpr absl::Duration kReelectEvery = absl::Milliseconds(50);
}  // namespace

MemberWatch::MemberWatch(common::Clock& clock, Scheduler& scheduler, GrpcNodeClient& nodes, NodeSessions& sessions,
                         FrontDoor& front_door, std::function<void(const FrontDoor::Change&)> on_change)
    : clock_(clock),
      scheduler_(scheduler),
      nodes_(nodes),
      sessions_(sessions),
      front_door_(front_door),
      on_change_(std::move(on_change)),
      timer_(clock, [this] {
        Tick();
        timer_.ArmIn(kReelectEvery);
      }) {}

MemberWatch::~MemberWatch() { Stop(); }

void MemberWatch::Start(g::Membership& membership) {
  membership_ = &membership;
  timer_.ArmIn(absl::ZeroDuration());
}

void MemberWatch::Stop() { timer_.Stop(); }

void MemberWatch::OnEvent(const g::MemberEvent& e) {
  {
    absl::MutexLock lock(&mu_);
    events_.push_back(e);
  }
  timer_.ArmBy(clock_.SteadyNow());
}

void MemberWatch::Tick() {
  std::deque<g::MemberEvent> events;
  {
    absl::MutexLock lock(&mu_);
    events.swap(events_);
  }
  if (membership_ == nullptr) return;
  for (const g::MemberEvent& e : events) Handle(e);
  Reelect();
}

void MemberWatch::Handle(const g::MemberEvent& e) {
  using Kind = g::MemberEvent::Kind;
  if (g::RoleOf(e.member) != g::MemberRole::kNode) return;
  const std::string& name = e.member.name;
  switch (e.kind) {
    case Kind::kSuspect:
      scheduler_.SetSuspect(name, true);
      common::Log(common::LogLevel::kWarning, "coordinator",
                  absl::StrCat("node ", name, " is suspect (", e.reason, "): no new work until it answers"));
      break;
    case Kind::kAlive:
    case Kind::kJoined:
      scheduler_.SetSuspect(name, false);
      break;
    case Kind::kDead:
    case Kind::kLeft: {
      // A node that restarted is a new member under the old name: the old
      // member's death is not the new one's.
      for (const g::MemberView& m : membership_->Members()) {
        if (m.name == name && m.id != e.member.id && g::Live(m)) return;
      }
      scheduler_.SetSuspect(name, false);
      nodes_.ForgetNode(name);
      sessions_.End(name);
      scheduler_.DisconnectNode(name);
      common::Log(common::LogLevel::kWarning, "coordinator",
                  absl::StrCat("node ", name, e.kind == Kind::kLeft ? " left" : " is dead",
                               e.reason.empty() ? "" : absl::StrCat(" (", e.reason, ")"),
                               ": its in-flight reads go to other nodes"));
      break;
    }
    default:
      break;
  }
}

void MemberWatch::Reelect() {
  std::vector<CoordinatorSeen> others;
  int64_t floor = 0;
  for (const g::MemberView& m : membership_->Members()) {
    if (m.self) continue;
    g::MemberRole role = g::RoleOf(m);
    if (role == g::MemberRole::kCoordinator) {
      CoordinatorSeen c;
      c.name = m.name;
      c.grpc = g::RecordValue(m, g::kGrpcRecord);
      c.term = g::NumberRecord(m, g::kTermRecord);
      c.live = g::Live(m);
      c.alive = m.state == g::MemberState::kAlive;
      others.push_back(std::move(c));
    } else if (role == g::MemberRole::kNode && !g::RecordValue(m, g::kFenceRecord).empty()) {
      floor = std::max(floor, g::NumberRecord(m, g::kFenceRecord));
    }
  }
  FrontDoor::Change change = front_door_.Reelect(others, floor);
  if (!change.gained() && !change.lost() && !change.changed()) return;
  on_change_(change);
  if (change.changed()) front_door_.ReleaseHeld();
}

}  // namespace marketprism::coordinator
