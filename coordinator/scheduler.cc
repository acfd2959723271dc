#include "coordinator/scheduler.h"

#include <algorithm>
#include <limits>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace marketprism::coordinator {

absl::string_view NodeStateName(NodeState s) {
  switch (s) {
    case NodeState::kActive:
      return "active";
    case NodeState::kSuspect:
      return "suspect";
    case NodeState::kDraining:
      return "draining";
    case NodeState::kDisconnected:
      return "disconnected";
  }
  return "unknown";
}

namespace {

// Requests with the same signature need the same budget on the same nodes: if
// one does not fit, none does, this poll.
std::string Signature(const std::string& exchange, const common::Cost& cost) {
  std::string s = exchange;
  for (const common::Cost::Charge& c : cost.charges) absl::StrAppend(&s, "|", c.pool, ":", c.units);
  return s;
}

}  // namespace

Scheduler::Scheduler(common::RulesBook rules, common::Clock& clock, SchedulerOptions options)
    : rules_(std::move(rules)), clock_(clock), options_(options) {
  recent_.reserve(options_.recent_outcomes);
  if (options_.await_published_limits) {
    absl::MutexLock lock(&mu_);
    for (const std::string& e : rules_.ExchangeNames()) {
      if (rules_.Find(e)->published_limits()) awaiting_limits_.insert(e);
    }
  }
}

void Scheduler::ConfirmLimits(const std::string& exchange) {
  Ready ready;
  {
    absl::MutexLock lock(&mu_);
    if (awaiting_limits_.erase(exchange) == 0) return;
    PollLocked(clock_.Now(), ready);
  }
  Run(ready);
}

void Scheduler::AwaitLimits(const std::string& exchange) {
  absl::MutexLock lock(&mu_);
  awaiting_limits_.insert(exchange);
}

bool Scheduler::LimitsConfirmed(const std::string& exchange) const {
  absl::MutexLock lock(&mu_);
  return !awaiting_limits_.count(exchange);
}

Scheduler::~Scheduler() = default;

void Scheduler::Run(Ready& ready) {
  for (auto& work : ready) work();
  ready.clear();
}

void Scheduler::Deliver(Ready& ready, Done done, absl::StatusOr<Placement> result) {
  ready.emplace_back([done = std::move(done), result = std::move(result)]() mutable {
    done(std::move(result));
  });
}

void Scheduler::SetWakeupHook(std::function<void(absl::Time)> hook) {
  absl::MutexLock lock(&mu_);
  wakeup_hook_ = std::move(hook);
}

common::BudgetBook& Scheduler::Book(const std::string& exchange, const std::string& ip) {
  auto& slot = books_[{exchange, ip}];
  if (!slot) {
    slot = std::make_unique<common::BudgetBook>(*rules_.Find(exchange),
                                                options_.default_uncertainty);
  }
  return *slot;
}

Scheduler::Exposure& Scheduler::ExposureOf(const std::string& exchange, const std::string& ip) {
  auto it = exposures_.find({exchange, ip});
  if (it != exposures_.end()) return it->second;
  Exposure e(options_.exposure);
  // The windows that restart the bound: the fixed IP pool whose usage the
  // exchange reports, else the first fixed IP pool.
  const common::ExchangeRules& rules = *rules_.Find(exchange);
  for (size_t i = 0; i < rules.pools().size(); ++i) {
    const common::PoolRule& pool = rules.pools()[i];
    if (pool.scope != common::Scope::kIp || pool.window != common::WindowKind::kFixed) continue;
    if (e.window_pool < 0 || (!pool.usage_header.empty() && rules.pools()[e.window_pool].usage_header.empty())) {
      e.window_pool = static_cast<int>(i);
    }
  }
  return exposures_.emplace(std::make_pair(exchange, ip), std::move(e)).first->second;
}

bool Scheduler::ExposureAllows(const Pending& p, const Node& n, absl::Time t) {
  Exposure& e = ExposureOf(p.exchange, n.ip);
  if (!e.bound.enabled()) return true;
  absl::Time now = clock_.Now();
  // A request sent now could not be answered before its deadline: it would
  // be lost to the client and still count at the exchange.
  if (now + e.rtt.value() > p.deadline || now < e.held_until) return false;
  common::BudgetBook& book = Book(p.exchange, n.ip);
  if (const common::PoolLedger* l = book.ledger(e.window_pool)) {
    absl::Time window = l->WindowStart(t);
    if (window != e.window) {
      e.window = window;
      e.bound.Restart();
    }
  }
  double rate = book.SpendRate(t, p.cost);
  int64_t units = e.window_pool >= 0 ? p.cost.UnitsIn(e.window_pool) : 0;
  if (units > 0 && e.mean_units > 0) rate *= static_cast<double>(units) / e.mean_units;
  return e.bound.MayStart(common::NeededInFlight(rate, e.rtt.value()));
}

