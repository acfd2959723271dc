#include "node/exchange_lane.h"

#include <algorithm>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include <nlohmann/json.hpp>

namespace marketprism::node {

using Json = nlohmann::json;

absl::StatusOr<int64_t> JsonPathInt(absl::string_view body, absl::string_view path) {
  Json j = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("the reply is not JSON");
  const Json* at = &j;
  for (absl::string_view part : absl::StrSplit(path, '.')) {
    int index = 0;
    if (at->is_array() && absl::SimpleAtoi(part, &index)) {
      if (index < 0 || index >= static_cast<int>(at->size())) {
        return absl::InvalidArgumentError(absl::StrCat("no element ", part, " in ", path));
      }
      at = &(*at)[static_cast<size_t>(index)];
    } else if (at->is_object() && at->contains(std::string(part))) {
      at = &(*at)[std::string(part)];
    } else {
      return absl::InvalidArgumentError(absl::StrCat("no field ", path, " in the reply"));
    }
  }
  if (at->is_number_integer()) return at->get<int64_t>();
  int64_t v = 0;
  if (at->is_string() && absl::SimpleAtoi(at->get<std::string>(), &v)) return v;
  return absl::InvalidArgumentError(absl::StrCat(path, " is not an integer"));
}

ExchangeLane* FindLane(const Lanes& lanes, absl::string_view exchange) {
  auto it = lanes.find(exchange);
  return it == lanes.end() ? nullptr : it->second.get();
}

ExchangeLane::ExchangeLane(const common::ExchangeRules& rules, LaneOptions options,
                           common::Clock& clock)
    : rules_(rules),
      options_(std::move(options)),
      clock_(clock),
      book_(rules, options_.default_uncertainty),
      exposure_(options_.exposure) {
  for (const common::PoolRule& p : rules_.pools()) {
    if (p.window == common::WindowKind::kRolling) longest_rolling_ = std::max(longest_rolling_, p.length);
  }
}

void ExchangeLane::SetEndpoint(std::string rest_url, std::shared_ptr<common::HttpClient> http) {
  absl::MutexLock lock(&mu_);
  rest_url_ = std::move(rest_url);
  http_ = std::move(http);
}

bool ExchangeLane::has_endpoint() {
  absl::MutexLock lock(&mu_);
  return http_ != nullptr;
}

std::string ExchangeLane::rest_url() {
  absl::MutexLock lock(&mu_);
  return rest_url_;
}

absl::Time ExchangeLane::ExchangeNow() { return clock_.Now() + offset_.offset(); }

void ExchangeLane::UpdateUncertainty() {
  absl::Duration u = offset_.has_estimate() ? offset_.uncertainty() + options_.margin
                                            : options_.default_uncertainty;
  book_.set_uncertainty(u);
}

ClockView ExchangeLane::clock() {
  absl::MutexLock lock(&mu_);
  ClockView v;
  v.measured = offset_.has_estimate();
  v.offset = offset_.offset();
  v.uncertainty = v.measured ? offset_.uncertainty() + options_.margin : options_.default_uncertainty;
  return v;
}

std::vector<common::BudgetBook::PoolView> ExchangeLane::Usage() {
  absl::MutexLock lock(&mu_);
  return book_.Snapshot(ExchangeNow());
}

std::optional<Park> ExchangeLane::ActivePark() {
  absl::MutexLock lock(&mu_);
  if (park_ && park_->until > clock_.Now()) return park_;
  return std::nullopt;
}

int ExchangeLane::exposure_limit() {
  absl::MutexLock lock(&mu_);
  return exposure_.enabled() ? exposure_.Limit(std::numeric_limits<int>::max()) : 0;
}

int ExchangeLane::exposure_in_flight() {
  absl::MutexLock lock(&mu_);
  return exposure_.in_flight();
}

ForeignUse ExchangeLane::foreign_use() {
  absl::MutexLock lock(&mu_);
  return foreign_;
}

std::vector<common::UsageEvent> ExchangeLane::TakeEvents() {
  absl::MutexLock lock(&mu_);
  std::vector<common::UsageEvent> out;
  out.swap(events_);
  return out;
}

std::vector<common::UsageEvent> ExchangeLane::RecentRolling() {
  absl::MutexLock lock(&mu_);
  absl::Time horizon = ExchangeNow() - longest_rolling_;
  while (!recent_rolling_.empty() && recent_rolling_.front().sent_ex < horizon) recent_rolling_.pop_front();
  return {recent_rolling_.begin(), recent_rolling_.end()};
}

absl::Status ExchangeLane::SetCapacity(absl::string_view pool, int64_t capacity) {
  int index = rules_.PoolIndex(pool);
  if (index < 0) return absl::NotFoundError(absl::StrCat("unknown pool ", pool, " on ", rules_.name()));
  if (capacity < 1) return absl::InvalidArgumentError("capacity must be >= 1");
  absl::MutexLock lock(&mu_);
  book_.SetCapacity(index, capacity);
  return absl::OkStatus();
}

std::optional<std::pair<std::string, int64_t>> ExchangeLane::ObservedUsage(
    const common::ExchangeRules& rules, const common::HttpReply& reply) {
  for (const common::PoolRule& pool : rules.pools()) {
    if (pool.usage_header.empty()) continue;
    const std::string* v = reply.Header(pool.usage_header);
    int64_t used = 0;
    if (v != nullptr && absl::SimpleAtoi(*v, &used)) return std::make_pair(pool.name, used);
  }
  return std::nullopt;
}

std::string ExchangeLane::BodyCode(common::Family family, int status, absl::string_view body) {
  // Only error-looking bodies are parsed: OKX can say 50011 with HTTP 200,
  // so its bodies are checked for a non-zero code cheaply first.
  if (family == common::Family::kOkx) {
    if (status < 400 && !absl::StrContains(body.substr(0, 64), "\"code\":\"5")) return "";
  } else if (family == common::Family::kDeribit) {
    if (!absl::StrContains(body, "\"error\"")) return "";
  } else if (status < 400) {
    return "";
  }
  Json j = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return "";
  const Json* code = nullptr;
  if (family == common::Family::kDeribit) {
    if (j.contains("error") && j["error"].is_object() && j["error"].contains("code")) {
      code = &j["error"]["code"];
    }
  } else if (j.contains("code")) {
    code = &j["code"];
  }
  if (code == nullptr) return "";
  if (code->is_string()) return code->get<std::string>();
  if (code->is_number_integer()) return absl::StrCat(code->get<int64_t>());
  return "";
}

bool ExchangeLane::ClockReady() { return offset_.has_estimate() || !rules_.server_time(); }

bool ExchangeLane::ready() {
  absl::MutexLock lock(&mu_);
  return http_ != nullptr && ClockReady();
}

std::optional<ExchangeLane::Admission> ExchangeLane::Admit(const LaneRequest& request, bool own,
                                                           LaneResult* r) {
  absl::StatusOr<std::string> endpoint = rules_.EndpointPath(request.path, request.body);
  absl::StatusOr<common::Cost> cost =
      endpoint.ok() ? rules_.Price(request.method, *endpoint, request.query) : endpoint.status();
  if (!cost.ok()) {
    r->outcome = LaneResult::Outcome::kInvalid;
    r->detail = std::string(cost.status().message());
    return std::nullopt;
  }
  r->cost = *cost;
  absl::MutexLock lock(&mu_);
  if (http_ == nullptr) {
    r->outcome = LaneResult::Outcome::kNotSent;
    r->detail = absl::StrCat("no URL for ", rules_.name(), " yet");
    return std::nullopt;
  }
  absl::Time now = clock_.Now();
  if (!own && !ClockReady()) {
    r->outcome = LaneResult::Outcome::kRefused;
    r->retry_after = absl::Seconds(1);
    r->detail = absl::StrCat(rules_.name(), "'s clock is not measured yet");
    return std::nullopt;
  }
  if (park_ && now < park_->until) {
    r->outcome = LaneResult::Outcome::kParked;
    r->park = park_;
    r->retry_after = park_->until - now;
    r->detail = absl::StrCat(rules_.name(), " has this IP on hold (", park_->kind, ")");
    return std::nullopt;
  }
  if (!own && !exposure_.MayStart(std::numeric_limits<int>::max())) {
    r->outcome = LaneResult::Outcome::kRefused;
    r->exposure_refusal = true;
    r->exposure = exposure_.Limit(std::numeric_limits<int>::max());
    r->detail = absl::StrCat(exposure_.in_flight(), " requests to ", rules_.name(),
                             " are in flight from this IP, as many as its exposure bound allows");
    return std::nullopt;
  }
  absl::Time t = ExchangeNow();
  if (!own && own_claim_ && now < own_claim_until_) {
    common::Cost both = r->cost;  // per pool: this request's units and the claim's
    for (const common::Cost::Charge& c : own_claim_->charges) {
      auto same = std::find_if(both.charges.begin(), both.charges.end(),
                               [&](const common::Cost::Charge& b) { return b.pool == c.pool; });
      if (same == both.charges.end()) {
        both.charges.push_back(c);
      } else {
        same->units += c.units;
      }
    }
    if (!book_.Fits(t, both)) {
      absl::Time fit = book_.EarliestFit(t, both);
      r->outcome = LaneResult::Outcome::kRefused;
      r->retry_after = fit == absl::InfiniteFuture() ? absl::ZeroDuration() : fit - t;
      r->detail = absl::StrCat("a message this node must send to ", rules_.name(),
                               " (a heartbeat or subscription) has first claim on this IP's budget");
      return std::nullopt;
    }
  }
  if (!book_.Fits(t, r->cost)) {
    // The coordinator thought it fits; this IP's own ledger does not.
    absl::Time fit = book_.EarliestFit(t, r->cost);
    r->outcome = LaneResult::Outcome::kRefused;
    r->retry_after = fit == absl::InfiniteFuture() ? absl::ZeroDuration() : fit - t;
    r->usage = book_.Snapshot(t);
    r->detail = "the node's ledger for this IP has no room for it";
    if (options_.trace_ledger) {
      for (const common::Cost::Charge& c : r->cost.charges) {
        if (const common::PoolLedger* l = book_.ledger(c.pool)) {
          common::Log(common::LogLevel::kInfo, "ledger",
                      absl::StrCat("refused ", request.path, " t=", absl::FormatTime(t), " ",
                                   rules_.pools()[c.pool].name, " ", l->DebugString(t)));
        }
      }
    }
    return std::nullopt;
  }
  Admission a;
  if (rules_.ChargesAccount(r->cost)) {
    // Account pools are shared by every IP: this node may spend only its
    // lease of them, whoever dispatched the request.
    a.account = common::AccountOf(rules_, request.headers);
    if (a.account.empty()) {
      r->outcome = LaneResult::Outcome::kInvalid;
      r->detail = absl::StrCat(request.method, " ", request.path,
                               " is charged to the account's pools: name the account in header ",
                               rules_.account_header());
      return std::nullopt;
    }
    auto it = leases_.find(a.account);
    r->account_refusal = true;
    if (it != leases_.end() && now < it->second.blocked_until) {
      r->outcome = LaneResult::Outcome::kRefused;
      r->retry_after = it->second.blocked_until - now;
      r->detail = absl::StrCat(rules_.name(), " said account ", common::ShortAccount(a.account),
                               " has too many orders; held until it frees");
      return std::nullopt;
    }
    if (it == leases_.end() || now >= it->second.expires) {
      r->outcome = LaneResult::Outcome::kRefused;
      r->retry_after = absl::Seconds(1);
      r->detail = it == leases_.end()
                      ? absl::StrCat("this node holds no lease of account ", common::ShortAccount(a.account))
                      : absl::StrCat("this node's lease of account ", common::ShortAccount(a.account),
                                     " expired ", absl::FormatDuration(now - it->second.expires),
                                     " ago (no leader has renewed it)");
      return std::nullopt;
    }
    if (!it->second.book->Fits(t, r->cost)) {
      absl::Time fit = it->second.book->EarliestFit(t, r->cost);
      r->outcome = LaneResult::Outcome::kRefused;
      r->retry_after = fit == absl::InfiniteFuture() ? absl::ZeroDuration() : fit - t;
      r->usage = it->second.book->Snapshot(t);
      r->detail = absl::StrCat("this node's lease of account ", common::ShortAccount(a.account), " has no room for it");
      return std::nullopt;
    }
    a.account_ticket = it->second.book->Charge(t, r->cost);
    r->account_refusal = false;
  }
  if (options_.trace_ledger) {
    std::string used;
    for (const common::Cost::Charge& c : r->cost.charges) {
      if (const common::PoolLedger* l = book_.ledger(c.pool)) {
        absl::StrAppend(&used, rules_.pools()[c.pool].name, "=", l->Used(t), "/", l->capacity(), " ");
      }
    }
    common::Log(common::LogLevel::kInfo, "ledger", absl::StrCat("admit t=", absl::FormatTime(t), " ", used));
  }
  a.ticket = book_.Charge(t, r->cost);
  if (!own) {
    a.exposure_epoch = exposure_.Started();
    a.exposed = true;
  }
  a.http = http_;
  a.base = rest_url_;
  a.offset_at_send = offset_.offset();
  a.sent_local = now;
  r->sent_ex = t;
  return a;
}

namespace {
// How long a message that found no room keeps its claim without asking again.
constexpr absl::Duration kOwnClaimHold = absl::Seconds(1);
}  // namespace

absl::StatusOr<absl::Duration> ExchangeLane::SpendOwn(const std::string& method, const std::string& path) {
  absl::StatusOr<common::Cost> cost = rules_.Price(method, path, {});
  if (!cost.ok()) return cost.status();
  absl::MutexLock lock(&mu_);
  absl::Time now = clock_.Now();
  if (park_ && now < park_->until) return park_->until - now;
  absl::Time t = ExchangeNow();
  if (!book_.Fits(t, *cost)) {
    // Dispatched requests would take every unit as it frees: claim the next.
    own_claim_ = *cost;
    own_claim_until_ = now + kOwnClaimHold;
    absl::Time fit = book_.EarliestFit(t, *cost);
    return fit == absl::InfiniteFuture() ? absl::Seconds(1) : std::max(fit - t, absl::Milliseconds(1));
  }
  own_claim_.reset();
  common::BudgetBook::Ticket ticket = book_.Charge(t, *cost);
  book_.Complete(ticket, t, std::nullopt);  // a WebSocket message arrives as it is sent
  events_.push_back({*cost, t, t, std::nullopt});
  return absl::ZeroDuration();
}

absl::StatusOr<common::HttpReply> ExchangeLane::Send(const Admission& a, const LaneRequest& request,
                                                     LaneResult* r) {
  common::HttpRequestSpec spec;
  spec.method = request.method;
  spec.url = common::BuildUrl(a.base, request.path, request.query);
  spec.body = request.body;
  spec.timeout = options_.request_timeout;
  if (!request.body.empty()) spec.headers.emplace_back("Content-Type", "application/json");
  for (const auto& h : request.headers) spec.headers.push_back(h);
  absl::Time start = clock_.SteadyNow();
  absl::StatusOr<common::HttpReply> reply = a.http->Send(spec);
  r->exchange_time = clock_.SteadyNow() - start;
  return reply;
}

void ExchangeLane::Settle(Admission& a, absl::StatusOr<common::HttpReply> reply, bool own,
                          LaneResult* r) {
  absl::MutexLock lock(&mu_);
  common::ExposureVerdict verdict = SettleLocked(a, std::move(reply), own, r);
  if (a.exposed) exposure_.Ended(verdict, a.exposure_epoch);
  if (exposure_.enabled()) r->exposure = exposure_.Limit(std::numeric_limits<int>::max());
}

common::ExposureVerdict ExchangeLane::SettleLocked(Admission& a, absl::StatusOr<common::HttpReply> reply,
                                                   bool own, LaneResult* r) {
  absl::Time now = clock_.Now();
  // If the clock estimate moved while the request was out, express its send
  // time in the current time base, as every other time in the ledger is.
  absl::Duration shift = offset_.offset() - a.offset_at_send;
  if (shift != absl::ZeroDuration()) {
    for (auto& [pool, part] : a.ticket.parts) common::RebaseTicket(part, shift, book_.uncertainty());
    for (auto& [pool, part] : a.account_ticket.parts) common::RebaseTicket(part, shift, book_.uncertainty());
    r->sent_ex += shift;
  }
  r->replied_ex = ExchangeNow();
  // The lease's book lives as long as the lane (a withdrawn lease keeps it).
  common::BudgetBook* account = a.account.empty() ? nullptr : leases_[a.account].book.get();
  common::ExposureVerdict verdict = common::ExposureVerdict::kNeutral;
  if (!reply.ok()) {
    if (common::MaybeDelivered(reply.status())) {
      book_.Complete(a.ticket, r->replied_ex, std::nullopt);
      if (account != nullptr) account->Complete(a.account_ticket, r->replied_ex, std::nullopt);
      r->outcome = LaneResult::Outcome::kLost;
      verdict = common::ExposureVerdict::kSurprise;  // a timeout: the exchange may be refusing
    } else {
      book_.Cancel(a.ticket);
      if (account != nullptr) account->Cancel(a.account_ticket);
      r->outcome = LaneResult::Outcome::kNotSent;
    }
    r->detail = std::string(reply.status().message());
    return verdict;
  }
  r->reply = std::move(*reply);
  r->observed = ObservedUsage(rules_, r->reply);
  r->foreign_units = ForeignUnits(a, *r);
  if (r->foreign_units > 0) {
    verdict = common::ExposureVerdict::kSurprise;
  } else if (r->reply.status < 500) {
    verdict = common::ExposureVerdict::kConfirmed;  // a 5xx says nothing about the budget
  }
  std::optional<std::pair<int, int64_t>> seen;
  if (r->observed) seen = std::make_pair(rules_.PoolIndex(r->observed->first), r->observed->second);
  book_.Complete(a.ticket, r->replied_ex, seen);
  if (account != nullptr) account->Complete(a.account_ticket, r->replied_ex, std::nullopt);
  r->outcome = LaneResult::Outcome::kReplied;

  const common::RejectionRule* rejection = rules_.MatchRejection(
      r->reply.status, BodyCode(rules_.family(), r->reply.status, r->reply.body));
  if (rejection != nullptr) {
    if (rejection->kind != common::RejectionKind::kAccountLimited) verdict = common::ExposureVerdict::kSurprise;
    absl::Duration wait = rules_.rejection_backoff();
    switch (rejection->kind) {
      case common::RejectionKind::kRateLimited:
      case common::RejectionKind::kBanned: {
        const std::string* header = rejection->retry_after_header.empty()
                                        ? nullptr
                                        : r->reply.Header(rejection->retry_after_header);
        int64_t seconds = 0;
        if (header != nullptr && absl::SimpleAtoi(*header, &seconds)) {
          wait = absl::Seconds(seconds);
        } else {
          // No Retry-After: the exchange says the pools this request uses are
          // spent; rolling windows and buckets say when they free up.
          for (const common::Cost::Charge& c : r->cost.charges) {
            if (const common::PoolLedger* l = book_.ledger(c.pool);
                l != nullptr && l->kind() != common::WindowKind::kFixed) {
              book_.MarkSpent(c.pool, r->replied_ex);
            }
          }
          absl::Time fit = book_.EarliestFit(r->replied_ex, r->cost);
          if (fit != absl::InfiniteFuture()) wait = std::max(wait, fit - r->replied_ex);
        }
        break;
      }
      case common::RejectionKind::kWaf:
        wait = options_.waf_park;
        break;
      case common::RejectionKind::kBusy:
        wait = options_.busy_park;
        break;
      case common::RejectionKind::kAccountLimited:
        break;
    }
    if (rejection->kind == common::RejectionKind::kAccountLimited) {
      // The account's orders are full, not this IP: hold the account here
      // (its lease) until the exchange says, and leave the IP in rotation.
      const std::string* header = rejection->retry_after_header.empty()
                                      ? nullptr
                                      : r->reply.Header(rejection->retry_after_header);
      int64_t seconds = 1;
      if (header != nullptr) (void)absl::SimpleAtoi(*header, &seconds);
      if (account != nullptr) {
        absl::Time& until = leases_[a.account].blocked_until;
        until = std::max(until, now + absl::Seconds(std::max<int64_t>(1, seconds)));
      }
      common::Log(common::LogLevel::kWarning, "lane",
                  absl::StrCat(rules_.name(), " says account ", common::ShortAccount(a.account),
                               " has too many orders (orders sent outside this cluster?); holding it ",
                               seconds, " s"));
    } else {
      Park p{std::string(common::RejectionKindName(rejection->kind)), now + wait, r->reply.status};
      if (!park_ || p.until > park_->until) park_ = p;
      r->park = p;
      if (rejection->kind == common::RejectionKind::kRateLimited || rejection->kind == common::RejectionKind::kBanned) {
        NoteRefusal(*r, a.sent_local, now, p.until);
      }
    }
  }
  if (own) events_.push_back({r->cost, r->sent_ex, r->replied_ex, r->observed});
  if (longest_rolling_ > absl::ZeroDuration()) {
    common::UsageEvent rec{{}, r->sent_ex, r->replied_ex, std::nullopt};
    for (const common::Cost::Charge& c : r->cost.charges) {
      if (rules_.pools()[c.pool].window == common::WindowKind::kRolling) rec.cost.charges.push_back(c);
    }
    if (!rec.cost.charges.empty()) recent_rolling_.push_back(std::move(rec));
    while (!recent_rolling_.empty() && recent_rolling_.front().sent_ex < r->sent_ex - longest_rolling_) {
      recent_rolling_.pop_front();
    }
  }
  return verdict;
}

int64_t ExchangeLane::ForeignUnits(const Admission& a, const LaneResult& r) {
  if (!r.observed) return 0;
  int pool = rules_.PoolIndex(r.observed->first);
  const common::PoolLedger* l = book_.ledger(pool);
  if (l == nullptr) return 0;
  int64_t explained = 0;
  for (const auto& [p, part] : a.ticket.parts) {
    if (p == pool) explained = l->MostExplained(part.sent, r.replied_ex);
  }
  int64_t excess = r.observed->second - explained;
  if (excess <= 0) return 0;
  absl::Time now = clock_.Now();
  if (now - foreign_.seen >= absl::Seconds(1)) {
    common::Log(common::LogLevel::kWarning, "lane",
                absl::StrCat(rules_.name(), " on ", options_.egress_ip.empty() ? "this IP" : options_.egress_ip,
                             ": the exchange counts ", r.observed->second, " ", r.observed->first, ", ", excess,
                             " more than this node sent (another program on this IP?); adopted"));
  }
  foreign_ = {r.observed->first, excess, now};
  return excess;
}

void ExchangeLane::NoteRefusal(const LaneResult& r, absl::Time sent, absl::Time now, absl::Time until) {
  // The exchange showed the pool full: so it is, to its window's end. The
  // pool is the one whose usage the reply reports, else the first fixed
  // pool the request charged.
  int pool = r.observed ? rules_.PoolIndex(r.observed->first) : -1;
  for (const common::Cost::Charge& c : r.cost.charges) {
    const common::PoolLedger* l = book_.ledger(c.pool);
    if (pool < 0 && l != nullptr && l->kind() == common::WindowKind::kFixed) pool = c.pool;
  }
  absl::Time window_end = until;
  if (const common::PoolLedger* l = book_.ledger(pool); l != nullptr && l->kind() == common::WindowKind::kFixed) {
    book_.MarkSpent(pool, r.replied_ex);
    window_end = std::max(window_end, l->WindowStart(r.replied_ex) + l->length() - offset_.offset());
  }
  std::string ip = options_.egress_ip.empty() ? "this IP" : options_.egress_ip;
  if (now >= refusal_window_end_) {
    first_refusal_ = now;
  } else if (sent > first_refusal_) {
    common::Log(common::LogLevel::kError, "lane",
                absl::StrCat("BUG: ", rules_.name(), " refused again (HTTP ", r.reply.status, ") on ", ip,
                             " a request sent after its first refusal in this window, which should have held "
                             "every request until the window ended"));
  } else {
    common::Log(common::LogLevel::kWarning, "lane",
                absl::StrCat(rules_.name(), " refused (HTTP ", r.reply.status, ") on ", ip,
                             " a request already in flight at its first refusal in this window"));
  }
  refusal_window_end_ = std::max(refusal_window_end_, window_end);
}

LaneResult ExchangeLane::Execute(const LaneRequest& request) {
  LaneResult r;
  std::optional<Admission> a = Admit(request, /*own=*/false, &r);
  if (!a) return r;
  absl::StatusOr<common::HttpReply> reply = Send(*a, request, &r);
  Settle(*a, std::move(reply), /*own=*/false, &r);
  return r;
}

void ExchangeLane::SetLeases(const std::vector<LeasedPool>& leases, absl::Time expires) {
  absl::MutexLock lock(&mu_);
  std::map<std::string, std::map<int, int64_t>> units;
  for (const LeasedPool& l : leases) {
    int pool = rules_.PoolIndex(l.pool);
    if (pool < 0 || rules_.pools()[pool].scope != common::Scope::kAccount) continue;
    units[l.account][pool] = l.units;
  }
  for (auto& [account, lease] : leases_) {
    if (!units.contains(account)) lease.expires = absl::InfinitePast();
  }
  for (const auto& [account, pools] : units) {
    Lease& lease = leases_[account];
    if (lease.book == nullptr) {
      lease.book = std::make_unique<common::BudgetBook>(rules_, book_.uncertainty(), common::Scope::kAccount);
    }
    lease.book->set_uncertainty(book_.uncertainty());
    for (size_t i = 0; i < rules_.pools().size(); ++i) {
      if (rules_.pools()[i].scope != common::Scope::kAccount) continue;
      auto u = pools.find(static_cast<int>(i));
      lease.book->SetCapacity(static_cast<int>(i), u == pools.end() ? 0 : u->second);
    }
    lease.expires = expires;
  }
}

std::vector<common::BudgetBook::PoolView> ExchangeLane::AccountUsage(const std::string& account) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(account);
  if (it == leases_.end()) return {};
  return it->second.book->Snapshot(ExchangeNow());
}

