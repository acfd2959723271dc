#include "node/clock_prober.h"

#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace marketprism::node {

ClockProber::ClockProber(const Lanes& lanes, common::Clock& clock, absl::Duration interval,
                         std::function<void()> on_probed)
    : lanes_(lanes), clock_(clock), interval_(interval), on_probed_(std::move(on_probed)) {}

ClockProber::~ClockProber() { Stop(); }

void ClockProber::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void ClockProber::Reprobe() {
  absl::MutexLock lock(&mu_);
  reprobe_ = true;
}

void ClockProber::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void ClockProber::Loop() {
  std::map<std::string, absl::Time> last;
  while (true) {
    bool force = false;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      force = reprobe_;
      reprobe_ = false;
    }
    bool probed = false;
    for (const auto& [exchange, lane] : lanes_) {
      if (!lane->has_endpoint()) continue;
      auto it = last.find(exchange);
      if (!force && it != last.end() && clock_.Now() - it->second < interval_) continue;
      last[exchange] = clock_.Now();
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
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(
                             +[](ClockProber* p) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                               return p->stopping_ || p->reprobe_;
                             },
                             this),
                         absl::Seconds(1));
  }
}

}  // namespace marketprism::node