absl::Duration Scheduler::ExchangeOffset(const Node& n, const std::string& exchange) const {
  absl::Duration offset = n.skew.offset();
  auto lane = n.lanes.find(exchange);
  if (lane != n.lanes.end() && lane->second.clock) offset += lane->second.clock->offset;
  return offset;
}

void Scheduler::RefreshUncertainty(Node& n) {
  for (const std::string& exchange : n.exchanges) {
    const Lane& lane = n.lanes[exchange];
    absl::Duration u = options_.default_uncertainty;
    if (lane.clock && n.skew.has_estimate()) {
      u = lane.clock->uncertainty + n.skew.uncertainty() + options_.margin;
    } else if (lane.clock) {
      // No skew sample yet: the node's clock is assumed close to ours.
      u = lane.clock->uncertainty + options_.default_uncertainty;
    }
    Book(exchange, n.ip).set_uncertainty(u);
  }
}

bool Scheduler::Serves(const Node& n, const Pending& p) const {
  return n.connected && !n.draining && !n.suspect && n.exchanges.count(p.exchange) > 0 &&
         p.excluded.count(n.id) == 0;
}

bool Scheduler::ClockKnown(const Node& n, const std::string& exchange) const {
  const common::ExchangeRules* rules = rules_.Find(exchange);
  if (rules == nullptr || !rules->server_time()) return true;
  auto lane = n.lanes.find(exchange);
  return lane != n.lanes.end() && lane->second.clock.has_value();
}

bool Idempotent(const ExecuteSpec& spec) {
  if (spec.method == "GET" || spec.method == "HEAD" || spec.method == "OPTIONS") return true;
  // Deribit's public JSON-RPC methods are reads, sent as POST.
  return spec.method == "POST" && (absl::StrContains(spec.path, "/public/") ||
                                   absl::StrContains(spec.body, "\"public/"));
}

// ---- nodes -------------------------------------------------------------------

void Scheduler::UpsertNode(const std::string& node_id, const std::string& egress_ip,
                           const std::string& grpc_address, const std::string& version,
                           const std::vector<std::string>& exchanges) {
  Ready ready;
  {
    absl::MutexLock lock(&mu_);
    absl::Time now = clock_.Now();
    Node& n = nodes_[node_id];
    if (n.id.empty()) n.registered = now;
    n.id = node_id;
    n.ip = egress_ip;
    n.address = grpc_address;
    n.version = version;
    n.connected = true;
    n.last_seen = now;
    n.exchanges.clear();
    for (const std::string& e : exchanges) {
      if (rules_.Find(e) != nullptr) n.exchanges.insert(e);
    }
    RefreshUncertainty(n);
    PollLocked(now, ready);
  }
  Run(ready);
}

void Scheduler::DisconnectNode(const std::string& node_id) {
  Ready ready;
  {
    absl::MutexLock lock(&mu_);
    auto it = nodes_.find(node_id);
    if (it == nodes_.end()) return;
    it->second.connected = false;
    PollLocked(clock_.Now(), ready);
  }
  Run(ready);
}

void Scheduler::SetSuspect(const std::string& node_id, bool suspect) {
  Ready ready;
  {
    absl::MutexLock lock(&mu_);
    auto it = nodes_.find(node_id);
    if (it == nodes_.end() || it->second.suspect == suspect) return;
    it->second.suspect = suspect;
    PollLocked(clock_.Now(), ready);
  }
  Run(ready);
}

void Scheduler::ForgetLedgers() {
  absl::MutexLock lock(&mu_);
  for (auto it = books_.begin(); it != books_.end();) {
    bool in_use = false;
    for (const auto& [id, n] : nodes_) in_use = in_use || (n.ip == it->first.second && n.in_flight > 0);
    if (in_use) {
      ++it;
    } else {
      recorded_.erase(it->first);
      it = books_.erase(it);
    }
  }
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    it = it->second.in_flight > 0 ? std::next(it) : nodes_.erase(it);
  }
  for (auto it = exposures_.begin(); it != exposures_.end();) {
    it = it->second.bound.in_flight() > 0 ? std::next(it) : exposures_.erase(it);
  }
}

absl::Status Scheduler::SetDraining(const std::string& node_id, bool draining) {
  Ready ready;
  {
    absl::MutexLock lock(&mu_);
    auto it = nodes_.find(node_id);
    if (it == nodes_.end()) return absl::NotFoundError(absl::StrCat("no node \"", node_id, "\""));
    it->second.draining = draining;
    PollLocked(clock_.Now(), ready);
  }
  Run(ready);
  return absl::OkStatus();
}

void Scheduler::SetNodeClocks(const std::string& node_id, const std::vector<NodeClock>& clocks) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(node_id);
  if (it == nodes_.end()) return;
  for (const NodeClock& c : clocks) it->second.lanes[c.exchange].clock = c;
  RefreshUncertainty(it->second);
}