absl::Status ExchangeLane::ProbeClock() {
  const auto& rule = rules_.server_time();
  if (!rule) return absl::FailedPreconditionError(absl::StrCat(rules_.name(), " has no server-time endpoint"));
  LaneRequest req;
  req.method = rule->method == "ANY" ? "GET" : rule->method;
  req.path = rule->path;
  LaneResult r;
  std::optional<Admission> a = Admit(req, /*own=*/true, &r);
  if (!a) return absl::UnavailableError(absl::StrCat(rules_.name(), " clock probe: ", r.detail));
  absl::Time sent = clock_.Now();
  absl::StatusOr<common::HttpReply> reply = Send(*a, req, &r);
  absl::Time received = clock_.Now();
  absl::Status result;
  if (!reply.ok()) {
    result = absl::UnavailableError(absl::StrCat(rules_.name(), " clock probe: ", reply.status().message()));
  } else if (reply->status != 200) {
    result = absl::UnavailableError(absl::StrCat(rules_.name(), " clock probe: HTTP ", reply->status, " ",
                                                 reply->body.substr(0, 200)));
  } else if (absl::StatusOr<int64_t> server_ms = JsonPathInt(reply->body, rule->field); !server_ms.ok()) {
    result = absl::InvalidArgumentError(
        absl::StrCat(rules_.name(), " clock probe: ", server_ms.status().message()));
  } else {
    // The server stamped a time (to the millisecond, rounded down) somewhere
    // between our send and our receive.
    absl::Time server = absl::FromUnixMillis(*server_ms);
    absl::MutexLock lock(&mu_);
    offset_.AddBounds(server - received, server + absl::Milliseconds(1) - sent);
    UpdateUncertainty();
  }
  // Settled after the estimate, so the probe's own charge lands in the
  // windows the new estimate puts it in.
  Settle(*a, std::move(reply), /*own=*/true, &r);
  return result;
}

}  // namespace marketprism::node
