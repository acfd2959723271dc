#include "coordinator/collection.h"

#include <sys/stat.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"

namespace marketprism::coordinator {

namespace {

constexpr absl::Duration kTick = absl::Milliseconds(100);

absl::Status NotLeading() {
  return absl::UnavailableError("this coordinator does not lead (the leader changed); retry: any coordinator answers");
}

int64_t MtimeOf(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return -1;
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

}  // namespace

Collection::Collection(CollectionOptions options, common::Clock& clock, const common::RulesBook& rules,
                       Scheduler& scheduler, SendUnits send, Execute execute,
                       std::function<Leadership()> leadership, std::function<int64_t()> term, SyncJobs sync)
    : options_(std::move(options)),
      clock_(clock),
      rules_(rules),
      scheduler_(scheduler),
      send_(std::move(send)),
      execute_(std::move(execute)),
      leadership_(std::move(leadership)),
      term_(std::move(term)),
      sync_(std::move(sync)),
      life_(std::make_shared<Life>()),
      timer_(clock, [this] { Tick(); }) {
  absl::MutexLock lock(&life_->mu);
  life_->self = this;
}

Collection::~Collection() { Stop(); }

absl::Status Collection::Start() {
  {
    absl::MutexLock lock(&mu_);
    if (!options_.jobs_file.empty()) {
      absl::StatusOr<std::vector<v1::Job>> jobs = common::LoadJobsFile(options_.jobs_file, rules_);
      if (!jobs.ok()) return jobs.status();
      file_mtime_ = MtimeOf(options_.jobs_file);
      for (v1::Job& j : *jobs) file_jobs_[j.name()] = std::move(j);
      common::Log(common::LogLevel::kInfo, "collection",
                  absl::StrCat(options_.jobs_file, ": ", file_jobs_.size(), " jobs"));
    }
    Rebuild();
  }
  timer_.ArmIn(absl::ZeroDuration());
  return absl::OkStatus();
}

void Collection::Stop() {
  timer_.Stop();
  {
    absl::MutexLock lock(&life_->mu);
    life_->self = nullptr;
  }
  Calls calls;
  {
    absl::MutexLock lock(&mu_);
    AbandonLocked(absl::UnavailableError("the coordinator is stopping"), calls);
  }
  for (auto& c : calls) c();
}

void Collection::ReloadFile() {
  if (options_.jobs_file.empty()) return;
  int64_t mtime = MtimeOf(options_.jobs_file);
  if (mtime == file_mtime_) return;
  file_mtime_ = mtime;
  absl::StatusOr<std::vector<v1::Job>> jobs = common::LoadJobsFile(options_.jobs_file, rules_);
  if (!jobs.ok()) {
    common::Log(common::LogLevel::kError, "collection",
                absl::StrCat("the jobs file changed but is not taken (the jobs in force stay): ",
                             jobs.status().message()));
    return;
  }
  std::map<std::string, v1::Job> next;
  for (v1::Job& j : *jobs) {
    if (api_jobs_.count(j.name())) {
      common::Log(common::LogLevel::kError, "collection",
                  absl::StrCat(options_.jobs_file, ": job \"", j.name(), "\" is also an API job: the file's is ignored"));
      continue;
    }
    next[j.name()] = std::move(j);
  }
  file_jobs_ = std::move(next);
  common::Log(common::LogLevel::kInfo, "collection",
              absl::StrCat(options_.jobs_file, " reloaded: ", file_jobs_.size(), " jobs"));
  Rebuild();
}

void Collection::Rebuild() {
  units_.clear();
  std::map<std::string, Poll> polls;
  absl::Time now = clock_.Now();
  for (const auto* jobs : {&file_jobs_, &api_jobs_}) {
    for (const auto& [name, job] : *jobs) {
      for (common::UnitSpec& u : common::SplitIntoUnits(job)) {
        if (common::IsStream(u.channel)) {
          units_.push_back(std::move(u));
          continue;
        }
        auto old = polls_.find(u.key);
        Poll p;
        if (old != polls_.end() && old->second.unit == u) {
          p = old->second;
        } else {
          // The first slot: the next multiple of the period.
          int64_t every = std::max<int64_t>(1, absl::ToInt64Microseconds(u.every));
          p.next_slot = absl::FromUnixMicros((absl::ToUnixMicros(now) / every + 1) * every);
        }
        p.unit = u;
        p.job = job;
        polls.emplace(u.key, std::move(p));
      }
    }
  }
  polls_ = std::move(polls);
  replan_now_ = true;
}

void Collection::CreateJob(v1::Job job, JobDone done) {
  job.clear_units();
  if (absl::Status s = common::ValidateJob(rules_, job); !s.ok()) return done(s);
  Calls calls;
  {
    absl::MutexLock lock(&mu_);
    if (!leadership_().leading) {
      calls.push_back([done] { done(NotLeading()); });
    } else if (file_jobs_.count(job.name()) || api_jobs_.count(job.name())) {
      calls.push_back([done, name = job.name()] {
        done(absl::AlreadyExistsError(absl::StrCat("job \"", name, "\" exists")));
      });
    } else {
      api_jobs_[job.name()] = job;
      Rebuild();
      common::Log(common::LogLevel::kInfo, "collection", absl::StrCat("job \"", job.name(), "\" created"));
      ChangedLocked(
          [done, job](absl::Status s) {
            if (s.ok()) return done(job);
            done(s);
          },
          calls);
    }
  }
  for (auto& c : calls) c();
}

void Collection::DeleteJob(const std::string& name, Done done) {
  Calls calls;
  {
    absl::MutexLock lock(&mu_);
    if (!leadership_().leading) {
      calls.push_back([done] { done(NotLeading()); });
    } else if (file_jobs_.count(name)) {
      calls.push_back([done, why = absl::StrCat("job \"", name, "\" comes from ", options_.jobs_file,
                                                ": remove it there")] { done(absl::FailedPreconditionError(why)); });
    } else if (api_jobs_.erase(name) == 0) {
      calls.push_back([done, name] { done(absl::NotFoundError(absl::StrCat("no job \"", name, "\""))); });
    } else {
      Rebuild();
      common::Log(common::LogLevel::kInfo, "collection", absl::StrCat("job \"", name, "\" deleted"));
      ChangedLocked(done, calls);
    }
  }
  for (auto& c : calls) c();
}

v1::JobsVersion Collection::VersionLocked() {
  v1::JobsVersion v;
  v.set_term(term_());
  v.set_seq(jobs_seq_);
  return v;
}

v1::SyncJobsResponse Collection::SyncResponseLocked() {
  v1::SyncJobsResponse r;
  *r.mutable_version() = VersionLocked();
  for (const auto& [name, job] : api_jobs_) *r.add_jobs() = job;
  return r;
}

void Collection::ChangedLocked(Done done, Calls& calls) {
  ++jobs_seq_;
  v1::SyncJobsResponse r = SyncResponseLocked();
  for (HeldSync& h : held_syncs_) calls.push_back([d = std::move(h.done), r] { d(r); });
  held_syncs_.clear();
  writes_.push_back(Write{term_(), jobs_seq_, clock_.Now() + options_.replicate_wait, std::move(done)});
  SettleLocked(absl::InfinitePast(), calls);
}

void Collection::SettleLocked(absl::Time now, Calls& calls) {
  absl::Time t = clock_.Now();
  std::erase_if(followers_, [&](const auto& f) { return t - f.second.seen > options_.follower_timeout; });
  std::vector<Write> waiting;
  for (Write& w : writes_) {
    std::vector<std::string> lacking;
    for (const auto& [name, f] : followers_) {
      if (f.held.term() != w.term || f.held.seq() < w.seq) lacking.push_back(name);
    }
    if (!lacking.empty() && now < w.until) {
      waiting.push_back(std::move(w));
      continue;
    }
    if (!lacking.empty()) {
      common::Log(common::LogLevel::kWarning, "collection",
                  absl::StrCat("a job change (term ", w.term, ", change ", w.seq, ") is not yet held by ",
                               absl::StrJoin(lacking, ", "), " after ", absl::FormatDuration(options_.replicate_wait),
                               ": answered anyway (it is in force here; they catch up when they ask again)"));
    }
    calls.push_back([d = std::move(w.done)] { d(absl::OkStatus()); });
  }
  writes_ = std::move(waiting);
  if (now == absl::InfinitePast()) return;
  std::vector<HeldSync> held;
  for (HeldSync& h : held_syncs_) {
    if (now < h.until) {
      held.push_back(std::move(h));
      continue;
    }
    calls.push_back([d = std::move(h.done), r = SyncResponseLocked()] { d(r); });
  }
  held_syncs_ = std::move(held);
}

void Collection::AbandonLocked(const absl::Status& why, Calls& calls) {
  for (HeldSync& h : held_syncs_) calls.push_back([d = std::move(h.done), why] { d(why); });
  for (Write& w : writes_) {
    calls.push_back([d = std::move(w.done), why] {
      d(absl::Status(why.code(), absl::StrCat(why.message(),
                                              " before every follower held the change: see ListJobs, and retry")));
    });
  }
  held_syncs_.clear();
  writes_.clear();
  followers_.clear();
}

void Collection::ServeSync(const v1::SyncJobsRequest& req, SyncDone done) {
  Calls calls;
  {
    absl::MutexLock lock(&mu_);
    if (!leadership_().leading) {
      calls.push_back([done] { done(NotLeading()); });
    } else {
      absl::Time now = clock_.Now();
      followers_[req.follower()] = Follower{req.held(), now};
      SettleLocked(absl::InfinitePast(), calls);
      v1::JobsVersion v = VersionLocked();
      if (req.held().term() != v.term() || req.held().seq() != v.seq()) {
        calls.push_back([done, r = SyncResponseLocked()] { done(r); });
      } else {
        absl::Duration wait = std::clamp(absl::Milliseconds(req.wait_ms()), absl::ZeroDuration(), options_.sync_hold);
        held_syncs_.push_back(HeldSync{now + wait, std::move(done)});
      }
    }
  }
  for (auto& c : calls) c();
}

void Collection::Synced(absl::StatusOr<v1::SyncJobsResponse> r) {
  {
    absl::MutexLock lock(&mu_);
    sync_in_flight_ = false;
    if (!r.ok()) {
      sync_retry_at_ = clock_.Now() + options_.sync_retry;
      common::Log(common::LogLevel::kDebug, "collection",
                  absl::StrCat("the leader's API jobs could not be read: ", r.status().message()));
      return;
    }
    if (r->version().term() != held_.term() || r->version().seq() != held_.seq()) {
      std::map<std::string, v1::Job> next;
      for (const v1::Job& j : r->jobs()) {
        if (file_jobs_.count(j.name())) {
          common::Log(common::LogLevel::kError, "collection",
                      absl::StrCat("the leader's API job \"", j.name(), "\" is also in ", options_.jobs_file,
                                   " here: the file's is kept"));
          continue;
        }
        next[j.name()] = j;
      }
      held_ = r->version();
      bool same = next.size() == api_jobs_.size() &&
                  std::equal(next.begin(), next.end(), api_jobs_.begin(), [](const auto& a, const auto& b) {
                    return a.first == b.first && a.second.SerializeAsString() == b.second.SerializeAsString();
                  });
      if (!same) {
        api_jobs_ = std::move(next);
        Rebuild();
        common::Log(common::LogLevel::kInfo, "collection",
                    absl::StrCat("holding the leader's ", api_jobs_.size(), " API jobs (term ", held_.term(),
                                 ", change ", held_.seq(), ")"));
      }
    }
  }
  timer_.ArmBy(clock_.SteadyNow());  // ask again at once: the asking says we hold it
}

void Collection::NodeRegistered(const std::string& node_id) {
  absl::MutexLock lock(&mu_);
  sent_.erase(node_id);
  replan_now_ = true;
}

void Collection::NodeGone() {
  absl::MutexLock lock(&mu_);
  replan_now_ = true;
}

void Collection::PlanLocked() {
  std::vector<PlacementNode> nodes;
  std::map<std::string, NodeState> states;
  for (const NodeSnapshot& n : scheduler_.Snapshot().nodes) {
    PlacementNode p;
    p.node_id = n.node_id;
    p.egress_ip = n.egress_ip;
    p.exchanges.insert(n.ready.begin(), n.ready.end());
    p.accepting = n.state == NodeState::kActive;
    states[n.node_id] = n.state;
    nodes.push_back(std::move(p));
  }
  int64_t term = term_();
  if (term != sent_term_) {
    sent_.clear();
    handovers_.clear();  // what another term began is not ours to finish
  }
  sent_term_ = term;
  PlacementPlan previous = std::move(plan_);
  plan_ = PlaceUnits(units_, nodes, rules_, previous);
  HandOverLocked(previous, states);
  std::map<std::string, v1::Units> per_node;
  for (const PlacementNode& n : nodes) per_node[n.node_id];  // an empty set stops what it ran
  auto assign = [&](const PlacedUnit& p, const CopyPlacement& c) {
    v1::UnitAssignment* a = per_node[c.node_id].add_units();
    a->set_key(p.unit.key);
    a->set_exchange(p.unit.exchange);
    a->set_channel(std::string(common::ChannelName(p.unit.channel)));
    a->set_symbol(p.unit.symbol);
    a->set_interval(p.unit.interval);
    a->set_depth(p.unit.depth);
    a->set_connection(c.connection);
  };
  for (const auto& [key, p] : plan_.units) {
    for (const CopyPlacement& c : p.copies) assign(p, c);
  }
  for (const auto& [at, h] : handovers_) assign(plan_.units.at(at.first), h.copy);
  for (auto& [node, units] : per_node) {
    units.set_term(term);
    units.set_coordinator_id(options_.coordinator_id);
    std::string bytes = units.SerializeAsString();
    auto sent = sent_.find(node);
    if (sent != sent_.end() && sent->second == bytes) continue;
    v1::CoordinatorMessage m;
    *m.mutable_units() = units;
    if (send_(node, m)) sent_[node] = std::move(bytes);
  }
}

void Collection::HandOverLocked(const PlacementPlan& previous, const std::map<std::string, NodeState>& states) {
  absl::Time now = clock_.Now();
  // Still reachable (active and rebalanced, draining, suspect): its streams
  // can bridge the move.
  auto bridging = [&](const std::string& node) {
    auto it = states.find(node);
    return it != states.end() && it->second != NodeState::kDisconnected;
  };
  auto placed_on = [](const PlacedUnit& p, const std::string& node) {
    return std::any_of(p.copies.begin(), p.copies.end(), [&](const CopyPlacement& c) { return c.node_id == node; });
  };
  for (const auto& [key, was] : previous.units) {
    auto now_placed = plan_.units.find(key);
    if (now_placed == plan_.units.end()) continue;  // the job went: its copies stop
    for (const CopyPlacement& c : was.copies) {
      if (!bridging(c.node_id) || placed_on(now_placed->second, c.node_id)) continue;
      if (handovers_.try_emplace({key, c.node_id}, Handover{c, now}).second) {
        common::Log(common::LogLevel::kInfo, "collection",
                    absl::StrCat(key, ": moved off ", NodeStateName(states.at(c.node_id)), " ", c.node_id,
                                 ", which keeps its copy until the replacing copies send records"));
      }
    }
  }
  for (auto it = handovers_.begin(); it != handovers_.end();) {
    const std::string& key = it->first.first;
    const std::string& node = it->first.second;
    auto unit = plan_.units.find(key);
    bool taken = unit != plan_.units.end() && !unit->second.copies.empty();
    for (size_t i = 0; taken && i < unit->second.copies.size(); ++i) {
      auto s = stats_.find({key, unit->second.copies[i].node_id});
      taken = s != stats_.end() && s->second.last >= it->second.since;
    }
    // Moot: the job went, the node can no longer run it, or runs it by the plan.
    auto state = states.find(node);
    bool moot = unit == plan_.units.end() || state == states.end() || state->second == NodeState::kDisconnected ||
                placed_on(unit->second, node);
    bool overdue = now - it->second.since >= options_.handover_timeout;
    if (!taken && !moot && !overdue) {
      ++it;
      continue;
    }
    if (taken || overdue) {
      common::Log(taken ? common::LogLevel::kInfo : common::LogLevel::kWarning, "collection",
                  absl::StrCat(key, ": ", node, taken ? " handed its copy over after " : " stops its copy untaken after ",
                               absl::FormatDuration(now - it->second.since)));
    }
    it = handovers_.erase(it);
  }
}

void Collection::Tick() {
  std::vector<std::pair<std::string, v1::ExecuteRequest>> due;
  std::vector<absl::Time> deadlines;
  std::vector<v1::RecordAs> records;
  Calls calls;
  std::optional<std::pair<std::string, v1::SyncJobsRequest>> sync;
  {
    absl::MutexLock lock(&mu_);
    ReloadFile();
    Leadership l = leadership_();
    absl::Time now = clock_.Now();
    if (l.leading) {
      SettleLocked(now, calls);
    } else {
      if (!writes_.empty() || !held_syncs_.empty()) AbandonLocked(NotLeading(), calls);
      if (sync_ && !l.leader_grpc.empty() && !sync_in_flight_ && now >= sync_retry_at_) {
        v1::SyncJobsRequest req;
        req.set_follower(options_.coordinator_id);
        *req.mutable_held() = held_;
        req.set_wait_ms(absl::ToInt64Milliseconds(options_.sync_hold));
        sync_in_flight_ = true;
        sync.emplace(l.leader_grpc, std::move(req));
      }
    }
    // The first plan waits for the fleet to gather (nodes register one by
    // one): placed on the first node alone, its units would move again as
    // the others come, each book asking for a second snapshot.
    bool settling = false;
    if (l.leading && !placed_once_) {
      if (!scheduler_.Snapshot().nodes.empty() && first_node_at_ == absl::InfiniteFuture()) first_node_at_ = now;
      settling = now - first_node_at_ < options_.placement_settle;
      placed_once_ = !settling;
    }
    if (!l.leading) {
      placed_once_ = false;  // a later term gathers its fleet again
      first_node_at_ = absl::InfiniteFuture();
    }
    // A handover is watched at every tick: its copy stops once replaced.
    if (l.leading && !settling &&
        (replan_now_ || !handovers_.empty() || now - last_plan_ >= options_.replan_every)) {
      PlanLocked();
      replan_now_ = false;
      last_plan_ = now;
    }
    if (l.leading) {
      for (auto& [key, p] : polls_) {
        if (p.in_flight || now < p.next_slot) continue;
        v1::ExecuteRequest req;
        req.set_exchange(p.unit.exchange);
        req.set_method("GET");
        req.set_path(p.job.path());
        req.set_priority(p.job.has_priority() ? p.job.priority() : options_.poll_priority);
        std::map<std::string, std::string> sorted(p.job.params().begin(), p.job.params().end());
        for (const auto& [k, v] : sorted) {
          v1::QueryParam* q = req.add_query();
          q->set_key(k);
          q->set_value(v);
        }
        p.in_flight = true;
        v1::RecordAs& as = records.emplace_back();
        as.set_channel("poll");
        as.set_slot_us(absl::ToUnixMicros(p.next_slot));
        as.set_key(absl::StrCat(key, "/", as.slot_us()));
        as.set_symbol(p.job.name());
        due.emplace_back(key, std::move(req));
        deadlines.push_back(p.next_slot + p.unit.every);
      }
    }
  }
  for (auto& c : calls) c();
  if (sync) {
    sync_(sync->first, sync->second, [life = life_](absl::StatusOr<v1::SyncJobsResponse> r) {
      absl::MutexLock lock(&life->mu);
      if (life->self != nullptr) life->self->Synced(std::move(r));
    });
  }
  hub_.Flush(clock_.Now());
  for (size_t i = 0; i < due.size(); ++i) {
    const std::string key = due[i].first;
    execute_(due[i].second, records[i], deadlines[i], [this, key, path = due[i].second.path()](
                                                         absl::StatusOr<v1::ExecuteResponse> r) {
      int64_t slot_us = 0;
      v1::MarketEvent e;
      {
        absl::MutexLock lock(&mu_);
        auto it = polls_.find(key);
        if (it == polls_.end()) return;
        Poll& p = it->second;
        p.in_flight = false;
        slot_us = absl::ToUnixMicros(p.next_slot);
        // The next slot after now: a poll that ran long skips, never bunches.
        int64_t every = std::max<int64_t>(1, absl::ToInt64Microseconds(p.unit.every));
        p.next_slot = absl::FromUnixMicros((absl::ToUnixMicros(clock_.Now()) / every + 1) * every);
        e.set_exchange(p.unit.exchange);
        e.set_channel("poll");
        e.set_symbol(p.job.name());
      }
      e.set_received_time_us(absl::ToUnixMicros(clock_.Now()));
      e.set_exchange_time_us(slot_us);
      e.set_key(absl::StrCat(key, "/", slot_us));
      v1::PollResult* poll = e.mutable_poll();
      poll->set_slot_us(slot_us);
      poll->set_path(path);
      if (r.ok()) {
        e.set_node_id(r->node_id());
        poll->set_http_status(r->http_status());
        poll->set_body(r->body());
      } else {
        poll->set_http_status(0);
        poll->set_body(std::string(r.status().message()));
        common::Log(common::LogLevel::kWarning, "collection",
                    absl::StrCat("poll ", key, " at slot ", slot_us, ": ", r.status().message()));
      }
      {
        absl::MutexLock lock(&mu_);
        CopyStats& s = stats_[{key, "coordinator"}];
        ++s.messages;
        if (!r.ok() || r->http_status() != 200) ++s.gaps;  // a slot without its data
        s.lag_us = e.received_time_us() - slot_us;
        s.last = clock_.Now();
      }
      v1::RecordBatch b;
      *b.add_events() = std::move(e);
      hub_.Publish(b, clock_.Now());
    });
  }
  timer_.ArmIn(kTick);
}

void Collection::Observe(const std::string& node_id, const v1::RecordBatch& batch) {
  absl::MutexLock lock(&mu_);
  absl::Time now = clock_.Now();
  for (const v1::MarketEvent& e : batch.events()) {
    CopyStats& s = stats_[{common::UnitKeyOf(e), node_id}];
    ++s.messages;
    if (e.has_gap()) ++s.gaps;
    if (e.exchange_time_us() > 0) s.lag_us = e.received_time_us() - e.exchange_time_us();
    s.last = now;
  }
}

std::vector<v1::Job> Collection::ListJobs() {
  absl::MutexLock lock(&mu_);
  std::vector<v1::Job> out;
  absl::Time now = clock_.Now();
  for (const auto* jobs : {&file_jobs_, &api_jobs_}) {
    for (const auto& [name, job] : *jobs) {
      v1::Job j = job;
      for (const common::UnitSpec& u : common::SplitIntoUnits(job)) {
        v1::Unit* unit = j.add_units();
        unit->set_key(u.key);
        unit->set_symbol(u.symbol);
        auto placed = plan_.units.find(u.key);
        if (!common::IsStream(u.channel)) {
          // Polls run here, through the scheduler.
          v1::UnitCopy* copy = unit->add_copies();
          copy->set_node_id("coordinator");
          auto s = stats_.find({u.key, "coordinator"});
          copy->set_state(s == stats_.end() ? "waiting for its first slot" : "polling");
          if (s != stats_.end()) {
            copy->set_messages_total(s->second.messages);
            copy->set_gaps_total(s->second.gaps);
            copy->set_lag_us(s->second.lag_us);
            copy->set_last_record_age_ms(absl::ToInt64Milliseconds(now - s->second.last));
          }
          continue;
        }
        if (placed == plan_.units.end()) continue;
        for (const CopyPlacement& c : placed->second.copies) {
          v1::UnitCopy* copy = unit->add_copies();
          copy->set_node_id(c.node_id);
          copy->set_egress_ip(c.egress_ip);
          auto s = stats_.find({u.key, c.node_id});
          if (s == stats_.end()) {
            copy->set_state("placed");
            continue;
          }
          copy->set_state(now - s->second.last < absl::Seconds(10) ? "live" : "silent");
          copy->set_messages_total(s->second.messages);
          copy->set_gaps_total(s->second.gaps);
          copy->set_lag_us(s->second.lag_us);
          copy->set_last_record_age_ms(absl::ToInt64Milliseconds(now - s->second.last));
        }
        for (const auto& [at, h] : handovers_) {
          if (at.first != u.key) continue;
          v1::UnitCopy* copy = unit->add_copies();
          copy->set_node_id(h.copy.node_id);
          copy->set_egress_ip(h.copy.egress_ip);
          copy->set_state("handing over");
          auto s = stats_.find(at);
          if (s == stats_.end()) continue;
          copy->set_messages_total(s->second.messages);
          copy->set_gaps_total(s->second.gaps);
          copy->set_lag_us(s->second.lag_us);
          copy->set_last_record_age_ms(absl::ToInt64Milliseconds(now - s->second.last));
        }
        if (static_cast<int>(placed->second.copies.size()) < u.redundancy) {
          unit->add_copies()->set_state(absl::StrCat("unplaced: ", placed->second.shortfall));
        }
      }
      out.push_back(std::move(j));
    }
  }
  return out;
}

}  // namespace marketprism::coordinator
