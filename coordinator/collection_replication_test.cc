// The jobs' replication between coordinators (collection.h): a leader and a
// follower Collection on one fake clock, the follower's SyncJobs carried by
// a queue the test delivers from, so that every interleaving is chosen here.
#include "coordinator/collection.h"

#include <gtest/gtest.h>

#include <deque>
#include <optional>

#include "coordinator/test_routing_parts.h"
#include "tests/testing/fake_clock.h"

namespace marketprism::coordinator {
namespace {

v1::Job Poll(const std::string& name) {
  v1::Job job;
  job.set_name(name);
  job.set_exchange("binance_spot");
  job.set_channel("poll");
  job.set_path("/api/v3/ticker/24hr");
  job.set_every_ms(1000);
  return job;
}

std::vector<std::string> Names(Collection& c) {
  std::vector<std::string> names;
  for (const v1::Job& j : c.ListJobs()) names.push_back(j.name());
  return names;
}

class CollectionReplicationTest : public ::testing::Test {
 protected:
  struct Member {
    Member(const std::string& name, testing::FakeClock& clock, CollectionOptions options,
           std::function<Leadership()> leadership, std::function<int64_t()> term, Collection::SyncJobs sync)
        : parts(clock),
          collection(std::move(options), clock, parts.scheduler->rules(), *parts.scheduler,
                     [](const std::string&, const v1::CoordinatorMessage&) { return false; },
                     [](const v1::ExecuteRequest&, const v1::RecordAs&, absl::Time, Router::Done done) {
                       done(absl::UnavailableError("no exchange here"));
                     },
                     std::move(leadership), std::move(term), std::move(sync)) {}
    RoutingParts parts;
    Collection collection;
  };
  struct Ask {
    v1::SyncJobsRequest req;
    Collection::SyncDone done;
  };

  void SetUp() override {
    CollectionOptions options;
    options.coordinator_id = "coord-a";
    a_ = std::make_unique<Member>(
        "coord-a", clock_, options, [this] { return Seen("coord-a"); },
        [this] { return term_; }, nullptr);
    options.coordinator_id = "coord-b";
    b_ = std::make_unique<Member>(
        "coord-b", clock_, options, [this] { return Seen("coord-b"); },
        [this] { return term_; },
        [this](const std::string& address, const v1::SyncJobsRequest& req, Collection::SyncDone done) {
          EXPECT_EQ(address, "coord-a:1");
          asks_.push_back(Ask{req, std::move(done)});
        });
    ASSERT_TRUE(a_->collection.Start().ok());
    ASSERT_TRUE(b_->collection.Start().ok());
  }

  // What `self` sees: coord-a leads while a_leads_, else coord-b.
  Leadership Seen(const std::string& self) {
    std::string leader = a_leads_ ? "coord-a" : "coord-b";
    Leadership l;
    l.leading = self == leader;
    l.term = term_;
    l.leader = leader;
    l.leader_grpc = leader + ":1";
    return l;
  }

  // Delivers coord-b's asks to coord-a as they come, until none is left
  // unanswered-and-undelivered (a held ask stays held at coord-a).
  void DeliverAll() {
    while (!asks_.empty()) {
      Ask ask = std::move(asks_.front());
      asks_.pop_front();
      a_->collection.ServeSync(ask.req, std::move(ask.done));
      clock_.RunDue();  // coord-b asks again at once after an answer
    }
  }

  // Creates at coord-a; the answer, once it comes.
  std::shared_ptr<std::optional<absl::StatusOr<v1::Job>>> Create(const std::string& name) {
    auto answer = std::make_shared<std::optional<absl::StatusOr<v1::Job>>>();
    a_->collection.CreateJob(Poll(name), [answer](absl::StatusOr<v1::Job> j) { *answer = std::move(j); });
    return answer;
  }

