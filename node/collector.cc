#include "node/collector.h"

#include <algorithm>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/retry_after.h"
#include "node/feeds/binance_feed.h"

namespace marketprism::node {

namespace {

constexpr absl::Duration kBackoffFirst = absl::Milliseconds(100);
constexpr absl::Duration kBackoffMax = absl::Seconds(5);
constexpr absl::Duration kSnapshotRetry = absl::Seconds(1);
// A snapshot the exchange refused (HTTP 4xx) or sent unreadable is asked
// for again after 1 s, 2 s, 4 s... up to this: each ask spends weight.
constexpr absl::Duration kSnapshotRefusedMax = absl::Minutes(5);
// A book that resyncs by subscribing again waits this long for the
// subscription's snapshot before it subscribes once more.
constexpr absl::Duration kResubscribeWait = absl::Seconds(5);
// A URL carries streams up to this length (servers refuse longer request
// lines: libwebsockets' own limit is 4 KiB of headers); the rest are
// subscribed once open, at most kStreamsPerMessage in one message (Deribit
// takes 500 channels a call).
constexpr size_t kMaxUrlBytes = 2000;
constexpr size_t kStreamsPerMessage = 200;
// Diffs a book keeps while it waits for its snapshot: 30 s at the streams'
// 100 ms (a snapshot is taken within 10 s of being asked for, or refused).
// A book waiting minutes for weight would otherwise hold thousands (500
// such books held 760 MB).
constexpr size_t kBufferedDiffs = 300;
// ... and before it is asked for (waiting for the IP's weight), only the
// newest 3 s: the snapshot, taken later, supersedes the rest.
constexpr size_t kDiffsBeforeAsking = 30;

int64_t Micros(absl::Time t) { return absl::ToUnixMicros(t); }

}  // namespace

Collector::Collector(CollectorOptions options, common::Clock& clock, common::WsClient& ws, WsBaseFn ws_base,
                     SnapshotFetcher fetch, RecordSink sink, SpendFn spend)
    : options_(std::move(options)),
      clock_(clock),
      ws_(ws),
      ws_base_(std::move(ws_base)),
      fetch_(std::move(fetch)),
      sink_(std::move(sink)),
      spend_(std::move(spend)),
      guard_(std::make_shared<Guard>()),
      rng_(std::hash<std::string>()(options_.node_id)),
      timer_(clock, [this] { Tick(); }) {
  absl::MutexLock lock(&guard_->mu);
  guard_->self = this;
}

Collector::~Collector() { Stop(); }

void Collector::Start() { timer_.ArmIn(absl::ZeroDuration()); }

void Collector::Stop() {
  {
    absl::MutexLock lock(&guard_->mu);  // waits for a callback under way
    if (guard_->self == nullptr) return;
    guard_->self = nullptr;
  }
  timer_.Stop();
  absl::MutexLock lock(&mu_);
  for (auto& [key, c] : conns_) {
    if (c.ws) c.ws->Close();
    if (c.next && c.next->ws) c.next->ws->Close();
  }
  conns_.clear();
}

void Collector::SetUnits(const v1::Units& units) {
  absl::MutexLock lock(&mu_);
  std::map<std::string, Unit> next;
  std::map<ConnKey, std::set<std::string>> wanted;
  for (const v1::UnitAssignment& a : units.units()) {
    absl::StatusOr<common::Channel> channel = common::ParseChannel(a.channel());
    const Feed* feed = FeedFor(a.exchange(), options_.json_parser);
    absl::StatusOr<std::string> stream =
        !channel.ok() ? absl::StatusOr<std::string>(channel.status())
        : feed == nullptr ? absl::StatusOr<std::string>(absl::UnimplementedError(
                                absl::StrCat(a.exchange(), ": the collector does not stream this exchange yet")))
                          : feed->StreamName(*channel, a.symbol(), a.interval());
    if (!stream.ok()) {
      common::Log(common::LogLevel::kError, "collector",
                  absl::StrCat("unit ", a.key(), " not run: ", stream.status().message()));
      continue;
    }
    auto old = units_.find(a.key());
    Unit u;
    bool same_place = old != units_.end() && old->second.assignment.connection() == a.connection();
    if (same_place) u = std::move(old->second);
    u.assignment = a;
    u.feed = feed;
    u.channel = *channel;
    u.stream = *stream;
    if (u.channel == common::Channel::kBook && !u.book) {
      u.book = std::make_unique<common::BookSync>(feed->protocol(), kBufferedDiffs);
    }
    wanted[{a.exchange(), a.connection()}].insert(u.stream);
    next.emplace(a.key(), std::move(u));
  }
  std::vector<std::string> added, removed;
  for (const auto& [key, u] : next) {
    if (!units_.count(key)) added.push_back(key);
  }
  for (const auto& [key, u] : units_) {
    if (!next.count(key)) removed.push_back(key);
  }
  if (!added.empty() || !removed.empty()) {
    common::Log(common::LogLevel::kInfo, "collector",
                absl::StrCat(next.size(), " units", added.empty() ? "" : "; runs ", absl::StrJoin(added, ", "),
                             removed.empty() ? "" : "; stops ", absl::StrJoin(removed, ", ")));
  }
  units_ = std::move(next);
  by_stream_.clear();
  for (const auto& [key, u] : units_) by_stream_[{u.assignment.exchange(), u.stream}] = key;
  for (auto it = conns_.begin(); it != conns_.end();) {
    if (!wanted.count(it->first)) {
      if (it->second.ws) it->second.ws->Close();
      if (it->second.next && it->second.next->ws) it->second.next->ws->Close();
      it = conns_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [key, streams] : wanted) {
    Conn& c = conns_[key];
    c.wanted = std::move(streams);
    if (c.state == Conn::State::kOpen) SyncSubscriptions(key, c);
    if (c.next) {
      c.next->wanted = c.wanted;
      if (c.next->state == Conn::State::kOpen) SyncSubscriptions(key, *c.next);
    }
  }
  timer_.ArmIn(absl::ZeroDuration());
}

void Collector::Open(const ConnKey& key, Conn& c) {
  std::string base = ws_base_(key.first);
  if (base.empty()) {
    c.retry_at = clock_.SteadyNow() + kBackoffMax;
    common::Log(common::LogLevel::kError, "collector", absl::StrCat(key.first, ": no WebSocket URL known"));
    return;
  }
  const Feed* feed = FeedFor(key.first, options_.json_parser);
  std::vector<std::string> streams;  // in the URL
  if (feed->StreamsInUrl()) {
    size_t bytes = feed->Url(base, {}).size();
    for (const std::string& s : c.wanted) {
      if (!streams.empty() && bytes + s.size() + 1 > kMaxUrlBytes) break;  // subscribed once open
      bytes += s.size() + 1;
      streams.push_back(s);
    }
  }
  common::WsConnectSpec spec{
      feed->Url(base, feed->StreamsInUrl() ? streams : std::vector<std::string>(c.wanted.begin(), c.wanted.end())),
      options_.egress_ip};
  if (options_.ws_proxy) spec.proxy = options_.ws_proxy(key.first, spec.url);
  uint64_t generation = c.generation = ++generations_;
  std::weak_ptr<Guard> weak = guard_;
  auto call = [weak](auto fn) {
    if (std::shared_ptr<Guard> g = weak.lock()) {
      absl::MutexLock lock(&g->mu);
      if (g->self != nullptr) fn(g->self);
    }
  };
  common::WsCallbacks cb;
  cb.on_open = [call, key, generation] { call([&](Collector* self) { self->Opened(key, generation); }); };
  cb.on_text = [call, key, generation](std::string text) {
    call([&](Collector* self) { self->OnText(key, generation, text); });
  };
  cb.on_closed = [call, key, generation](int code, std::string reason) {
    call([&](Collector* self) { self->Closed(key, generation, code, reason); });
  };
  absl::StatusOr<std::shared_ptr<common::WsConnection>> ws = ws_.Connect(spec, std::move(cb));
  if (!ws.ok()) {
    // Said once: the same refusal comes at every retry (a proxy streams cannot use).
    std::string error(ws.status().message());
    if (error != c.last_error) {
      common::Log(common::LogLevel::kError, "collector",
                  absl::StrCat(key.first, " connection ", key.second, ": ", error, " (retrying every ",
                               absl::FormatDuration(kBackoffMax), ")"));
    }
    c.last_error = std::move(error);
    c.retry_at = clock_.SteadyNow() + kBackoffMax;
    return;
  }
  c.ws = *std::move(ws);
  c.state = Conn::State::kConnecting;
  c.subscribed = std::set<std::string>(streams.begin(), streams.end());  // the rest once open
  c.last_message = clock_.SteadyNow();
  c.last_heartbeat = clock_.SteadyNow();
  c.last_sent = absl::InfinitePast();
}

Collector::Conn* Collector::Find(const ConnKey& key, uint64_t generation, bool* successor) {
  auto it = conns_.find(key);
  if (it == conns_.end()) return nullptr;
  *successor = it->second.generation != generation;
  if (!*successor) return &it->second;
  return it->second.next && it->second.next->generation == generation ? it->second.next.get() : nullptr;
}

void Collector::Opened(const ConnKey& key, uint64_t generation) {
  absl::MutexLock lock(&mu_);
  bool successor = false;
  Conn* found = Find(key, generation, &successor);
  if (found == nullptr) return;
  Conn& c = *found;
  c.state = Conn::State::kOpen;
  c.last_message = clock_.SteadyNow();
  c.opened_at = clock_.SteadyNow();
  if (!successor) c.rotate_at = RotateAtLocked(key.first, c.opened_at);
  for (std::string& text : FeedFor(key.first, options_.json_parser)->OpenMessages(c.next_id++)) {
    SendLocked(key, c, std::move(text));
  }
  SyncSubscriptions(key, c);
}

void Collector::LostLocked(const ConnKey& key, Conn& c, const std::string& reason) {
  c.state = Conn::State::kClosed;
  c.ws.reset();
  c.subscribed.clear();
  c.held.clear();  // a new connection sends its own
  c.held_until = absl::InfinitePast();
  ++c.failures;
  absl::Duration backoff = std::min(kBackoffMax, kBackoffFirst * (1 << std::min(c.failures - 1, 6)));
  double jitter = std::uniform_real_distribution<double>(0.5, 1.5)(rng_);
  c.retry_at = clock_.SteadyNow() + backoff * jitter;
  for (auto& [unit_key, u] : units_) {
    if (u.assignment.exchange() != key.first || u.assignment.connection() != key.second) continue;
    if (u.book) u.book->OnStreamRestart(reason);
    u.unconfirmed.reset();
  }
}

void Collector::Closed(const ConnKey& key, uint64_t generation, int code, const std::string& reason) {
  absl::MutexLock lock(&mu_);
  bool successor = false;
  Conn* c = Find(key, generation, &successor);
  if (c == nullptr) return;
  Conn& primary = conns_.at(key);
  if (successor) {
    DropSuccessorLocked(key, primary, absl::StrCat("closed (", code, " ", reason, ")"));
    return;
  }
  if (primary.next) {
    PromoteLocked(key, primary, absl::StrCat("closed (", code, " ", reason, ") during its rotation"));
    return;
  }
  common::Log(common::LogLevel::kWarning, "collector",
              absl::StrCat(key.first, " connection ", key.second, " from ", options_.egress_ip, " closed (", code,
                           " ", reason, "): reopening"));
  LostLocked(key, primary, absl::StrCat("connection closed: ", reason));
}

absl::Duration Collector::RotationLead(absl::Duration lifetime) const {
  return std::min(options_.rotate_before, lifetime / 4);
}

absl::Time Collector::RotateAtLocked(const std::string& exchange, absl::Time opened) {
  auto lifetime = options_.max_lifetime.find(exchange);
  if (lifetime == options_.max_lifetime.end() || lifetime->second <= absl::ZeroDuration()) {
    return absl::InfiniteFuture();
  }
  // Up to half the lead earlier, at random: connections opened together do
  // not all open their successors at once (connection attempts per IP).
  double jitter = std::uniform_real_distribution<double>(1.0, 1.5)(rng_);
  return opened + lifetime->second - RotationLead(lifetime->second) * jitter;
}

void Collector::DropSuccessorLocked(const ConnKey& key, Conn& c, const std::string& why) {
  // The units already moved to it lost what the primary brought meanwhile
  // (it was not read for them): they resume from the primary as after a
  // reconnect (a book resyncs and reports its gap; trades report theirs).
  std::vector<std::string> moved;
  for (auto& [unit_key, u] : units_) {
    if (!c.next->met.count(unit_key)) continue;
    moved.push_back(unit_key);
    if (u.book) u.book->OnStreamRestart(absl::StrCat("the rotation's successor connection ", why));
    u.unconfirmed.reset();
  }
  common::Log(common::LogLevel::kWarning, "collector",
              absl::StrCat(key.first, " connection ", key.second, ": its rotation's successor ", why,
                           "; trying again", moved.empty() ? "" : absl::StrCat(" (", absl::StrJoin(moved, ", "),
                                                                               " back on the primary)")));
  if (c.next->ws) c.next->ws->Close();
  c.next.reset();
  c.rotate_at = clock_.SteadyNow() + kBackoffMax;
}

void Collector::Rotate(const ConnKey& key, Conn& c) {
  absl::Time now = clock_.SteadyNow();
  if (!c.next) {
    if (c.state != Conn::State::kOpen || now < c.rotate_at || c.wanted.empty()) return;
    absl::Duration lifetime = options_.max_lifetime.at(key.first);  // rotate_at was set from it
    absl::Duration lead = RotationLead(lifetime);
    common::Log(common::LogLevel::kInfo, "collector",
                absl::StrCat(key.first, " connection ", key.second, " is ", absl::FormatDuration(now - c.opened_at),
                             " old: rotating it before the exchange's cut at ", absl::FormatDuration(lifetime)));
    c.next = std::make_unique<Conn>();
    c.next->wanted = c.wanted;
    c.next->promote_by = now + lead / 2;
    Open(key, *c.next);
    if (c.next->state == Conn::State::kClosed) {  // could not even start
      c.next.reset();
      c.rotate_at = now + kBackoffMax;
    }
    return;
  }
  Conn& n = *c.next;
  if (n.state != Conn::State::kOpen) {
    if (now >= n.promote_by) DropSuccessorLocked(key, c, "did not open in time");
    return;
  }
  if (now - n.last_message > options_.silence) {
    DropSuccessorLocked(key, c, absl::StrCat("went silent for ", absl::FormatDuration(now - n.last_message)));
    return;
  }
  bool all_met = true;
  for (const auto& [unit_key, u] : units_) {
    if (u.assignment.exchange() == key.first && u.assignment.connection() == key.second && !n.met.count(unit_key)) {
      all_met = false;
      break;
    }
  }
  if (all_met) {
    PromoteLocked(key, c, "every unit moved to its successor");
  } else if (now >= n.promote_by) {
    PromoteLocked(key, c, "its successor takes over at the deadline");
  }
}

void Collector::PromoteLocked(const ConnKey& key, Conn& c, const std::string& why) {
  std::unique_ptr<Conn> next = std::move(c.next);
  std::vector<std::string> unmet;
  for (auto& [unit_key, u] : units_) {
    if (u.assignment.exchange() != key.first || u.assignment.connection() != key.second) continue;
    if (next->met.count(unit_key)) continue;
    unmet.push_back(unit_key);
    if (u.book) u.book->OnStreamRestart(absl::StrCat("connection rotated before its stream met the successor's"));
    u.unconfirmed.reset();
  }
  common::Log(unmet.empty() ? common::LogLevel::kInfo : common::LogLevel::kWarning, "collector",
              absl::StrCat(key.first, " connection ", key.second, " rotated: ", why,
                           unmet.empty() ? "" : absl::StrCat("; not met: ", absl::StrJoin(unmet, ", "))));
  if (c.ws) c.ws->Close();  // its close, of an old generation, is not news
  next->met.clear();
  next->promote_by = absl::InfiniteFuture();
  c = std::move(*next);
  if (c.state == Conn::State::kOpen) c.rotate_at = RotateAtLocked(key.first, c.opened_at);  // else once open
}

bool Collector::Meets(const Unit& u, const FeedEvent& e) {
  switch (e.kind) {
    case FeedEvent::Kind::kTrade:
      return u.last_trade_id == 0 || e.trade_id <= u.last_trade_id + 1;
    case FeedEvent::Kind::kRecord:
      return u.last_sequence == 0 || e.sequence <= u.last_sequence;
    case FeedEvent::Kind::kDiff: {
      if (!u.book || !u.book->live()) return true;  // resyncing anyway
      int64_t last = u.book->last_update_id();
      if (e.diff.last <= last) return true;  // a repeat: the primary brought it
      // The very next: chained by the previous id where the exchange sends
      // one (USD-M, OKX, Deribit), else by the first (Binance spot).
      return e.diff.prev >= 0 ? e.diff.prev == last : e.diff.first == last + 1;
    }
    case FeedEvent::Kind::kSnapshot:
      return !u.book || !u.book->live();
    default:
      return true;
  }
}

void Collector::SendLocked(const ConnKey& key, Conn& c, std::string text) {
  if (!c.ws) return;
  if (!c.held.empty()) {
    c.held.push_back(std::move(text));  // in order, behind what waits
    return;
  }
  c.held.push_back(std::move(text));
  SendHeld(key, c);
}

void Collector::SendHeld(const ConnKey& key, Conn& c) {
  absl::Time now = clock_.SteadyNow();
  const Feed* feed = FeedFor(key.first, options_.json_parser);
  while (!c.held.empty() && c.ws && now >= c.held_until) {
    std::optional<std::string> path = spend_ ? feed->ChargedPath(c.held.front()) : std::nullopt;
    if (path) {
      absl::StatusOr<absl::Duration> wait = spend_(key.first, *path);
      if (!wait.ok()) {
        common::Log(common::LogLevel::kWarning, "collector",
                    absl::StrCat(key.first, ": sent unpriced: ", wait.status().message()));
      } else if (*wait > absl::ZeroDuration()) {
        // The IP's budget has no room for it yet: hold it (and what follows).
        c.held_until = now + *wait;
        return;
      }
    }
    c.ws->Send(c.held.front());
    c.held.pop_front();
  }
}

void Collector::SyncSubscriptions(const ConnKey& key, Conn& c) {
  absl::Time now = clock_.SteadyNow();
  if (c.state != Conn::State::kOpen || !c.ws || now - c.last_sent < options_.subscribe_gap) return;
  std::vector<std::string> add, drop;
  for (const std::string& s : c.wanted) {
    if (!c.subscribed.count(s)) add.push_back(s);
  }
  for (const std::string& s : c.subscribed) {
    if (!c.wanted.count(s)) drop.push_back(s);
  }
  // One message per gap: subscriptions first (new units wait), then the rest.
  std::vector<std::string>& batch = add.empty() ? drop : add;
  if (batch.empty()) return;
  if (batch.size() > kStreamsPerMessage) batch.resize(kStreamsPerMessage);
  common::Log(common::LogLevel::kInfo, "collector",
              absl::StrCat(add.empty() ? "unsubscribing " : "subscribing ", absl::StrJoin(batch, ", ")));
  const Feed* feed = FeedFor(key.first, options_.json_parser);
  SendLocked(key, c, feed->SubscribeMessage(batch, !add.empty(), c.next_id++));
  c.last_sent = now;
  for (const std::string& s : batch) {
    if (add.empty()) {
      c.subscribed.erase(s);
      continue;
    }
    c.subscribed.insert(s);
    if (!feed->SnapshotOnSubscribe()) continue;
    // Its snapshot is on the way: no resubscription for it before then.
    auto unit = by_stream_.find({key.first, s});
    if (unit != by_stream_.end()) units_.at(unit->second).fetch_after = now + kResubscribeWait;
  }
}

v1::MarketEvent Collector::Event(const Unit& u, int64_t exchange_time_us, absl::Time now) {
  v1::MarketEvent e;
  e.set_exchange(u.assignment.exchange());
  e.set_symbol(u.assignment.symbol());
  e.set_channel(u.assignment.channel());
  e.set_exchange_time_us(exchange_time_us);
  e.set_received_time_us(Micros(now));
  e.set_node_id(options_.node_id);
  return e;
}

void Collector::EmitBook(Unit& u, std::vector<common::BookRecord> records, int64_t exchange_time_us,
                         absl::Time now, std::vector<v1::MarketEvent>& out) {
  for (common::BookRecord& r : records) {
    v1::MarketEvent e = Event(u, exchange_time_us, now);
    if (r.kind == common::BookRecord::Kind::kGap) {
      ++u.gaps;
      e.set_key(absl::StrCat(u.assignment.key(), "/gap/", r.gap.after_update_id(), "-", r.gap.resumed_update_id()));
      *e.mutable_gap() = std::move(r.gap);
    } else {
      const char* kind = r.kind == common::BookRecord::Kind::kSnapshot ? "/snapshot/" : "/";
      e.set_key(absl::StrCat(u.assignment.key(), kind, r.update.first_update_id(), "-", r.update.last_update_id()));
      *e.mutable_book() = std::move(r.update);
    }
    u.last_record = now;
    out.push_back(std::move(e));
  }
}

void Collector::OnText(const ConnKey& key, uint64_t generation, const std::string& text) {
  absl::MutexLock lock(&mu_);
  bool successor = false;
  Conn* c = Find(key, generation, &successor);
  if (c == nullptr) return;
  c->last_message = clock_.SteadyNow();
  c->failures = 0;
  Conn* rotation = conns_.at(key).next.get();  // a successor under way, or nullptr
  std::vector<FeedEvent>& events = events_;
  events.clear();
  if (absl::Status s = FeedFor(key.first, options_.json_parser)->Parse(text, events); !s.ok()) {
    // What the message held whole still counts; the hole a bad item leaves
    // is a gap where the sequence says so.
    common::Log(common::LogLevel::kWarning, "collector", absl::StrCat(key.first, ": ", s.message()));
    if (events.empty()) return;
  }
  absl::Time now = clock_.Now();  // the received time of every record the message makes
  std::vector<v1::MarketEvent> out;
  for (FeedEvent& e : events) {
    if (e.kind == FeedEvent::Kind::kAnswer) {
      SendLocked(key, *c, std::move(e.answer));
      continue;
    }
    if (e.kind == FeedEvent::Kind::kReply) {
      if (!e.error.empty()) {
        common::Log(common::LogLevel::kError, "collector",
                    absl::StrCat(key.first, " refused a subscription: ", e.error));
      }
      continue;
    }
    auto unit_key =
        by_stream_.find(std::pair<absl::string_view, absl::string_view>(key.first, e.stream));
    if (unit_key == by_stream_.end()) continue;  // an unsubscribed stream's last messages
    Unit& u = units_.at(unit_key->second);
    if (rotation != nullptr) {
      // Each unit reads one of the two: the primary until the sequences meet.
      bool moved = rotation->met.count(unit_key->second) > 0;
      if (!successor && moved) continue;
      if (successor && !moved) {
        if (!Meets(u, e)) continue;  // ahead of the primary, which brings this one too
        rotation->met.insert(unit_key->second);
      }
      // A book update the primary brought already is a repeat, not a break.
      if (successor && e.kind == FeedEvent::Kind::kDiff && u.book && u.book->live() &&
          e.diff.last <= u.book->last_update_id()) {
        continue;
      }
    }
    OnEvent(u, e, now, out);
  }
  if (!out.empty()) sink_(std::move(out));
}

void Collector::OnEvent(Unit& u, FeedEvent& e, absl::Time now, std::vector<v1::MarketEvent>& out) {
  ++u.messages;
  if (e.kind == FeedEvent::Kind::kTrade) {
    if (u.last_trade_id != 0 && e.trade_id > u.last_trade_id + 1) {
      v1::MarketEvent g = Event(u, e.event_ms * 1000, now);
      g.mutable_gap()->set_after_update_id(u.last_trade_id);
      g.mutable_gap()->set_resumed_update_id(e.trade_id);
      g.mutable_gap()->set_reason(absl::StrCat("trade ids ", u.last_trade_id + 1, "..", e.trade_id - 1, " missed"));
      g.set_key(absl::StrCat(u.assignment.key(), "/gap/", u.last_trade_id, "-", e.trade_id));
      ++u.gaps;
      out.push_back(std::move(g));
    }
    if (e.trade_id > u.last_trade_id) {
      u.last_trade_id = e.trade_id;
      v1::MarketEvent r = Event(u, e.event_ms * 1000, now);
      r.set_key(absl::StrCat(u.assignment.key(), "/", e.trade_id));
      v1::Trade* t = r.mutable_trade();
      t->set_trade_id(e.trade_id_text.empty() ? absl::StrCat(e.trade_id) : std::move(e.trade_id_text));
      t->set_sequence(e.trade_id);
      t->set_price(std::move(e.price));
      t->set_quantity(std::move(e.quantity));
      t->set_side(e.taker_sold ? v1::SIDE_SELL : v1::SIDE_BUY);
      u.last_record = now;
      out.push_back(std::move(r));
    }
    return;
  }
  if (e.kind == FeedEvent::Kind::kRecord) {
    // An older record than the last (a reconnect's replay) or the same again
    // is not news.
    if (e.sequence < u.last_sequence || (e.sequence == u.last_sequence && e.record_key == u.last_record_key)) return;
    if (u.unconfirmed && e.sequence > u.last_sequence) {
      // A later candle began: the last update of the one before was final.
      v1::MarketEvent& closed = *u.unconfirmed;
      closed.mutable_kline()->set_closed(true);
      closed.set_key(absl::StrCat(u.assignment.key(), "/", u.last_sequence, "/closed"));
      out.push_back(*std::move(u.unconfirmed));
      u.unconfirmed.reset();
    }
    u.last_sequence = e.sequence;
    u.last_record_key = e.record_key;
    v1::MarketEvent r = Event(u, e.event_ms * 1000, now);
    r.MergeFrom(e.record);
    r.set_key(absl::StrCat(u.assignment.key(), "/", e.record_key));
    u.last_record = now;
    if (e.final_when_superseded) u.unconfirmed = r;
    out.push_back(std::move(r));
    return;
  }
  if (!u.book) return;
  if (e.kind == FeedEvent::Kind::kSnapshot) {
    u.fetch_after = absl::InfinitePast();  // the snapshot awaited came
    EmitBook(u, u.book->OnSnapshot(std::move(e.snapshot)), e.event_ms * 1000, now, out);
  } else {
    EmitBook(u, u.book->OnDiff(std::move(e.diff)), e.event_ms * 1000, now, out);
  }
  if (u.book->wants_snapshot()) {
    if (!u.fetching) u.book->KeepNewest(kDiffsBeforeAsking);  // waiting its turn for weight
    FetchSnapshotLocked(u.assignment.key(), u, clock_.SteadyNow());  // this one: not every unit per message
  }
}

void Collector::FetchSnapshots() {
  absl::Time now = clock_.SteadyNow();
  auto next = units_.upper_bound(last_asked_);
  for (auto it = next; it != units_.end(); ++it) FetchSnapshotLocked(it->first, it->second, now);
  for (auto it = units_.begin(); it != next; ++it) FetchSnapshotLocked(it->first, it->second, now);
}

void Collector::FetchSnapshotLocked(const std::string& key, Unit& u, absl::Time now) {
  if (!u.book || !u.book->wants_snapshot() || u.fetching || now < u.fetch_after) return;
  auto conn = conns_.find({u.assignment.exchange(), u.assignment.connection()});
  if (conn == conns_.end() || conn->second.state != Conn::State::kOpen) return;  // diffs must be buffering
  if (u.feed->SnapshotOnSubscribe()) {
    // Unsubscribe now; SyncSubscriptions subscribes again, and the new
    // subscription's first message is the snapshot.
    Conn& c = conn->second;
    if (!c.subscribed.count(u.stream) || !c.ws) return;  // its subscription (and snapshot) is still to come
    common::Log(common::LogLevel::kInfo, "collector", absl::StrCat(key, ": subscribing again for a snapshot"));
    SendLocked(conn->first, c, u.feed->SubscribeMessage({u.stream}, /*subscribe=*/false, c.next_id++));
    c.subscribed.erase(u.stream);
    u.fetch_after = now + kResubscribeWait;
    return;
  }
  int& asked = snapshots_asked_[u.assignment.exchange()];
  if (asked >= options_.snapshots_in_flight) return;  // its turn comes
  ++asked;
  u.fetching = true;
  last_asked_ = key;
  common::Log(common::LogLevel::kInfo, "collector", absl::StrCat(key, ": fetching a snapshot"));
  std::weak_ptr<Guard> weak = guard_;
  std::string unit = key;
  std::string exchange = u.assignment.exchange();
  fetch_(exchange, u.feed->SnapshotPath(), u.feed->SnapshotQuery(u.assignment.symbol(), u.assignment.depth()),
         [weak, exchange, unit](absl::StatusOr<std::string> body) {
           if (std::shared_ptr<Guard> g = weak.lock()) {
             absl::MutexLock lock(&g->mu);
             if (g->self != nullptr) g->self->OnSnapshot(exchange, unit, std::move(body));
           }
         });
}

void Collector::OnSnapshot(const std::string& exchange, const std::string& unit, absl::StatusOr<std::string> body) {
  absl::MutexLock lock(&mu_);
  --snapshots_asked_[exchange];
  auto it = units_.find(unit);
  if (it == units_.end() || !it->second.book || !it->second.fetching) {
    FetchSnapshots();  // the next book's turn
    return;
  }
  Unit& u = it->second;
  u.fetching = false;
  absl::StatusOr<common::BookSnapshot> snap =
      body.ok() ? u.feed->ParseSnapshot(*body) : absl::StatusOr<common::BookSnapshot>(body.status());
  if (!snap.ok()) {
    // When the coordinator says when the budget has room, then; a queue of
    // books waiting for weight is not a failure worth a warning each. What
    // the exchange refused or garbled waits longer each time.
    std::optional<absl::Duration> retry = common::RetryAfterOf(snap.status());
    absl::StatusCode code = snap.status().code();
    bool transient = code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kResourceExhausted ||
                     code == absl::StatusCode::kDeadlineExceeded || code == absl::StatusCode::kAborted;
    absl::Duration wait = kSnapshotRetry;
    if (transient) {
      u.snapshot_refusals = 0;
    } else {
      wait = std::min(kSnapshotRefusedMax, kSnapshotRetry * (int64_t{1} << std::min(u.snapshot_refusals, 20)));
      ++u.snapshot_refusals;
    }
    u.fetch_after = clock_.SteadyNow() + std::max(wait, retry.value_or(absl::ZeroDuration()));
    common::Log(retry ? common::LogLevel::kInfo : common::LogLevel::kWarning, "collector",
                absl::StrCat(unit, ": snapshot failed, retrying in ",
                             absl::FormatDuration(u.fetch_after - clock_.SteadyNow()), ": ", snap.status().message()));
    FetchSnapshots();
    return;
  }
  u.snapshot_refusals = 0;
  std::vector<v1::MarketEvent> out;
  bool was_live = u.book->live();
  int64_t id = snap->update_id;
  absl::Time now = clock_.Now();
  EmitBook(u, u.book->OnSnapshot(*std::move(snap)), Micros(now), now, out);
  if (!was_live && u.book->live()) {
    common::Log(common::LogLevel::kInfo, "collector", absl::StrCat(unit, ": in sync from snapshot ", id));
  }
  if (u.book->wants_snapshot()) {
    common::Log(common::LogLevel::kInfo, "collector",
                absl::StrCat(unit, ": snapshot ", id, " is older than the stream; fetching another"));
    u.fetch_after = clock_.SteadyNow() + absl::Milliseconds(200);
  }
  if (!out.empty()) sink_(std::move(out));
  FetchSnapshots();  // the next book's turn
}

void Collector::Tick() {
  {
    absl::MutexLock lock(&mu_);
    absl::Time now = clock_.SteadyNow();
    for (auto& [key, c] : conns_) {
      if (c.state == Conn::State::kClosed && !c.wanted.empty() && now >= c.retry_at) {
        Open(key, c);
      } else if (c.state != Conn::State::kClosed && now - c.last_message > options_.silence) {
        if (c.next) {
          PromoteLocked(key, c, "silent during its rotation");
          continue;
        }
        common::Log(common::LogLevel::kWarning, "collector",
                    absl::StrCat(key.first, " connection ", key.second, " silent for ",
                                 absl::FormatDuration(now - c.last_message), ": reopening"));
        if (c.ws) c.ws->Close();
        c.generation = ++generations_;  // its close is not news
        LostLocked(key, c, "stream went silent");
      } else if (c.state == Conn::State::kOpen) {
        SendHeld(key, c);
        SyncSubscriptions(key, c);
        const Feed* feed = FeedFor(key.first, options_.json_parser);
        std::optional<std::string> beat = feed->Heartbeat();
        if (beat && c.ws && now - std::max(c.last_message, c.last_heartbeat) >= feed->heartbeat_every()) {
          SendLocked(key, c, *beat);
          c.last_heartbeat = now;
        }
        if (c.next && c.next->state == Conn::State::kOpen) {
          SendHeld(key, *c.next);
          SyncSubscriptions(key, *c.next);
          if (beat && c.next->ws && now - std::max(c.next->last_message, c.next->last_heartbeat) >= feed->heartbeat_every()) {
            SendLocked(key, *c.next, *beat);  // the same text on the successor
            c.next->last_heartbeat = now;
          }
        }
        Rotate(key, c);
      }
    }
    FetchSnapshots();
  }
  timer_.ArmIn(options_.tick);
}

std::vector<Collector::UnitStatus> Collector::Status() {
  absl::MutexLock lock(&mu_);
  std::vector<UnitStatus> out;
  for (const auto& [key, u] : units_) {
    UnitStatus s;
    s.key = key;
    auto conn = conns_.find({u.assignment.exchange(), u.assignment.connection()});
    bool open = conn != conns_.end() && conn->second.state == Conn::State::kOpen;
    s.state = !open ? "connecting" : (u.book && !u.book->live()) ? "syncing" : "live";
    s.messages = u.messages;
    s.gaps = u.gaps;
    s.last_record = u.last_record;
    out.push_back(s);
  }
  return out;
}

}  // namespace marketprism::node