void Scheduler::SetNodeSinks(const std::string& node_id, std::vector<SinkView> sinks) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(node_id);
  if (it != nodes_.end()) it->second.sinks = std::move(sinks);
}

void Scheduler::Park(const std::string& node_id, const std::string& exchange, absl::Time until,
                     const std::string& kind) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(node_id);
  if (it == nodes_.end()) return;
  Lane& lane = it->second.lanes[exchange];
  if (until > lane.parked_until) {
    lane.parked_until = until;
    lane.park_kind = kind;
  }
}

void Scheduler::ApplyUsage(const std::string& node_id, const std::string& exchange,
                           const common::Cost& cost, absl::Time ex_sent, absl::Time ex_replied,
                           std::optional<std::pair<std::string, int64_t>> observed) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(node_id);
  const common::ExchangeRules* rules = rules_.Find(exchange);
  if (it == nodes_.end() || rules == nullptr) return;
  common::BudgetBook& book = Book(exchange, it->second.ip);
  recorded_.insert({exchange, it->second.ip});
  std::optional<std::pair<int, int64_t>> seen;
  if (observed) seen = std::make_pair(rules->PoolIndex(observed->first), observed->second);
  book.Complete(book.Charge(ex_sent, cost), ex_replied, seen);
}

void Scheduler::SeedUsage(const std::string& node_id, const std::string& exchange,
                          const std::vector<std::pair<std::string, int64_t>>& pools_used,
                          const std::vector<RecentSend>& recent, bool rolling_exact) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(node_id);
  const common::ExchangeRules* rules = rules_.Find(exchange);
  if (it == nodes_.end() || rules == nullptr) return;
  // Seeded once: after that this coordinator has its own record of the IP.
  if (!recorded_.insert({exchange, it->second.ip}).second) return;
  common::BudgetBook& book = Book(exchange, it->second.ip);
  absl::Time t = clock_.Now() + ExchangeOffset(it->second, exchange);
  for (const auto& [pool, used] : pools_used) {
    int index = rules->PoolIndex(pool);
    if (index < 0 || used <= 0) continue;
    if (rolling_exact && rules->pools()[index].window == common::WindowKind::kRolling) continue;
    common::Cost cost;
    cost.charges.push_back({index, used});
    book.Complete(book.Charge(t, cost), t, std::make_pair(index, used));
  }
  if (!rolling_exact) return;
  for (const RecentSend& r : recent) {
    common::Cost cost;
    for (const common::Cost::Charge& c : r.cost.charges) {
      if (c.pool >= 0 && c.pool < static_cast<int>(rules->pools().size()) &&
          rules->pools()[c.pool].window == common::WindowKind::kRolling) {
        cost.charges.push_back(c);
      }
    }
    if (!cost.charges.empty()) book.Complete(book.Charge(r.sent_ex, cost), r.replied_ex, std::nullopt);
  }
}

// ---- limits ------------------------------------------------------------------

absl::Status Scheduler::ApplyLimit(const std::string& exchange, const std::string& pool,
                                   int64_t capacity) {
  Ready ready;
  {
    absl::MutexLock lock(&mu_);
    common::ExchangeRules* rules = rules_.FindMutable(exchange);
    if (rules == nullptr) return absl::NotFoundError(absl::StrCat("unknown exchange ", exchange));
    absl::Status st = rules->SetCapacity(pool, capacity);
    if (!st.ok()) return st;
    for (auto& [key, book] : books_) {
      if (key.first == exchange) book->SyncCapacities();
    }
    PollLocked(clock_.Now(), ready);
  }
  Run(ready);
  return absl::OkStatus();
}

std::vector<std::tuple<std::string, std::string, int64_t>> Scheduler::Limits() const {
  std::vector<std::tuple<std::string, std::string, int64_t>> out;
  absl::MutexLock lock(&mu_);
  for (const std::string& name : rules_.ExchangeNames()) {
    for (const common::PoolRule& p : rules_.Find(name)->pools()) {
      out.emplace_back(name, p.name, p.capacity);
    }
  }
  return out;
}

// ---- account leases ----------------------------------------------------------

common::BudgetBook* Scheduler::AccountBook(const std::string& exchange, const std::string& account,
                                           const std::string& node) {
  auto it = account_books_.find({exchange, account, node});
  return it == account_books_.end() ? nullptr : it->second.get();
}

