// File: coordinator/collection.h
//
// The leader's side of collection: the jobs (from --jobs FILE, re-read when
// it changes, and from Collector.CreateJob/DeleteJob), their units placed on
// the nodes (unit_placement.h) and pushed to each node as its Units, the
// poll units run here through the router at a priority below clients' calls,
// and the RecordHub that merges what the nodes collect for Subscribe.
//
// Every replan_every it re-plans from the nodes the scheduler shows as
// active (a dead, disconnected or draining node's units move at once) and
// sends a node its units only when they changed. Placement is stable: a
// healthy stream stays where it runs. Only the leader plans; a follower
// holds the jobs (it reads the same file) and starts planning when it leads.
//
// Thread-safe. Runs on the injected clock's timer.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/collect/job.h"
#include "common/timer.h"
#include "coordinator/election.h"
#include "coordinator/node_sessions.h"
#include "coordinator/record_hub.h"
#include "coordinator/router.h"
#include "coordinator/scheduler.h"
#include "coordinator/unit_placement.h"
#include "marketprism/v1/collector.pb.h"

namespace marketprism::coordinator {

struct CollectionOptions {
  std::string jobs_file;  // "" : jobs only from the API
  std::string coordinator_id;
  absl::Duration replan_every = absl::Milliseconds(500);
  int poll_priority = -1;  // below clients' default of 0
};

class Collection {
 public:
  using Execute = std::function<void(const v1::ExecuteRequest&, absl::Time deadline, Router::Done)>;

  // Everything borrowed must outlive this object. `leadership` and `term`
  // say whether to plan, and the fence the Units carry.
  Collection(CollectionOptions options, common::Clock& clock, const common::RulesBook& rules, Scheduler& scheduler,
             NodeSessions& sessions, Execute execute, std::function<Leadership()> leadership,
             std::function<int64_t()> term);
  ~Collection();  // Stop()

  // Loads the jobs file (a bad file is an error here; later a bad change is
  // logged and the jobs in force stay) and starts the timer.
  absl::Status Start() ABSL_LOCKS_EXCLUDED(mu_);
  void Stop();

  // kInvalidArgument naming the problem, kAlreadyExists for a taken name.
  absl::StatusOr<v1::Job> CreateJob(v1::Job job) ABSL_LOCKS_EXCLUDED(mu_);
  // kNotFound; kFailedPrecondition for a job of the jobs file (remove it there).
  absl::Status DeleteJob(const std::string& name) ABSL_LOCKS_EXCLUDED(mu_);
  // Every job with its units as placed and what each copy reported.
  std::vector<v1::Job> ListJobs() ABSL_LOCKS_EXCLUDED(mu_);
  // The nodes changed: re-plan at the next tick. A node that registered
  // (again) is sent its units whether or not they changed.
  void NodeRegistered(const std::string& node_id) ABSL_LOCKS_EXCLUDED(mu_);
  void NodeGone() ABSL_LOCKS_EXCLUDED(mu_);

  RecordHub& hub() { return hub_; }
  // What a node's records say of its units, for ListJobs.
  void Observe(const std::string& node_id, const v1::RecordBatch& batch) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Poll {
    common::UnitSpec unit;
    v1::Job job;
    absl::Time next_slot;
    bool in_flight = false;
  };
  struct CopyStats {
    int64_t messages = 0, gaps = 0;
    int64_t lag_us = 0;
    absl::Time last = absl::InfinitePast();
  };

  void Tick() ABSL_LOCKS_EXCLUDED(mu_);
  void ReloadFile() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PlanLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RunPolls() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Rebuild() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const CollectionOptions options_;
  common::Clock& clock_;
  const common::RulesBook& rules_;
  Scheduler& scheduler_;
  NodeSessions& sessions_;
  const Execute execute_;
  const std::function<Leadership()> leadership_;
  const std::function<int64_t()> term_;
  RecordHub hub_;
  common::Timer timer_;

  absl::Mutex mu_;
  std::map<std::string, v1::Job> file_jobs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::Job> api_jobs_ ABSL_GUARDED_BY(mu_);
  int64_t file_mtime_ ABSL_GUARDED_BY(mu_) = -1;
  std::vector<common::UnitSpec> units_ ABSL_GUARDED_BY(mu_);  // every job's stream units
  std::map<std::string, Poll> polls_ ABSL_GUARDED_BY(mu_);    // by unit key
  PlacementPlan plan_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> sent_ ABSL_GUARDED_BY(mu_);  // node -> its Units as last sent
  int64_t sent_term_ ABSL_GUARDED_BY(mu_) = -1;
  bool replan_now_ ABSL_GUARDED_BY(mu_) = true;
  absl::Time last_plan_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::map<std::pair<std::string, std::string>, CopyStats> stats_ ABSL_GUARDED_BY(mu_);  // (unit, node)
};

}  // namespace marketprism::coordinator