  testing::FakeClock clock_;
  bool a_leads_ = true;
  int64_t term_ = 1;
  std::deque<Ask> asks_;
  std::unique_ptr<Member> a_, b_;
};

TEST_F(CollectionReplicationTest, AWriteIsAnsweredOnlyOnceTheFollowerSaysItHoldsIt) {
  clock_.RunDue();
  ASSERT_EQ(asks_.size(), 1u);  // coord-b asks as it starts
  DeliverAll();                 // answered (nothing yet), asks again: held at coord-a

  auto answer = Create("time");
  // coord-b's held ask is answered with the job; coord-b holds it and asks
  // again, but that ask — its word that it holds the job — is not yet in.
  EXPECT_FALSE(answer->has_value());
  EXPECT_EQ(Names(b_->collection), std::vector<std::string>{"time"});
  clock_.RunDue();
  ASSERT_EQ(asks_.size(), 1u);
  EXPECT_EQ(asks_.front().req.held().seq(), 1);
  EXPECT_FALSE(answer->has_value());
  DeliverAll();
  ASSERT_TRUE(answer->has_value());
  EXPECT_TRUE(answer->value().ok()) << answer->value().status();

  // A second write while coord-b's ask is in flight (not held at coord-a):
  // it waits for the ask after next.
  ASSERT_TRUE(asks_.empty());
  a_->collection.DeleteJob("time", [](absl::Status) {});
  DeliverAll();
  EXPECT_TRUE(Names(b_->collection).empty());
}

TEST_F(CollectionReplicationTest, AFollowerThatStopsAskingDelaysAWriteByTheWaitThenNoMore) {
  clock_.RunDue();
  DeliverAll();
  // coord-b's ask is held at coord-a, and the next one will not arrive.
  auto first = Create("one");
  clock_.AdvanceBy(absl::Milliseconds(1900));
  EXPECT_FALSE(first->has_value());
  clock_.AdvanceBy(absl::Milliseconds(200));  // replicate_wait: 2 s
  ASSERT_TRUE(first->has_value());
  EXPECT_TRUE(first->value().ok());

  // After follower_timeout without a word, coord-b no longer counts.
  clock_.AdvanceBy(absl::Seconds(10));
  auto second = Create("two");
  clock_.RunDue();
  ASSERT_TRUE(second->has_value());
  EXPECT_TRUE(second->value().ok());
}

TEST_F(CollectionReplicationTest, ALeaderThatStepsDownAnswersItsWaitingWritesUnavailable) {
  clock_.RunDue();
  DeliverAll();
  auto answer = Create("time");
  clock_.RunDue();  // coord-b's ack is queued, not delivered
  a_leads_ = false;
  term_ = 2;
  clock_.AdvanceBy(absl::Milliseconds(100));
  ASSERT_TRUE(answer->has_value());
  EXPECT_EQ(answer->value().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(answer->value().status().message().find("ListJobs"), std::string::npos);
  // coord-b had received it: leading now, it keeps the job.
  EXPECT_EQ(Names(b_->collection), std::vector<std::string>{"time"});
  auto at_b = std::make_shared<std::optional<absl::Status>>();
  b_->collection.DeleteJob("time", [at_b](absl::Status s) { *at_b = s; });
  ASSERT_TRUE(at_b->has_value());
  EXPECT_TRUE(at_b->value().ok()) << at_b->value();
  // A former leader no longer takes writes or asks.
  auto late = Create("late");
  ASSERT_TRUE(late->has_value());
  EXPECT_EQ(late->value().status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(CollectionReplicationTest, AFollowerReplacesWhatItHeldWithTheNewLeadersJobs) {
  clock_.RunDue();
  DeliverAll();
  Create("one");
  clock_.RunDue();
  DeliverAll();
  EXPECT_EQ(Names(b_->collection), std::vector<std::string>{"one"});
  // Two changes in one answer: a follower takes the leader's set whole
  // ("one" deleted, "two" created).
  a_->collection.DeleteJob("one", [](absl::Status) {});
  Create("two");
  DeliverAll();
  clock_.RunDue();
  DeliverAll();
  EXPECT_EQ(Names(b_->collection), std::vector<std::string>{"two"});
}

}  // namespace
}  // namespace marketprism::coordinator