void Scheduler::SetLeaseShares(const LeaseShares& shares) {
  Ready ready;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [key, book] : account_books_) {
      if (shares.contains(key)) continue;
      for (size_t i = 0; i < book->rules().pools().size(); ++i) book->SetCapacity(static_cast<int>(i), 0);
    }
    for (const auto& [key, units] : shares) {
      const auto& [exchange, account, node] = key;
      const common::ExchangeRules* rules = rules_.Find(exchange);
      if (rules == nullptr) continue;
      std::unique_ptr<common::BudgetBook>& book = account_books_[key];
      if (book == nullptr) {
        book = std::make_unique<common::BudgetBook>(*rules, options_.default_uncertainty, common::Scope::kAccount);
      }
      auto n = nodes_.find(node);
      if (n != nodes_.end()) book->set_uncertainty(Book(exchange, n->second.ip).uncertainty());
      for (size_t i = 0; i < rules->pools().size(); ++i) {
        auto u = units.find(static_cast<int>(i));
        book->SetCapacity(static_cast<int>(i), u == units.end() ? 0 : u->second);
      }
    }
    PollLocked(clock_.Now(), ready);
  }
  Run(ready);
}

// ---- requests ----------------------------------------------------------------

std::optional<Placement> Scheduler::TryPlace(Pending& p, absl::Time now) {
  if (!p.limits_probe && awaiting_limits_.count(p.exchange)) return std::nullopt;
  std::vector<Node*> candidates;
  for (auto& [id, n] : nodes_) candidates.push_back(&n);
  if (candidates.empty()) return std::nullopt;
  size_t start = rotate_++ % candidates.size();
  Node* best = nullptr;
  double best_headroom = -2;
  absl::Time best_t;
  for (size_t k = 0; k < candidates.size(); ++k) {
    Node& n = *candidates[(start + k) % candidates.size()];
    if (!Serves(n, p) || !ClockKnown(n, p.exchange)) continue;
    auto lane = n.lanes.find(p.exchange);
    if (lane != n.lanes.end() && now < lane->second.parked_until) continue;
    common::BudgetBook& book = Book(p.exchange, n.ip);
    absl::Time t = now + ExchangeOffset(n, p.exchange);
    if (!book.Fits(t, p.cost) || !ExposureAllows(p, n, t)) continue;
    double h = book.Headroom(t, p.cost);
    if (!p.account.empty()) {
      common::BudgetBook* lease = AccountBook(p.exchange, p.account, n.id);
      if (lease == nullptr || !lease->Fits(t, p.cost)) continue;
      if (auto held = account_held_.find({p.exchange, p.account, n.id});
          held != account_held_.end() && now < held->second) {
        continue;
      }
      h = std::min(h, lease->Headroom(t, p.cost));
    }
    if (h > best_headroom) {
      best = &n;
      best_headroom = h;
      best_t = t;
    }
  }
  if (best == nullptr) return std::nullopt;
  Placement pl;
  pl.id = p.id;
  pl.node_id = best->id;
  pl.egress_ip = best->ip;
  pl.exchange = p.exchange;
  pl.cost = p.cost;
  pl.ticket = Book(p.exchange, best->ip).Charge(best_t, p.cost);
  Exposure& exposure = ExposureOf(p.exchange, best->ip);
  pl.exposure_epoch = exposure.bound.Started();
  if (int64_t units = exposure.window_pool >= 0 ? p.cost.UnitsIn(exposure.window_pool) : 0; units > 0) {
    double u = static_cast<double>(units);
    exposure.mean_units = exposure.mean_units > 0 ? exposure.mean_units + (u - exposure.mean_units) / 16 : u;
  }
  recorded_.insert({p.exchange, best->ip});
  if (!p.account.empty()) {
    pl.account = p.account;
    pl.account_ticket = AccountBook(p.exchange, p.account, best->id)->Charge(best_t, p.cost);
  }
  pl.attempt = ++p.attempts;
  pl.enqueued = p.enqueued;
  pl.placed = now;
  ++best->in_flight;
  ++best->requests;
  return pl;
}

absl::Time Scheduler::EarliestStart(const Pending& p, absl::Time now, bool for_wakeup) {
  absl::Time best = absl::InfiniteFuture();
  if (!p.limits_probe && awaiting_limits_.count(p.exchange)) return best;
  for (auto& [id, n] : nodes_) {
    if (!Serves(n, p) || !ClockKnown(n, p.exchange)) continue;
    absl::Time start = now;
    auto lane = n.lanes.find(p.exchange);
    if (lane != n.lanes.end()) start = std::max(start, lane->second.parked_until);
    absl::Duration offset = ExchangeOffset(n, p.exchange);
    absl::Time fit = Book(p.exchange, n.ip).EarliestFit(start + offset, p.cost);
    if (for_wakeup && fit <= now + offset && !ExposureAllows(p, n, now + offset)) {
      // Full: a reply will poll. Held after the node's refusal: wake then.
      absl::Time held = ExposureOf(p.exchange, n.ip).held_until;
      if (held <= now) continue;
      fit = held + offset;
    }
    if (!p.account.empty()) {
      if (auto held = account_held_.find({p.exchange, p.account, n.id}); held != account_held_.end()) {
        start = std::max(start, held->second);
      }
      common::BudgetBook* lease = AccountBook(p.exchange, p.account, n.id);
      fit = lease == nullptr ? absl::InfiniteFuture() : std::max(fit, lease->EarliestFit(start + offset, p.cost));
    }
    if (fit != absl::InfiniteFuture()) best = std::min(best, fit - offset);
  }
  return best;
}

