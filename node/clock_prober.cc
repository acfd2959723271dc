#include "node/clock_prober.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace marketprism::node {

namespace {
constexpr absl::Duration kLookEvery = absl::Seconds(1);
}  // namespace

ClockProber::ClockProber(const Lanes& lanes, common::Clock& clock, absl::Duration interval, Run run,
                         std::function<void()> on_probed)
    : lanes_(lanes),
      clock_(clock),
      interval_(interval),
      run_(std::move(run)),
      on_probed_(std::move(on_probed)),
      timer_(clock, [this] {
        Look();
        timer_.ArmIn(kLookEvery);
      }) {}

ClockProber::~ClockProber() { Stop(); }

void ClockProber::Start() {
  {
    absl::MutexLock lock(&mu_);
    started_ = true;
    reprobe_ = true;
  }
  timer_.ArmIn(absl::ZeroDuration());
}

void ClockProber::Reprobe() {
  {
    absl::MutexLock lock(&mu_);
    reprobe_ = true;
    if (!started_) return;  // Start probes everything anyway
  }
  timer_.ArmBy(clock_.SteadyNow());
}

void ClockProber::Stop() {
  timer_.Stop();
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  mu_.Await(absl::Condition(+[](bool* running) { return !*running; }, &running_));
}

void ClockProber::Look() {
  bool force = false;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ || running_) return;  // a round under way looks again when it ends
    force = reprobe_;
    reprobe_ = false;
    running_ = true;
  }
  run_([this, force] { Round(force); });
}

void ClockProber::Round(bool force) {
  bool probed = false;
  for (const auto& [exchange, lane] : lanes_) {
    if (!lane->has_endpoint()) continue;
    {
      absl::MutexLock lock(&mu_);
      auto it = last_.find(exchange);
      if (stopping_ || (!force && it != last_.end() && clock_.Now() - it->second < interval_)) continue;
      last_[exchange] = clock_.Now();
    }
    absl::Status st = lane->ProbeClock();
    probed = true;
    if (!st.ok()) {
      common::Log(common::LogLevel::kWarning, "node", std::string(st.message()));
    } else {
      ClockView c = lane->clock();
      common::Log(common::LogLevel::kDebug, "node",
                  absl::StrCat(exchange, " clock offset ", absl::FormatDuration(c.offset), " +- ",
                               absl::FormatDuration(c.uncertainty)));
    }
  }
  if (probed && on_probed_) on_probed_();
  bool again;
  {
    absl::MutexLock lock(&mu_);
    running_ = false;
    again = reprobe_ && !stopping_;
  }
  if (again) timer_.ArmBy(clock_.SteadyNow());  // asked for while this round ran
}

}  // namespace marketprism::node
