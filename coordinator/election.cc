#include "coordinator/election.h"

#include <algorithm>

namespace marketprism::coordinator {

namespace {

// Whether claim (term a, name an) beats (term b, name bn).
bool Beats(int64_t a, const std::string& an, int64_t b, const std::string& bn) {
  return a != b ? a > b : an < bn;
}

}  // namespace

Election::Election(std::string self, std::string self_grpc, absl::Duration hold_down)
    : self_(std::move(self)), self_grpc_(std::move(self_grpc)), hold_down_(hold_down) {}

void Election::ObserveTerm(int64_t term) {
  highest_seen_ = std::max(highest_seen_, term);
  if (term_ > 0 && term > term_) term_ = 0;
}

Leadership Election::Update(absl::Time now, const std::vector<CoordinatorSeen>& others, int64_t floor) {
  Leadership out;
  highest_seen_ = std::max({highest_seen_, floor, term_});
  const CoordinatorSeen* best = nullptr;
  for (const CoordinatorSeen& c : others) {
    highest_seen_ = std::max(highest_seen_, c.term);
    if (!c.live || c.term <= 0) continue;
    if (best == nullptr || Beats(c.term, c.name, best->term, best->name)) best = &c;
  }
  // A node has accepted a term above ours: someone else leads (or led) it.
  if (term_ > 0 && highest_seen_ > term_) {
    term_ = 0;
    out.stepped_down = true;
  }
  if (term_ > 0 && best != nullptr && Beats(best->term, best->name, term_, self_)) {
    term_ = 0;
    out.stepped_down = true;
  }
  if (term_ > 0) {
    leaderless_since_ = absl::InfiniteFuture();
    out.leading = true;
    out.term = term_;
    out.leader = self_;
    out.leader_grpc = self_grpc_;
    return out;
  }
  if (best != nullptr) {
    leaderless_since_ = absl::InfiniteFuture();
    out.term = best->term;
    out.leader = best->name;
    out.leader_grpc = best->grpc;
    return out;
  }
  if (leaderless_since_ == absl::InfiniteFuture()) leaderless_since_ = now;
  if (now - leaderless_since_ < hold_down_) return out;
  for (const CoordinatorSeen& c : others) {
    if (c.alive && c.name < self_) return out;  // a lower name is up: it claims
  }
  term_ = highest_seen_ + 1;
  highest_seen_ = term_;
  leaderless_since_ = absl::InfiniteFuture();
  out.leading = true;
  out.claimed_now = true;
  out.term = term_;
  out.leader = self_;
  out.leader_grpc = self_grpc_;
  return out;
}

}  // namespace marketprism::coordinator