absl::Status Scheduler::ResourceExhausted(const Pending& p, absl::Time now) {
  absl::Time start = EarliestStart(p, now);
  absl::Duration retry = start == absl::InfiniteFuture() ? options_.unknown_retry_after
                                                         : std::max(absl::ZeroDuration(), start - now);
  int64_t ms = absl::ToInt64Milliseconds(absl::Ceil(retry, absl::Milliseconds(1)));
  absl::Status st = absl::ResourceExhaustedError(
      absl::StrCat("no ", p.exchange, " budget on any egress IP before the deadline; retry after ",
                   ms, " ms"));
  return WithRetryAfter(std::move(st), absl::Milliseconds(ms));
}

absl::StatusOr<common::Cost> Scheduler::Price(const ExecuteSpec& spec) const {
  const common::ExchangeRules* rules = rules_.Find(spec.exchange);
  if (rules == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("exchange: unknown exchange \"", spec.exchange,
                                                   "\" (known: ",
                                                   absl::StrJoin(rules_.ExchangeNames(), ", "), ")"));
  }
  if (spec.method.empty()) return absl::InvalidArgumentError("method: must be set, e.g. GET");
  if (spec.path.empty() || spec.path[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("path: must start with '/', got \"", spec.path, "\""));
  }
  absl::StatusOr<std::string> endpoint = rules->EndpointPath(spec.path, spec.body);
  if (!endpoint.ok()) return endpoint.status();
  absl::StatusOr<common::Cost> cost = rules->Price(spec.method, *endpoint, spec.query);
  if (!cost.ok()) {
    if (cost.status().code() == absl::StatusCode::kNotFound) {
      return absl::InvalidArgumentError(absl::StrCat("path: ", cost.status().message()));
    }
    return absl::InvalidArgumentError(absl::StrCat("query: ", cost.status().message()));
  }
  if (spec.account.empty() && rules->ChargesAccount(*cost)) {
    std::vector<std::string> pools;
    for (const common::Cost::Charge& c : cost->charges) {
      if (rules->pools()[c.pool].scope == common::Scope::kAccount) pools.push_back(rules->pools()[c.pool].name);
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "headers: ", spec.method, " ", spec.path, " is charged to the account's pools (",
        absl::StrJoin(pools, ", "), "): name the account in header ", rules->account_header()));
  }
  return cost;
}

absl::Status Scheduler::EnqueueLocked(ExecuteSpec& spec, common::Cost cost, Done done,
                                      absl::Time now, std::vector<Key>* keys) {
  bool served = false;
  for (auto& [id, n] : nodes_) {
    served = served || (n.connected && !n.draining && n.exchanges.count(spec.exchange) > 0);
  }
  if (!served) {
    return absl::UnavailableError(absl::StrCat("no available node serves ", spec.exchange, " (",
                                               nodes_.size(), " nodes known)"));
  }
  if (queue_.size() >= options_.max_queue) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the queue is full (", options_.max_queue, " requests waiting)"));
  }
  Pending p;
  p.id = next_id_++;
  p.seq = next_seq_++;
  p.exchange = spec.exchange;
  p.priority = spec.priority;
  p.deadline = spec.deadline;
  p.enqueued = now;
  p.cost = std::move(cost);
  p.done = std::move(done);
  p.limits_probe = spec.limits_probe;
  p.method = spec.method;
  p.account = spec.account;
  p.idempotent = Idempotent(spec);
  Key key{-p.priority, p.seq};
  queue_.emplace(key, std::move(p));
  keys->push_back(key);
  return absl::OkStatus();
}

void Scheduler::FailFastLocked(const std::vector<Key>& keys, absl::Time now, Ready& ready) {
  for (const Key& key : keys) {
    auto it = queue_.find(key);
    if (it == queue_.end()) continue;  // placed
    // Not placed. Answer now if it could never start before its deadline.
    absl::Time start = EarliestStart(it->second, now);
    if (start != absl::InfiniteFuture() && start > it->second.deadline) {
      Deliver(ready, std::move(it->second.done), ResourceExhausted(it->second, now));
      queue_.erase(it);
    }
  }
}

absl::Status Scheduler::Submit(ExecuteSpec spec, Done done) {
  absl::StatusOr<common::Cost> cost = Price(spec);
  if (!cost.ok()) return cost.status();
  Ready ready;
  {
    absl::MutexLock lock(&mu_);
    absl::Time now = clock_.Now();
    std::vector<Key> keys;
    absl::Status st = EnqueueLocked(spec, std::move(*cost), std::move(done), now, &keys);
    if (!st.ok()) return st;
    PollLocked(now, ready);
    FailFastLocked(keys, now, ready);
  }
  Run(ready);
  return absl::OkStatus();
}

