#include "coordinator/limits_refresher.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "coordinator/health.h"

namespace marketprism::coordinator {

namespace {
constexpr absl::Duration kLookEvery = absl::Seconds(1);
constexpr absl::Duration kRefusalSpacing = absl::Seconds(5);
constexpr absl::Duration kRetryFailedRead = absl::Milliseconds(100);
}  // namespace

LimitsRefresher::LimitsRefresher(Options options, common::Clock& clock, Scheduler& scheduler, Execute execute,
                                 std::function<void()> changed)
    : options_(options),
      clock_(clock),
      scheduler_(scheduler),
      execute_(std::move(execute)),
      changed_(std::move(changed)),
      timer_(clock, [this] {
        Look();
        timer_.ArmBy(clock_.SteadyNow() + kLookEvery);  // a failed read may have asked for sooner
      }) {}

LimitsRefresher::~LimitsRefresher() { Stop(); }

void LimitsRefresher::Start() { timer_.ArmIn(absl::ZeroDuration()); }
void LimitsRefresher::Stop() { timer_.Stop(); }

void LimitsRefresher::RequestRefresh(const std::string& exchange) {
  const common::ExchangeRules* rules = scheduler_.rules().Find(exchange);
  if (rules == nullptr || !rules->published_limits()) return;
  {
    absl::MutexLock lock(&mu_);
    refusals_.insert(exchange);
  }
  timer_.ArmIn(absl::ZeroDuration());
}

void LimitsRefresher::Look() {
  std::set<std::string> served;
  for (const NodeSnapshot& n : scheduler_.Snapshot().nodes) {
    if (n.state == NodeState::kActive) served.insert(n.ready.begin(), n.ready.end());
  }
  std::vector<std::string> read;
  {
    absl::MutexLock lock(&mu_);
    absl::Time now = clock_.Now();
    for (const std::string& exchange : served) {
      absl::Time at = first_ready_.emplace(exchange, now).first->second;
      auto held = held_since_.find(exchange);
      if (held != held_since_.end()) {
        if (now - held->second < options_.wait) continue;
        common::Log(common::LogLevel::kWarning, "coordinator",
                    absl::StrCat(exchange, ": published limits not read again within ",
                                 absl::FormatDuration(options_.wait), " of a refusal; going on with the capacities in force"));
        held_since_.erase(held);
        refusals_.erase(exchange);  // given up on for this refusal
        scheduler_.ConfirmLimits(exchange);
        continue;
      }
      if (!scheduler_.LimitsConfirmed(exchange) && now - at >= options_.wait) {
        common::Log(common::LogLevel::kWarning, "coordinator",
                    absl::StrCat(exchange, ": no published limits after ", absl::FormatDuration(options_.wait),
                                 "; using the rules' figures"));
        scheduler_.ConfirmLimits(exchange);
      }
    }
    bool periodic = options_.every > absl::ZeroDuration() && now - last_refresh_ >= options_.every;
    for (const std::string& exchange : scheduler_.rules().ExchangeNames()) {
      const common::ExchangeRules& rules = *scheduler_.rules().Find(exchange);
      if (!rules.published_limits() || !served.count(exchange) || reading_.count(exchange)) continue;
      bool first = !done_once_.count(exchange) && options_.every > absl::ZeroDuration();
      // A refusal asks for a read at once, whatever read came before it (that
      // one may predate the change); refusal reads are 5 s apart. A refusal
      // during a read waits for it to end, then asks again.
      auto asked = refusal_reads_.find(exchange);
      bool requested = refusals_.count(exchange) &&
                       (asked == refusal_reads_.end() || now - asked->second >= kRefusalSpacing);
      if (!first && !periodic && !requested) continue;
      if (requested) {
        refusals_.erase(exchange);
        refusal_reads_[exchange] = now;
        held_since_.emplace(exchange, now);
        scheduler_.AwaitLimits(exchange);
      }
      reading_.insert(exchange);
      read.push_back(exchange);
    }
    if (!read.empty()) last_refresh_ = now;
  }
  for (const std::string& exchange : read) Read(exchange);
}

void LimitsRefresher::Read(const std::string& exchange) {
  const common::ExchangeRules& rules = *scheduler_.rules().Find(exchange);
  v1::ExecuteRequest req;
  req.set_exchange(exchange);
  req.set_method(rules.published_limits()->method);
  req.set_path(rules.published_limits()->path);
  req.set_priority(1000);
  execute_(req, clock_.Now() + absl::Seconds(30),
           [this, exchange](absl::StatusOr<v1::ExecuteResponse> r) { OnRead(exchange, std::move(r)); });
}

void LimitsRefresher::ReadFailed(const std::string& exchange) {
  {
    absl::MutexLock lock(&mu_);
    if (!held_since_.count(exchange)) return;
    refusals_.insert(exchange);
    refusal_reads_.erase(exchange);  // not spaced: the hold waits on it
  }
  timer_.ArmBy(clock_.SteadyNow() + kRetryFailedRead);
}

void LimitsRefresher::OnRead(const std::string& exchange, absl::StatusOr<v1::ExecuteResponse> result) {
  {
    absl::MutexLock lock(&mu_);
    reading_.erase(exchange);
  }
  const common::ExchangeRules& rules = *scheduler_.rules().Find(exchange);
  if (!result.ok() || result->http_status() != 200) {
    common::Log(common::LogLevel::kWarning, "coordinator",
                absl::StrCat(exchange, " published limits: ",
                             result.ok() ? absl::StrCat("HTTP ", result->http_status())
                                         : std::string(result.status().message())));
    return ReadFailed(exchange);
  }
  auto limits = ParsePublishedLimits(rules, result->body());
  if (!limits.ok()) {
    common::Log(common::LogLevel::kWarning, "coordinator", std::string(limits.status().message()));
    return ReadFailed(exchange);
  }
  {
    absl::MutexLock lock(&mu_);
    done_once_.insert(exchange);
    held_since_.erase(exchange);
  }
  bool changed = false;
  for (const auto& [pool, capacity] : *limits) {
    int index = rules.PoolIndex(pool);
    if (rules.pools()[index].capacity == capacity) continue;
    common::Log(common::LogLevel::kInfo, "coordinator",
                absl::StrCat(exchange, " publishes ", pool, " = ", capacity, " (was ", rules.pools()[index].capacity,
                             ")"));
    (void)scheduler_.ApplyLimit(exchange, pool, capacity);
    changed = true;
  }
  if (changed && changed_) changed_();
  scheduler_.ConfirmLimits(exchange);
}

}  // namespace marketprism::coordinator
