// File: coordinator/collection.h
//
// The leader's side of collection: the jobs (from --jobs FILE, re-read when
// it changes, and from Collector.CreateJob/DeleteJob), their units placed on
// the nodes (unit_placement.h) and pushed to each node as its Units, the
// poll units run here through the router at a priority below clients' calls,
// and the RecordHub that merges what the nodes collect for Subscribe.
//
// Every replan_every it re-plans from the nodes the scheduler shows as
// active (a dead, disconnected, draining or suspect node's units move at
// once) and sends a node its units only when they changed. Placement is
// stable: a healthy stream stays where it runs, unless its node holds more
// than its share (a node joined). A move off a node that can still run its
// copies (rebalanced, draining, suspect) is make-before-break: the old copy
// runs on until every replacing copy has sent a record (RecordHub merges the
// overlap), then stops. Only the leader plans; a follower
// holds the jobs and starts planning when it leads: it reads the same jobs
// file, and holds the leader's API jobs by asking for them (SyncJobs, a
// long poll). The leader answers CreateJob and DeleteJob once every follower
// it has heard from lately holds the change (or after `replicate_wait`), so
// a job it accepted survives its death.
//
// Thread-safe. Runs on the injected clock's timer.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/collect/job.h"
#include "common/timer.h"
#include "coordinator/election.h"
#include "coordinator/record_hub.h"
#include "coordinator/router.h"
#include "coordinator/scheduler.h"
#include "coordinator/unit_placement.h"
#include "marketprism/v1/collector.pb.h"
#include "marketprism/v1/node.pb.h"

namespace marketprism::coordinator {

struct CollectionOptions {
  std::string jobs_file;  // "" : jobs only from the API
  std::string coordinator_id;
  absl::Duration replan_every = absl::Milliseconds(500);
  int poll_priority = -1;  // below clients' default of 0
  // A follower counts for a write while its last SyncJobs is this recent.
  absl::Duration follower_timeout = absl::Seconds(10);
  absl::Duration replicate_wait = absl::Seconds(2);  // longest a write waits for followers
  absl::Duration sync_hold = absl::Seconds(5);       // longest a follower's SyncJobs is held
  absl::Duration sync_retry = absl::Milliseconds(500);
  // A copy moved off a node still connected (rebalanced, draining, suspect)
  // keeps running there until every copy that replaces it has sent a record
  // (make-before-break), or this long at most.
  absl::Duration handover_timeout = absl::Seconds(30);
  // A leader's first plan waits this long after its first node registers.
  absl::Duration placement_settle = absl::Seconds(1);
};

class Collection {
 public:
  // Sends a poll through the cluster; the node that sends it writes the
  // reply to its sinks as `record`.
  using Execute =
      std::function<void(const v1::ExecuteRequest&, const v1::RecordAs& record, absl::Time deadline, Router::Done)>;
  using SyncDone = std::function<void(absl::StatusOr<v1::SyncJobsResponse>)>;
  // Sends a follower's SyncJobs to the leader at `address`.
  using SyncJobs = std::function<void(const std::string& address, const v1::SyncJobsRequest&, SyncDone)>;
  using JobDone = std::function<void(absl::StatusOr<v1::Job>)>;
  using Done = std::function<void(absl::Status)>;
  // Sends a node its units (NodeSessions::Send); false when it has no session.
  using SendUnits = std::function<bool(const std::string& node_id, const v1::CoordinatorMessage&)>;

  // Everything borrowed must outlive this object. `leadership` and `term`
  // say whether to plan, and the fence the Units carry. Without `sync` a
  // follower holds only the jobs file's jobs.
  Collection(CollectionOptions options, common::Clock& clock, const common::RulesBook& rules, Scheduler& scheduler,
             SendUnits send, Execute execute, std::function<Leadership()> leadership,
             std::function<int64_t()> term, SyncJobs sync = nullptr);
  ~Collection();  // Stop()