std::vector<absl::Status> Scheduler::SubmitBatch(std::vector<std::pair<ExecuteSpec, Done>> batch) {
  std::vector<absl::Status> out(batch.size());
  std::vector<absl::StatusOr<common::Cost>> costs;
  costs.reserve(batch.size());
  for (const auto& [spec, done] : batch) costs.push_back(Price(spec));
  Ready ready;
  {
    absl::MutexLock lock(&mu_);
    absl::Time now = clock_.Now();
    std::vector<Key> keys;
    for (size_t i = 0; i < batch.size(); ++i) {
      out[i] = costs[i].ok() ? EnqueueLocked(batch[i].first, std::move(*costs[i]),
                                             std::move(batch[i].second), now, &keys)
                             : costs[i].status();
    }
    PollLocked(now, ready);
    FailFastLocked(keys, now, ready);
  }
  Run(ready);
  return out;
}

void Scheduler::Requeue(Pending p, absl::Time now, Ready& ready) {
  int placements = p.attempts;
  if (static_cast<int>(p.excluded.size()) >= options_.max_attempts ||
      placements >= 4 * options_.max_attempts) {
    RecordFinal(false, absl::ZeroDuration());
    Deliver(ready, std::move(p.done),
            absl::UnavailableError(absl::StrCat("no node could deliver the request after ",
                                                placements, " attempts")));
    return;
  }
  if (now >= p.deadline) {
    absl::Status st = ResourceExhausted(p, now);
    Deliver(ready, std::move(p.done), std::move(st));
    return;
  }
  Key key{-p.priority, p.seq};
  queue_.emplace(key, std::move(p));
}

Scheduler::ReportResult Scheduler::Report(const Placement& pl, const DispatchOutcome& outcome) {
  Ready ready;
  ReportResult result = ReportResult::kRequeued;
  {
    absl::MutexLock lock(&mu_);
    absl::Time now = clock_.Now();
    auto it = in_flight_.find(pl.id);
    if (it == in_flight_.end()) return ReportResult::kFinal;
    Pending p = std::move(it->second);
    in_flight_.erase(it);
    Node& n = nodes_[pl.node_id];
    --n.in_flight;
    if (outcome.node_received && outcome.node_replied) {
      n.skew.AddBounds(*outcome.node_replied - now, *outcome.node_received - pl.placed);
      RefreshUncertainty(n);
    }
    common::BudgetBook& book = Book(pl.exchange, pl.egress_ip);
    const common::ExchangeRules& rules = book.rules();
    absl::Time t = now + ExchangeOffset(n, pl.exchange);
    if (!pl.account.empty()) {
      // The lease's book settles as the node's does: kept when it may have
      // been sent, refunded when it surely was not.
      common::BudgetBook* lease = AccountBook(pl.exchange, pl.account, pl.node_id);
      bool sent = outcome.kind == DispatchOutcome::Kind::kReplied || outcome.kind == DispatchOutcome::Kind::kLost;
      if (lease != nullptr && sent) lease->Complete(pl.account_ticket, t, std::nullopt);
      if (lease != nullptr && !sent) lease->Cancel(pl.account_ticket);
    }
    EndExposure(pl, outcome, now);
    Lane& lane = n.lanes[pl.exchange];
    auto park = [&](absl::Time until, const std::string& kind) {
      if (until > lane.parked_until) {
        lane.parked_until = until;
        lane.park_kind = kind;
      }
    };
    auto failed = [&] {
      ++n.failures;
      if (++n.consecutive_failures >= options_.failures_to_park) {
        n.consecutive_failures = 0;
        for (const std::string& e : n.exchanges) {
          Lane& l = n.lanes[e];
          if (now + options_.failure_park > l.parked_until) {
            l.parked_until = now + options_.failure_park;
            l.park_kind = "unreachable";
          }
        }
      }
    };
    switch (outcome.kind) {
      case DispatchOutcome::Kind::kReplied: {
        std::optional<std::pair<int, int64_t>> seen;
        if (outcome.observed) {
          int pool = rules.PoolIndex(outcome.observed->first);
          if (pool >= 0) seen = std::make_pair(pool, outcome.observed->second);
        }
        book.Complete(pl.ticket, t, seen);
        n.consecutive_failures = 0;
        n.last_seen = now;
        if (outcome.park_until) park(*outcome.park_until, outcome.park_kind);
        RecordFinal(outcome.http_status < 500 && !outcome.park_until, outcome.exchange_time);
        result = ReportResult::kFinal;
        break;
      }
      case DispatchOutcome::Kind::kRefused:
        book.Cancel(pl.ticket);
        if (outcome.exposure_refused) {
          // The node's bound is lower than ours was (EndExposure took it):
          // the node stays in rotation.
        } else if (outcome.account_refused && !pl.account.empty()) {
          account_held_[{pl.exchange, pl.account, pl.node_id}] =
              now + std::max(outcome.retry_after, options_.refused_backoff);
        } else {
          park(now + std::max(outcome.retry_after, options_.refused_backoff), "refused");
        }
        Requeue(std::move(p), now, ready);
        break;
      case DispatchOutcome::Kind::kParked:
        book.Cancel(pl.ticket);
        park(outcome.park_until.value_or(now + outcome.retry_after),
             outcome.park_kind.empty() ? "parked" : outcome.park_kind);
        Requeue(std::move(p), now, ready);
        break;
      case DispatchOutcome::Kind::kNotSent:
        book.Cancel(pl.ticket);
        failed();
        p.excluded.insert(n.id);
        Requeue(std::move(p), now, ready);
        break;
      case DispatchOutcome::Kind::kLost:
        // It may have reached the exchange: keep it charged, unconfirmed.
        book.Complete(pl.ticket, t, std::nullopt);
        if (!outcome.deadline_passed) failed();  // the client's deadline is not the node's fault
        p.excluded.insert(n.id);
        if (!p.idempotent) {
          // Sending it again could do it twice: the caller decides.
          RecordFinal(false, absl::ZeroDuration());
          Deliver(ready, std::move(p.done),
                  absl::UnavailableError(absl::StrCat(
                      "node ", n.id, " was lost before it answered (", outcome.detail, "); ", p.method,
                      " is not retried since it may have reached the exchange")));
          break;
        }
        Requeue(std::move(p), now, ready);
        break;
    }
    PollLocked(now, ready);
  }
  Run(ready);
  return result;
}

void Scheduler::Abandon(const Placement& pl) {
  Ready ready;
  {
    absl::MutexLock lock(&mu_);
    auto it = in_flight_.find(pl.id);
    if (it == in_flight_.end()) return;
    in_flight_.erase(it);
    auto n = nodes_.find(pl.node_id);
    if (n != nodes_.end()) --n->second.in_flight;
    Book(pl.exchange, pl.egress_ip).Cancel(pl.ticket);
    ExposureOf(pl.exchange, pl.egress_ip).bound.Ended(common::ExposureVerdict::kNeutral, pl.exposure_epoch);
    if (!pl.account.empty()) {
      if (common::BudgetBook* lease = AccountBook(pl.exchange, pl.account, pl.node_id)) {
        lease->Cancel(pl.account_ticket);
      }
    }
    PollLocked(clock_.Now(), ready);
  }
  Run(ready);
}

void Scheduler::EndExposure(const Placement& pl, const DispatchOutcome& outcome, absl::Time now) {
  Exposure& e = ExposureOf(pl.exchange, pl.egress_ip);
  common::ExposureVerdict verdict = common::ExposureVerdict::kNeutral;
  switch (outcome.kind) {
    case DispatchOutcome::Kind::kReplied:
      e.rtt.Add(now - pl.placed);
      if (outcome.park_until || outcome.foreign_units > 0) {
        verdict = common::ExposureVerdict::kSurprise;
      } else if (outcome.http_status < 500) {
        verdict = common::ExposureVerdict::kConfirmed;
      }
      break;
    case DispatchOutcome::Kind::kRefused:
      if (outcome.exposure_refused) {
        verdict = common::ExposureVerdict::kSurprise;
        e.held_until = now + std::max(e.rtt.value(), absl::Milliseconds(5));
      }
      break;
    case DispatchOutcome::Kind::kParked:
      verdict = common::ExposureVerdict::kSurprise;
      break;
    case DispatchOutcome::Kind::kLost:
      // A timeout of the exchange's is a surprise; our own deadline is not.
      if (!outcome.deadline_passed) verdict = common::ExposureVerdict::kSurprise;
      break;
    case DispatchOutcome::Kind::kNotSent:
      break;
  }
  e.bound.Ended(verdict, pl.exposure_epoch);
  if (outcome.exposure > 0 || outcome.exposure_refused) e.bound.SetExternal(outcome.exposure);
  if (outcome.foreign_units > 0) {
    e.foreign_units = outcome.foreign_units;
    e.foreign_seen = now;
  }
}

void Scheduler::RecordFinal(bool ok, absl::Duration exchange_time) {
  if (options_.recent_outcomes == 0) return;
  if (recent_.size() < options_.recent_outcomes) {
    recent_.emplace_back(ok, exchange_time);
  } else {
    recent_[recent_next_] = {ok, exchange_time};
    recent_next_ = (recent_next_ + 1) % options_.recent_outcomes;
  }
}