  // Loads the jobs file (a bad file is an error here; later a bad change is
  // logged and the jobs in force stay) and starts the timer.
  absl::Status Start() ABSL_LOCKS_EXCLUDED(mu_);
  // Answers what waits (held SyncJobs, writes) with kUnavailable.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // At the leader; `done` runs once the followers hold the change (never
  // under a lock of ours). kInvalidArgument naming the problem,
  // kAlreadyExists for a taken name, kUnavailable when this coordinator
  // does not lead or stopped leading before the followers held it.
  void CreateJob(v1::Job job, JobDone done) ABSL_LOCKS_EXCLUDED(mu_);
  // kNotFound; kFailedPrecondition for a job of the jobs file (remove it
  // there); kUnavailable as for CreateJob.
  void DeleteJob(const std::string& name, Done done) ABSL_LOCKS_EXCLUDED(mu_);
  // At the leader: a follower's SyncJobs, answered at once or held.
  void ServeSync(const v1::SyncJobsRequest& req, SyncDone done) ABSL_LOCKS_EXCLUDED(mu_);
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
  // A copy the plan moved off a node that still runs it (draining, suspect).
  struct Handover {
    CopyPlacement copy;  // where it runs
    absl::Time since;    // replacing copies' records count from here
  };
  struct CopyStats {
    int64_t messages = 0, gaps = 0;
    int64_t lag_us = 0;
    absl::Time last = absl::InfinitePast();
  };

  struct Follower {
    v1::JobsVersion held;
    absl::Time seen;
  };
  struct HeldSync {
    absl::Time until;
    SyncDone done;
  };
  struct Write {
    int64_t term, seq;
    absl::Time until;
    Done done;
  };
  // Callbacks gathered under mu_ and run after it is released.
  using Calls = std::vector<std::function<void()>>;
  // Whether the Collection still stands: a SyncJobs answer may come after Stop.
  struct Life {
    absl::Mutex mu;
    Collection* self ABSL_GUARDED_BY(mu);
  };

  void Tick() ABSL_LOCKS_EXCLUDED(mu_);
  // The leader's side of replication.
  v1::JobsVersion VersionLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::SyncJobsResponse SyncResponseLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The API jobs changed: held SyncJobs are answered; `done` waits for the followers.
  void ChangedLocked(Done done, Calls& calls) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Answers the writes every recent follower holds, and (with `now`) those
  // past their wait and the SyncJobs held past theirs.
  void SettleLocked(absl::Time now, Calls& calls) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AbandonLocked(const absl::Status& why, Calls& calls) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The follower's side: the leader's answer.
  void Synced(absl::StatusOr<v1::SyncJobsResponse> r) ABSL_LOCKS_EXCLUDED(mu_);
  void ReloadFile() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PlanLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts the handovers `previous` implies and ends those done, moot or overdue.
  void HandOverLocked(const PlacementPlan& previous, const std::map<std::string, NodeState>& states)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RunPolls() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Rebuild() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const CollectionOptions options_;
  common::Clock& clock_;
  const common::RulesBook& rules_;
  Scheduler& scheduler_;
  const SendUnits send_;
  const Execute execute_;
  const std::function<Leadership()> leadership_;
  const std::function<int64_t()> term_;
  const SyncJobs sync_;
  const std::shared_ptr<Life> life_;
  RecordHub hub_;
  common::Timer timer_;

  absl::Mutex mu_;
  std::map<std::string, v1::Job> file_jobs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::Job> api_jobs_ ABSL_GUARDED_BY(mu_);
  int64_t file_mtime_ ABSL_GUARDED_BY(mu_) = -1;
  std::vector<common::UnitSpec> units_ ABSL_GUARDED_BY(mu_);  // every job's stream units
  std::map<std::string, Poll> polls_ ABSL_GUARDED_BY(mu_);    // by unit key
  PlacementPlan plan_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<std::string, std::string>, Handover> handovers_ ABSL_GUARDED_BY(mu_);  // (unit, node)
  bool placed_once_ ABSL_GUARDED_BY(mu_) = false;  // this leadership has planned
  absl::Time first_node_at_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  std::map<std::string, std::string> sent_ ABSL_GUARDED_BY(mu_);  // node -> its Units as last sent
  int64_t sent_term_ ABSL_GUARDED_BY(mu_) = -1;
  bool replan_now_ ABSL_GUARDED_BY(mu_) = true;
  absl::Time last_plan_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::map<std::pair<std::string, std::string>, CopyStats> stats_ ABSL_GUARDED_BY(mu_);  // (unit, node)
  // Leading: the API jobs' changes, who holds what, and who waits.
  int64_t jobs_seq_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, Follower> followers_ ABSL_GUARDED_BY(mu_);
  std::vector<HeldSync> held_syncs_ ABSL_GUARDED_BY(mu_);
  std::vector<Write> writes_ ABSL_GUARDED_BY(mu_);
  // Following: the leader's version of the API jobs we hold.
  v1::JobsVersion held_ ABSL_GUARDED_BY(mu_);
  bool sync_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time sync_retry_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace marketprism::coordinator