void Scheduler::PollLocked(absl::Time now, Ready& ready) {
  std::set<std::string> served;
  for (auto& [id, n] : nodes_) {
    if (!n.connected || n.draining) continue;
    served.insert(n.exchanges.begin(), n.exchanges.end());
  }
  std::set<std::string> failed;
  absl::Time next = absl::InfiniteFuture();
  for (auto it = queue_.begin(); it != queue_.end();) {
    Pending& p = it->second;
    if (p.deadline <= now) {
      Deliver(ready, std::move(p.done), ResourceExhausted(p, now));
      it = queue_.erase(it);
      continue;
    }
    if (!served.count(p.exchange)) {
      RecordFinal(false, absl::ZeroDuration());
      Deliver(ready, std::move(p.done),
              absl::UnavailableError(absl::StrCat("no available node serves ", p.exchange)));
      it = queue_.erase(it);
      continue;
    }
    // Requests alike (same exchange, cost and account) fit alike: once one
    // does not, the others are not tried in this pass.
    std::string sig = p.excluded.empty() && !p.limits_probe
                          ? absl::StrCat(Signature(p.exchange, p.cost), "|", p.account)
                          : "";
    if (sig.empty() || !failed.count(sig)) {
      std::optional<Placement> placed = TryPlace(p, now);
      if (placed) {
        Deliver(ready, p.done, std::move(*placed));
        in_flight_.emplace(p.id, std::move(p));
        it = queue_.erase(it);
        continue;
      }
      if (!sig.empty()) failed.insert(sig);
      next = std::min(next, EarliestStart(p, now, /*for_wakeup=*/true));
    }
    next = std::min(next, p.deadline);
    ++it;
  }
  if (next < next_wakeup_ && wakeup_hook_) {
    ready.emplace_back([hook = wakeup_hook_, next] { hook(next); });
  }
  next_wakeup_ = next;
}

absl::Time Scheduler::Poll() {
  Ready ready;
  absl::Time next;
  {
    absl::MutexLock lock(&mu_);
    PollLocked(clock_.Now(), ready);
    next = next_wakeup_;
  }
  Run(ready);
  return next;
}

absl::Time Scheduler::NextWakeup() {
  absl::MutexLock lock(&mu_);
  return next_wakeup_;
}

SchedulerSnapshot Scheduler::Snapshot() {
  absl::MutexLock lock(&mu_);
  absl::Time now = clock_.Now();
  SchedulerSnapshot s;
  s.queued = static_cast<int64_t>(queue_.size());
  int64_t ok = 0;
  std::vector<absl::Duration> times;
  for (const auto& [good, d] : recent_) {
    ok += good ? 1 : 0;
    if (d > absl::ZeroDuration()) times.push_back(d);
  }
  s.recent_outcomes = static_cast<int64_t>(recent_.size());
  s.success_rate = recent_.empty() ? 1.0 : static_cast<double>(ok) / static_cast<double>(recent_.size());
  if (!times.empty()) {
    std::sort(times.begin(), times.end());
    s.p95_exchange_time = times[std::min(times.size() - 1, times.size() * 95 / 100)];
  }
  for (auto& [id, n] : nodes_) {
    NodeSnapshot ns;
    ns.node_id = n.id;
    ns.egress_ip = n.ip;
    ns.grpc_address = n.address;
    ns.version = n.version;
    ns.state = !n.connected  ? NodeState::kDisconnected
               : n.draining ? NodeState::kDraining
               : n.suspect  ? NodeState::kSuspect
                            : NodeState::kActive;
    ns.registered = n.registered;
    ns.last_seen = n.last_seen;
    ns.in_flight = n.in_flight;
    ns.requests = n.requests;
    ns.failures = n.failures;
    ns.sinks = n.sinks;
    for (const std::string& e : n.exchanges) {
      const Lane& lane = n.lanes[e];
      LaneStatus ls{e, lane.parked_until, lane.park_kind, ExchangeOffset(n, e)};
      Exposure& x = ExposureOf(e, n.ip);
      // What replies have confirmed (the budget may need fewer).
      if (x.bound.enabled()) ls.exposure = x.bound.Limit(std::numeric_limits<int>::max());
      ls.in_flight = x.bound.in_flight();
      ls.foreign_units = x.foreign_units;
      ls.foreign_seen = x.foreign_seen;
      ns.lanes.push_back(std::move(ls));
      if (ClockKnown(n, e)) ns.ready.push_back(e);
      ns.pools.emplace_back(e, Book(e, n.ip).Snapshot(now + ExchangeOffset(n, e)));
    }
    for (const auto& [key, book] : account_books_) {
      const auto& [exchange, account, node] = key;
      if (node != n.id) continue;
      ns.leases.push_back({exchange, account, book->Snapshot(now + ExchangeOffset(n, exchange))});
    }
    s.nodes.push_back(std::move(ns));
  }
  return s;
}

}  // namespace marketprism::coordinator
