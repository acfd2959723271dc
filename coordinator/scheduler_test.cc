#include "coordinator/scheduler.h"

#include <deque>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"

namespace marketprism::coordinator {
namespace {

using ::marketprism::testing::StatusIs;
using ::testing::HasSubstr;

// 2026-11-18T00:00:00Z, a minute boundary.
const absl::Time kMinute = absl::FromUnixSeconds(1'795'046'400);

class SchedulerTest : public ::testing::Test {
 protected:
  void Make(std::vector<std::string> limits = {}, SchedulerOptions o = {}) {
    auto rules = common::RulesBook::LoadDefault();
    ASSERT_TRUE(rules.ok());
    for (const std::string& l : limits) ASSERT_TRUE(rules->ApplyLimitOverride(l).ok());
    o.default_uncertainty = absl::Milliseconds(1);
    o.margin = absl::ZeroDuration();
    // The budget tests place many requests at once: the exposure bound
    // (its own tests below) is off unless a test sets exposure_.
    o.exposure.enabled = exposure_;
    sched_ = std::make_unique<Scheduler>(std::move(*rules), clock_, o);
  }

  void AddNode(const std::string& id, const std::string& ip) {
    sched_->UpsertNode(id, ip, ip + ":7000", "test", {"binance_spot", "okx", "deribit"});
    std::vector<NodeClock> clocks;
    for (const char* e : {"binance_spot", "okx", "deribit"}) {
      clocks.push_back({e, absl::ZeroDuration(), absl::ZeroDuration()});
    }
    sched_->SetNodeClocks(id, clocks);
  }

  // Submits; placements and final errors land in placed_ / errors_.
  absl::Status Submit(const std::string& path, common::QueryParams q = {}, int priority = 0,
                      absl::Duration timeout = absl::Minutes(5),
                      const std::string& exchange = "binance_spot") {
    ExecuteSpec spec;
    spec.exchange = exchange;
    spec.path = path;
    spec.query = std::move(q);
    spec.priority = priority;
    spec.deadline = clock_.Now() + timeout;
    return sched_->Submit(std::move(spec), [this, priority](absl::StatusOr<Placement> r) {
      if (r.ok()) {
        placed_.push_back(*r);
        placed_priority_.push_back(priority);
      } else {
        errors_.push_back(r.status());
      }
    });
  }

  // Replies to every placement made so far (optionally with a usage header).
  void ReplyAll(std::optional<int64_t> used = std::nullopt) {
    while (!placed_.empty()) {
      Placement p = placed_.front();
      placed_.pop_front();
      placed_priority_.pop_front();
      DispatchOutcome o;
      o.kind = DispatchOutcome::Kind::kReplied;
      o.http_status = 200;
      if (used) o.observed = std::make_pair("REQUEST_WEIGHT", *used);
      EXPECT_EQ(sched_->Report(p, o), Scheduler::ReportResult::kFinal);
      replied_.push_back(p);
    }
  }

  // Replies (200) to the placements made so far, not to those the replies
  // make: one round trip.
  void ReplyRound() {
    std::deque<Placement> round;
    round.swap(placed_);
    placed_priority_.clear();
    for (const Placement& p : round) {
      DispatchOutcome o;
      o.kind = DispatchOutcome::Kind::kReplied;
      o.http_status = 200;
      sched_->Report(p, o);
    }
  }

  // One node on a 200 ms round trip, 3,000 pings queued, and the exposure
  // bound grown by `rounds` round trips of confirming replies (1, 2, 4, ...).
  void SaturateOneNodeAt200Ms(int rounds) {
    exposure_ = true;
    Make();
    AddNode("n1", "10.0.0.1");
    for (int i = 0; i < 3000; ++i) ASSERT_TRUE(Submit("/api/v3/ping").ok());
    RoundTrips(rounds);
  }
  void RoundTrips(int rounds) {
    for (int round = 0; round < rounds; ++round) {
      clock_.AdvanceBy(absl::Milliseconds(200));
      ReplyRound();
    }
  }

  std::map<std::string, int> CountByIp(const std::vector<Placement>& ps) {
    std::map<std::string, int> m;
    for (const Placement& p : ps) ++m[p.egress_ip];
    return m;
  }

  testing::FakeClock clock_{kMinute + absl::Seconds(30)};
  bool exposure_ = false;
  std::unique_ptr<Scheduler> sched_;
  std::deque<Placement> placed_;
  std::deque<int> placed_priority_;
  std::vector<Placement> replied_;
  std::vector<absl::Status> errors_;
};

// ---- account leases ----

TEST_F(SchedulerTest, AccountRequestsGoOnlyWhereALeaseOfTheAccountHasRoom) {
  Make();
  AddNode("n1", "10.0.0.1");
  AddNode("n2", "10.0.0.2");
  auto order = [&](const std::string& account) {
    ExecuteSpec spec;
    spec.exchange = "binance_spot";
    spec.method = "POST";
    spec.path = "/api/v3/order";
    spec.account = account;
    spec.deadline = clock_.Now() + absl::Seconds(30);
    return sched_->Submit(std::move(spec), [this](absl::StatusOr<Placement> r) {
      if (r.ok()) {
        placed_.push_back(*r);
        placed_priority_.push_back(0);
      } else {
        errors_.push_back(r.status());
      }
    });
  };
  EXPECT_THAT(order(""), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("X-MBX-APIKEY")));
  // No lease anywhere yet: it waits (rather than failing at once).
  ASSERT_TRUE(order("K").ok());
  EXPECT_TRUE(placed_.empty());
  EXPECT_TRUE(errors_.empty());
  const common::ExchangeRules& rules = *sched_->rules().Find("binance_spot");
  int s10 = rules.PoolIndex("ORDERS_10S"), d1 = rules.PoolIndex("ORDERS_1D");
  sched_->SetLeaseShares({{{"binance_spot", "K", "n2"}, {{s10, 2}, {d1, 100}}}});
  ASSERT_EQ(placed_.size(), 1u);
  EXPECT_EQ(placed_[0].node_id, "n2");
  EXPECT_EQ(placed_[0].account, "K");
  ASSERT_TRUE(order("K").ok());
  ASSERT_TRUE(order("K").ok());
  EXPECT_EQ(placed_.size(), 2u) << "n2's share is 2 per window; n1 has none";
  // Another account has no lease; public requests need none.
  ASSERT_TRUE(order("OTHER").ok());
  EXPECT_EQ(placed_.size(), 2u);
  ASSERT_TRUE(Submit("/api/v3/ping").ok());
  EXPECT_EQ(placed_.size(), 3u);
  // A share for n1 lets the waiting order go there.
  sched_->SetLeaseShares({{{"binance_spot", "K", "n2"}, {{s10, 2}, {d1, 100}}},
                          {{"binance_spot", "K", "n1"}, {{s10, 1}, {d1, 100}}}});
  ASSERT_EQ(placed_.size(), 4u);
  EXPECT_EQ(placed_.back().node_id, "n1");
  // A refused dispatch gives the lease's units back; a reply keeps them.
  Placement first = placed_.front();
  DispatchOutcome refused;
  refused.kind = DispatchOutcome::Kind::kRefused;
  refused.retry_after = absl::Milliseconds(1);
  placed_.pop_front();
  placed_priority_.pop_front();
  EXPECT_EQ(sched_->Report(first, refused), Scheduler::ReportResult::kRequeued);
  ReplyAll();
  EXPECT_TRUE(placed_.empty()) << "n2 is skipped for a moment after refusing";
  clock_.AdvanceBy(absl::Milliseconds(250));
  sched_->Poll();
  ASSERT_EQ(placed_.size(), 1u) << "the refund left room in n2's lease";
  EXPECT_EQ(placed_[0].node_id, "n2");
  ReplyAll();
  // A node refusing for want of lease stays in rotation for everything else.
  clock_.AdvanceBy(absl::Seconds(10));  // the next window
  ASSERT_TRUE(order("K").ok());
  ASSERT_EQ(placed_.size(), 1u) << "not held up behind OTHER's order, which has no lease";
  Placement held = placed_.front();
  placed_.pop_front();
  placed_priority_.pop_front();
  DispatchOutcome no_lease;
  no_lease.kind = DispatchOutcome::Kind::kRefused;
  no_lease.account_refused = true;
  no_lease.retry_after = absl::Seconds(2);
  EXPECT_EQ(sched_->Report(held, no_lease), Scheduler::ReportResult::kRequeued);
  ASSERT_EQ(placed_.size(), 1u);
  EXPECT_NE(placed_.front().node_id, held.node_id) << "the other node's lease takes it";
  ReplyAll();
  // The refusing node's IP is not parked: a ping can go there.
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Submit("/api/v3/ping").ok());
  EXPECT_GE(CountByIp({placed_.begin(), placed_.end()})[held.egress_ip], 1);
  ReplyAll();
  // But the account waits there for the node's retry-after.
  ASSERT_TRUE(order("K").ok());
  EXPECT_TRUE(placed_.empty());
  clock_.AdvanceBy(absl::Seconds(2));
  sched_->Poll();
  ASSERT_EQ(placed_.size(), 1u);
  EXPECT_EQ(placed_.front().node_id, held.node_id);
  ReplyAll();
  // Shares withdrawn: nothing more is placed for the account.
  sched_->SetLeaseShares({});
  clock_.AdvanceBy(absl::Seconds(10));
  ASSERT_TRUE(order("K").ok());
  sched_->Poll();
  EXPECT_TRUE(placed_.empty());
}

TEST_F(SchedulerTest, BadRequestsNameTheField) {
  Make();
  AddNode("n1", "10.0.0.1");
  EXPECT_THAT(Submit("/api/v3/ping", {}, 0, absl::Minutes(1), "kraken"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exchange: unknown exchange \"kraken\"")));
  EXPECT_THAT(Submit("api/v3/ping"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("path:")));
  EXPECT_THAT(Submit("/api/v3/nothing"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("path: binance_spot has no cost rule")));
  EXPECT_THAT(Submit("/api/v3/depth", {{"limit", "abc"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("query: parameter limit")));
}

TEST_F(SchedulerTest, NoNodeIsUnavailable) {
  Make();
  EXPECT_THAT(Submit("/api/v3/ping"), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("no available node")));
  AddNode("n1", "10.0.0.1");
  ASSERT_TRUE(sched_->SetDraining("n1", true).ok());
  EXPECT_THAT(Submit("/api/v3/ping"), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(sched_->SetDraining("nope", true), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(SchedulerTest, ABatchIsPlacedLikeSingleRequests) {
  Make({"binance_spot.REQUEST_WEIGHT=10"});
  AddNode("n1", "10.0.0.1");
  std::vector<std::pair<ExecuteSpec, Scheduler::Done>> batch;
  for (int i = 0; i < 12; ++i) {
    ExecuteSpec s;
    s.exchange = "binance_spot";
    s.path = i == 11 ? "/nope" : "/api/v3/ping";
    s.deadline = clock_.Now() + absl::Minutes(5);
    batch.emplace_back(s, [this](absl::StatusOr<Placement> r) {
      if (r.ok()) placed_.push_back(*r);
    });
  }
  std::vector<absl::Status> st = sched_->SubmitBatch(std::move(batch));
  ASSERT_EQ(st.size(), 12u);
  for (int i = 0; i < 11; ++i) EXPECT_TRUE(st[i].ok()) << i;
  EXPECT_THAT(st[11], StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(placed_.size(), 10u) << "the budget, the rest queued";
}

TEST_F(SchedulerTest, SpreadsAcrossIpsByHeadroom) {
  Make({"binance_spot.REQUEST_WEIGHT=100"});
  AddNode("n1", "10.0.0.1");
  AddNode("n2", "10.0.0.2");
  AddNode("n3", "10.0.0.3");
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(Submit("/api/v3/depth", {{"symbol", "BTCUSDT"}}).ok());
  ASSERT_EQ(placed_.size(), 30u);
  auto counts = CountByIp({placed_.begin(), placed_.end()});
  EXPECT_EQ(counts["10.0.0.1"], 10);
  EXPECT_EQ(counts["10.0.0.2"], 10);
  EXPECT_EQ(counts["10.0.0.3"], 10);
}

TEST_F(SchedulerTest, UsesTheWholeCombinedBudgetThenQueuesToTheWindowEdge) {
  Make({"binance_spot.REQUEST_WEIGHT=10"});
  AddNode("n1", "10.0.0.1");
  AddNode("n2", "10.0.0.2");
  for (int i = 0; i < 25; ++i) ASSERT_TRUE(Submit("/api/v3/ping").ok());
  EXPECT_EQ(placed_.size(), 20u) << "exactly the combined budget, 2 x 10";
  ReplyAll(/*used=*/std::nullopt);
  EXPECT_TRUE(errors_.empty());
  // The rest waits for the next minute plus the clock uncertainty (1 ms).
  EXPECT_EQ(sched_->NextWakeup(), kMinute + absl::Seconds(60) + absl::Milliseconds(1));
  clock_.SetNow(kMinute + absl::Seconds(60));
  sched_->Poll();
  EXPECT_TRUE(placed_.empty()) << "not before the edge's uncertainty has passed";
  clock_.SetNow(kMinute + absl::Seconds(60) + absl::Milliseconds(1));
  sched_->Poll();
  EXPECT_EQ(placed_.size(), 5u);
}

TEST_F(SchedulerTest, ReserveThenRefund) {
  Make({"binance_spot.REQUEST_WEIGHT=5"});
  AddNode("n1", "10.0.0.1");
  ASSERT_TRUE(Submit("/api/v3/depth", {{"symbol", "BTCUSDT"}}).ok());  // weight 5: all of it
  ASSERT_EQ(placed_.size(), 1u);
  ASSERT_TRUE(Submit("/api/v3/ping").ok());
  EXPECT_EQ(placed_.size(), 1u) << "the reservation holds the budget";
  // The node could not even connect: nothing was sent, the budget comes back,
  // and with no other node the request cannot be retried elsewhere.
  DispatchOutcome o;
  o.kind = DispatchOutcome::Kind::kNotSent;
  Placement p = placed_.front();
  placed_.pop_front();
  EXPECT_EQ(sched_->Report(p, o), Scheduler::ReportResult::kRequeued);
  ASSERT_EQ(placed_.size(), 1u) << "the refund let the queued ping through";
  EXPECT_EQ(placed_.front().cost.UnitsIn(0), 1);
}

TEST_F(SchedulerTest, NotSentIsRetriedOnAnotherNode) {
  Make({"binance_spot.REQUEST_WEIGHT=100"});
  AddNode("n1", "10.0.0.1");
  AddNode("n2", "10.0.0.2");
  ASSERT_TRUE(Submit("/api/v3/ping").ok());
  Placement first = placed_.front();
  placed_.pop_front();
  DispatchOutcome o;
  o.kind = DispatchOutcome::Kind::kNotSent;
  sched_->Report(first, o);
  ASSERT_EQ(placed_.size(), 1u);
  EXPECT_NE(placed_.front().node_id, first.node_id);
  EXPECT_EQ(placed_.front().attempt, 2);
}

TEST_F(SchedulerTest, LostRequestsStayCharged) {
  Make({"binance_spot.REQUEST_WEIGHT=5"});
  AddNode("n1", "10.0.0.1");
  AddNode("n2", "10.0.0.2");
  ASSERT_TRUE(Submit("/api/v3/depth", {{"symbol", "BTCUSDT"}}).ok());
  Placement first = placed_.front();
  placed_.pop_front();
  DispatchOutcome o;
  o.kind = DispatchOutcome::Kind::kLost;
  sched_->Report(first, o);
  ASSERT_EQ(placed_.size(), 1u) << "retried on the other IP";
  EXPECT_NE(placed_.front().egress_ip, first.egress_ip);
  ReplyAll();
  // The lost one may have reached the exchange: its IP keeps it charged.
  ExecuteSpec spec;
  ASSERT_TRUE(Submit("/api/v3/ping").ok());
  EXPECT_TRUE(placed_.empty()) << "both IPs are spent for this minute";
}

TEST_F(SchedulerTest, ALostRequestThatIsNotAReadIsNotSentAgain) {
  Make();
  AddNode("n1", "10.0.0.1");
  AddNode("n2", "10.0.0.2");
  ExecuteSpec spec;
  spec.exchange = "deribit";
  spec.method = "POST";
  spec.path = "/api/v2/private/buy";
  spec.body = R"({"jsonrpc":"2.0","id":1,"method":"private/buy","params":{}})";
  spec.deadline = clock_.Now() + absl::Minutes(1);
  ASSERT_FALSE(Idempotent(spec));
  ASSERT_TRUE(sched_->Submit(spec, [this](absl::StatusOr<Placement> r) {
    if (r.ok()) placed_.push_back(*r);
    if (!r.ok()) errors_.push_back(r.status());
  }).ok());
  ASSERT_EQ(placed_.size(), 1u);
  Placement first = placed_.front();
  placed_.pop_front();
  DispatchOutcome o;
  o.kind = DispatchOutcome::Kind::kLost;
  o.detail = "the node died";
  sched_->Report(first, o);
  EXPECT_TRUE(placed_.empty()) << "not placed again";
  ASSERT_EQ(errors_.size(), 1u);
  EXPECT_THAT(errors_[0], StatusIs(absl::StatusCode::kUnavailable, HasSubstr("POST is not retried")));
}

TEST_F(SchedulerTest, ASuspectNodeKeepsItsWorkButGetsNoNewWork) {
  Make();
  AddNode("n1", "10.0.0.1");
  AddNode("n2", "10.0.0.2");
  sched_->SetSuspect("n1", true);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Submit("/api/v3/ping").ok());
  ASSERT_EQ(placed_.size(), 4u);
  for (const Placement& p : placed_) EXPECT_EQ(p.node_id, "n2");
  SchedulerSnapshot snap = sched_->Snapshot();
  for (const NodeSnapshot& n : snap.nodes) {
    EXPECT_EQ(n.state, n.node_id == "n1" ? NodeState::kSuspect : NodeState::kActive);
  }
  // A suspect that answers again is back in rotation.
  sched_->SetSuspect("n1", false);
  placed_.clear();
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Submit("/api/v3/ping").ok());
  int on_n1 = 0;
  for (const Placement& p : placed_) on_n1 += p.node_id == "n1" ? 1 : 0;
  EXPECT_GT(on_n1, 0);
  // With only suspects left, requests wait rather than fail.
  sched_->SetSuspect("n1", true);
  sched_->SetSuspect("n2", true);
  placed_.clear();
  EXPECT_TRUE(Submit("/api/v3/ping").ok());
  EXPECT_TRUE(placed_.empty());
  sched_->SetSuspect("n2", false);
  EXPECT_EQ(placed_.size(), 1u);
}

TEST(IdempotentTest, ReadsAreAndDeribitPublicRpcIs) {
  ExecuteSpec s;
  s.method = "GET";
  EXPECT_TRUE(Idempotent(s));
  s.method = "POST";
  s.path = "/api/v2";
  s.body = R"({"method":"public/get_order_book"})";
  EXPECT_TRUE(Idempotent(s));
  s.body = R"({"method":"private/sell"})";
  EXPECT_FALSE(Idempotent(s));
  s.method = "DELETE";
  s.body.clear();
  EXPECT_FALSE(Idempotent(s));
}

TEST_F(SchedulerTest, DeadlineFailsFastWhenTheBudgetComesTooLate) {
  Make({"binance_spot.REQUEST_WEIGHT=1"});
  AddNode("n1", "10.0.0.1");
  ASSERT_TRUE(Submit("/api/v3/ping").ok());
  ReplyAll();
  // Budget returns at :60 + 1 ms; a 10 s deadline at :30 cannot make it.
  ASSERT_TRUE(Submit("/api/v3/ping", {}, 0, absl::Seconds(10)).ok());
  ASSERT_EQ(errors_.size(), 1u);
  EXPECT_THAT(errors_[0], StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("retry after")));
  EXPECT_EQ(RetryAfterOf(errors_[0]), absl::Milliseconds(30'001));
}

TEST_F(SchedulerTest, QueuedRequestIsAnsweredAtItsDeadlineNeverSentLate) {
  Make({"binance_spot.REQUEST_WEIGHT=1"});
  AddNode("n1", "10.0.0.1");
  ASSERT_TRUE(Submit("/api/v3/ping").ok());
  // In flight: the earliest start is unknown until it is answered, so the
  // second request waits in the queue.
  ASSERT_TRUE(Submit("/api/v3/ping", {}, 0, absl::Seconds(2)).ok());
  EXPECT_EQ(placed_.size(), 1u);
  EXPECT_TRUE(errors_.empty());
  EXPECT_EQ(sched_->NextWakeup(), clock_.Now() + absl::Seconds(2));
  clock_.AdvanceBy(absl::Seconds(2));
  sched_->Poll();
  ASSERT_EQ(errors_.size(), 1u);
  EXPECT_THAT(errors_[0], StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(placed_.size(), 1u) << "never placed after its deadline";
}

TEST_F(SchedulerTest, HigherPriorityGoesFirstAtTheEdge) {
  Make({"binance_spot.REQUEST_WEIGHT=2"});
  AddNode("n1", "10.0.0.1");
  ASSERT_TRUE(Submit("/api/v3/ping").ok());
  ASSERT_TRUE(Submit("/api/v3/ping").ok());
  ReplyAll();
  ASSERT_TRUE(Submit("/api/v3/ping", {}, /*priority=*/0).ok());
  ASSERT_TRUE(Submit("/api/v3/ping", {}, /*priority=*/0).ok());
  ASSERT_TRUE(Submit("/api/v3/ping", {}, /*priority=*/5).ok());
  ASSERT_TRUE(Submit("/api/v3/ping", {}, /*priority=*/1).ok());
  clock_.SetNow(kMinute + absl::Seconds(61));
  sched_->Poll();
  ASSERT_EQ(placed_priority_.size(), 2u);
  EXPECT_EQ(placed_priority_[0], 5);
  EXPECT_EQ(placed_priority_[1], 1);
}

TEST_F(SchedulerTest, SmallRequestsFillTheTailOfAWindow) {
  Make({"binance_spot.REQUEST_WEIGHT=7"});
  AddNode("n1", "10.0.0.1");
  ASSERT_TRUE(Submit("/api/v3/depth", {{"symbol", "BTCUSDT"}}).ok());  // 5
  ASSERT_TRUE(Submit("/api/v3/depth", {{"symbol", "BTCUSDT"}}).ok());  // 5: must wait
  ASSERT_TRUE(Submit("/api/v3/ping").ok());                           // 1: fits now
  ASSERT_TRUE(Submit("/api/v3/ping").ok());
  EXPECT_EQ(placed_.size(), 3u) << "7 of 7 used";
}

TEST_F(SchedulerTest, ABanParksTheIpUntilRetryAfter) {
  Make({"binance_spot.REQUEST_WEIGHT=100"});
  AddNode("n1", "10.0.0.1");
  AddNode("n2", "10.0.0.2");
  ASSERT_TRUE(Submit("/api/v3/ping").ok());
  Placement p = placed_.front();
  placed_.pop_front();
  DispatchOutcome o;
  o.kind = DispatchOutcome::Kind::kReplied;
  o.http_status = 429;
  o.park_until = clock_.Now() + absl::Seconds(20);
  o.park_kind = "rate_limited";
  sched_->Report(p, o);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(Submit("/api/v3/ping").ok());
  for (const Placement& q : placed_) EXPECT_NE(q.node_id, p.node_id) << "parked for 20 s";
  ReplyAll();
  clock_.AdvanceBy(absl::Seconds(20));
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(Submit("/api/v3/ping").ok());
  EXPECT_GT(CountByIp({placed_.begin(), placed_.end()})[p.egress_ip], 0) << "back in rotation";
  SchedulerSnapshot s = sched_->Snapshot();
  EXPECT_LT(s.success_rate, 1.0);
}

TEST_F(SchedulerTest, ARefusingNodeIsSkippedAndTheRequestGoesElsewhere) {
  Make({"binance_spot.REQUEST_WEIGHT=100"});
  AddNode("n1", "10.0.0.1");
  AddNode("n2", "10.0.0.2");
  ASSERT_TRUE(Submit("/api/v3/ping").ok());
  Placement p = placed_.front();
  placed_.pop_front();
  DispatchOutcome o;
  o.kind = DispatchOutcome::Kind::kRefused;
  o.retry_after = absl::Seconds(3);
  EXPECT_EQ(sched_->Report(p, o), Scheduler::ReportResult::kRequeued);
  ASSERT_EQ(placed_.size(), 1u);
  EXPECT_NE(placed_.front().node_id, p.node_id);
}

TEST_F(SchedulerTest, UsageHeadersCorrectTheLedger) {
  Make({"binance_spot.REQUEST_WEIGHT=100"});
  AddNode("n1", "10.0.0.1");
  ASSERT_TRUE(Submit("/api/v3/ping").ok());
  // Someone else on this IP already spent 90: the exchange says 91 after ours.
  ReplyAll(/*used=*/91);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(Submit("/api/v3/ping").ok());
  EXPECT_EQ(placed_.size(), 9u) << "100 - 91 left";
}

TEST_F(SchedulerTest, WindowEdgesFollowTheExchangeClock) {
  Make({"binance_spot.REQUEST_WEIGHT=1"});
  AddNode("n1", "10.0.0.1");
  // The exchange's clock runs 1.5 s behind the node's (and ours).
  sched_->SetNodeClocks("n1", {{"binance_spot", absl::Milliseconds(-1500), absl::ZeroDuration()}});
  clock_.SetNow(kMinute + absl::Seconds(59));
  ASSERT_TRUE(Submit("/api/v3/ping").ok());
  ReplyAll();
  ASSERT_TRUE(Submit("/api/v3/ping").ok());
  clock_.SetNow(kMinute + absl::Seconds(60) + absl::Milliseconds(100));
  sched_->Poll();
  EXPECT_TRUE(placed_.empty()) << "our minute turned, the exchange's has not";
  // The exchange's :00 is our :01.5, plus the 1 ms of uncertainty.
  EXPECT_EQ(sched_->NextWakeup(), kMinute + absl::Seconds(61) + absl::Milliseconds(501));
  clock_.SetNow(kMinute + absl::Seconds(61) + absl::Milliseconds(501));
  sched_->Poll();
  EXPECT_EQ(placed_.size(), 1u);
}

TEST_F(SchedulerTest, ClockSkewIsLearnedFromDispatchRoundTrips) {
  Make({"binance_spot.REQUEST_WEIGHT=100"});
  AddNode("n1", "10.0.0.1");
  ASSERT_TRUE(Submit("/api/v3/ping").ok());
  Placement p = placed_.front();
  placed_.pop_front();
  clock_.AdvanceBy(absl::Microseconds(400));
  DispatchOutcome o;
  o.kind = DispatchOutcome::Kind::kReplied;
  o.http_status = 200;
  // The node's clock is 2 s ahead of ours.
  o.node_received = p.placed + absl::Seconds(2) + absl::Microseconds(100);
  o.node_replied = p.placed + absl::Seconds(2) + absl::Microseconds(300);
  sched_->Report(p, o);
  SchedulerSnapshot s = sched_->Snapshot();
  ASSERT_EQ(s.nodes.size(), 1u);
  ASSERT_FALSE(s.nodes[0].lanes.empty());
  EXPECT_EQ(s.nodes[0].lanes[0].exchange, "binance_spot");
  EXPECT_NEAR(absl::ToDoubleMilliseconds(s.nodes[0].lanes[0].clock_offset), 2000.0, 0.2);
}

TEST_F(SchedulerTest, DisconnectedNodesGetNoWorkAndOrphansFail) {
  Make({"binance_spot.REQUEST_WEIGHT=1"});
  AddNode("n1", "10.0.0.1");
  AddNode("n2", "10.0.0.2");
  ASSERT_TRUE(Submit("/api/v3/ping").ok());
  ASSERT_TRUE(Submit("/api/v3/ping").ok());
  ReplyAll();
  ASSERT_TRUE(Submit("/api/v3/ping").ok());  // queued
  sched_->DisconnectNode("n1");
  EXPECT_TRUE(errors_.empty()) << "n2 still serves binance";
  sched_->DisconnectNode("n2");
  ASSERT_EQ(errors_.size(), 1u);
  EXPECT_THAT(errors_[0], StatusIs(absl::StatusCode::kUnavailable));
  // A node that comes back with the same IP finds that IP's budget spent.
  AddNode("n1", "10.0.0.1");
  ASSERT_TRUE(Submit("/api/v3/ping").ok());
  EXPECT_TRUE(placed_.empty());
}

TEST_F(SchedulerTest, NoWorkForANodeUntilItsClockIsKnown) {
  Make({"binance_spot.REQUEST_WEIGHT=100"});
  sched_->UpsertNode("n1", "10.0.0.1", "a:1", "test", {"binance_spot"});
  ASSERT_TRUE(Submit("/api/v3/ping").ok()) << "accepted and queued, not refused";
  EXPECT_TRUE(placed_.empty());
  EXPECT_TRUE(errors_.empty());
  sched_->SetNodeClocks("n1", {{"binance_spot", absl::Seconds(35), absl::Milliseconds(1)}});
  sched_->Poll();
  ASSERT_EQ(placed_.size(), 1u);
  EXPECT_EQ(sched_->Snapshot().nodes[0].ready, std::vector<std::string>{"binance_spot"});
}

TEST_F(SchedulerTest, PublishedLimitsAreReadBeforeAnythingElseIsPlaced) {
  SchedulerOptions o;
  o.await_published_limits = true;
  Make({}, o);
  AddNode("n1", "10.0.0.1");
  ASSERT_TRUE(Submit("/api/v3/ping").ok());
  EXPECT_TRUE(placed_.empty()) << "binance_spot waits for its published limits";
  ASSERT_TRUE(Submit("/api/v5/public/time", {}, 0, absl::Minutes(1), "okx").ok());
  EXPECT_EQ(placed_.size(), 1u) << "OKX publishes none: no wait";
  ExecuteSpec probe;
  probe.exchange = "binance_spot";
  probe.path = "/api/v3/exchangeInfo";
  probe.limits_probe = true;
  ASSERT_TRUE(sched_->Submit(probe, [this](absl::StatusOr<Placement> r) { placed_.push_back(*r); }).ok());
  EXPECT_EQ(placed_.size(), 2u) << "the probe itself passes";
  EXPECT_FALSE(sched_->LimitsConfirmed("binance_spot"));
  sched_->ConfirmLimits("binance_spot");
  EXPECT_EQ(placed_.size(), 3u) << "the held ping goes once the limits are known";
}

TEST_F(SchedulerTest, LoweredLimitAppliesToLiveLedgers) {
  Make({"binance_spot.REQUEST_WEIGHT=100"});
  AddNode("n1", "10.0.0.1");
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(Submit("/api/v3/ping").ok());
  ReplyAll();
  ASSERT_TRUE(sched_->ApplyLimit("binance_spot", "REQUEST_WEIGHT", 12).ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Submit("/api/v3/ping").ok());
  EXPECT_EQ(placed_.size(), 2u);
  EXPECT_THAT(sched_->ApplyLimit("binance_spot", "NOPE", 1), StatusIs(absl::StatusCode::kNotFound));
  bool found = false;
  for (const auto& [e, pool, cap] : sched_->Limits()) {
    if (e == "binance_spot" && pool == "REQUEST_WEIGHT") found = cap == 12;
  }
  EXPECT_TRUE(found);
}

TEST_F(SchedulerTest, OkxRollingAndDeribitBucketBudgets) {
  Make({"okx.market/books=4", "deribit.non_matching_engine=1500"});
  AddNode("n1", "10.0.0.1");
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(Submit("/api/v5/market/books", {{"instId", "BTC-USDT"}}, 0, absl::Minutes(1), "okx").ok());
  }
  EXPECT_EQ(placed_.size(), 4u);
  ReplyAll();
  // Each entry counts until its reply + 2 s (+ 1 ms uncertainty).
  clock_.AdvanceBy(absl::Milliseconds(2001));
  sched_->Poll();
  EXPECT_EQ(placed_.size(), 2u);
  ReplyAll();
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(Submit("/api/v2/public/get_time", {}, 0, absl::Minutes(1), "deribit").ok());
  }
  EXPECT_EQ(placed_.size(), 3u) << "1500 credits, 500 each";
  ReplyAll();
  clock_.AdvanceBy(absl::Milliseconds(51));  // 500 credits back at 10/ms, + 1 ms
  sched_->Poll();
  EXPECT_EQ(placed_.size(), 1u);
}

TEST_F(SchedulerTest, NodeProbesAreChargedToItsIp) {
  Make({"binance_spot.REQUEST_WEIGHT=3"});
  AddNode("n1", "10.0.0.1");
  common::Cost probe;
  probe.charges.push_back({0, 1});
  absl::Time t = clock_.Now();
  sched_->ApplyUsage("n1", "binance_spot", probe, t, t, std::make_pair(std::string("REQUEST_WEIGHT"), 2));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Submit("/api/v3/ping").ok());
  EXPECT_EQ(placed_.size(), 1u) << "the exchange counted 2 of 3 already";
}

}  // namespace
}  // namespace marketprism::coordinator

namespace marketprism::coordinator {
namespace {

int64_t WeightUsed(Scheduler& s, const std::string& node) {
  for (const NodeSnapshot& n : s.Snapshot().nodes) {
    if (n.node_id != node) continue;
    for (const auto& [exchange, pools] : n.pools) {
      for (const auto& p : pools) {
        if (exchange == "binance_spot" && p.name == "REQUEST_WEIGHT") return p.used;
      }
    }
  }
  return -1;
}

// A new coordinator learns what an IP already spent from the node's
// registration, although registering (and its clock) creates the IP's book
// first; once it has its own record, a later registration adds nothing.
TEST(SchedulerSeedTest, ARegistrationSeedsTheLedgerOnceEvenAfterTheClockArrived) {
  testing::FakeClock clock(absl::FromUnixSeconds(1'795'046'400) + absl::Seconds(10));
  auto rules = common::RulesBook::LoadDefault();
  ASSERT_TRUE(rules.ok());
  Scheduler s(std::move(*rules), clock);
  s.UpsertNode("n1", "10.0.0.1", "10.0.0.1:7000", "test", {"binance_spot"});
  s.SetNodeClocks("n1", {{"binance_spot", absl::ZeroDuration(), absl::ZeroDuration()}});
  s.SeedUsage("n1", "binance_spot", {{"REQUEST_WEIGHT", 1200}});
  EXPECT_EQ(WeightUsed(s, "n1"), 1200);
  s.UpsertNode("n1", "10.0.0.1", "10.0.0.1:7000", "test", {"binance_spot"});  // it reconnects
  s.SeedUsage("n1", "binance_spot", {{"REQUEST_WEIGHT", 1300}});
  EXPECT_EQ(WeightUsed(s, "n1"), 1200);
  s.ForgetLedgers();  // a leader change: the next leader seeds again
  s.UpsertNode("n1", "10.0.0.1", "10.0.0.1:7000", "test", {"binance_spot"});
  s.SeedUsage("n1", "binance_spot", {{"REQUEST_WEIGHT", 1300}});
  EXPECT_EQ(WeightUsed(s, "n1"), 1300);
}

// ---- exposure: what one IP has in flight ----

// The placements on each IP waiting for a reply.
std::map<std::string, int> InFlightByIp(const std::deque<Placement>& placed) {
  std::map<std::string, int> m;
  for (const Placement& p : placed) ++m[p.egress_ip];
  return m;
}

DispatchOutcome Replied(std::optional<int64_t> used = std::nullopt) {
  DispatchOutcome o;
  o.kind = DispatchOutcome::Kind::kReplied;
  o.http_status = 200;
  if (used) o.observed = std::make_pair("REQUEST_WEIGHT", *used);
  return o;
}

TEST_F(SchedulerTest, ALimitLoweredWithoutNoticeCostsOneRefusedRequestPerIp) {
  exposure_ = true;
  Make({"binance_spot.REQUEST_WEIGHT=600"});
  for (int i = 1; i <= 3; ++i) AddNode(absl::StrCat("n", i), absl::StrCat("10.0.0.", i));
  for (int i = 0; i < 900; ++i) ASSERT_TRUE(Submit("/api/v3/ping").ok());
  // A millisecond's round trip spends 600 a minute one at a time: one in
  // flight per IP, never more.
  EXPECT_EQ(placed_.size(), 3u);
  std::map<std::string, int> refused;
  for (int replies = 0; !placed_.empty() && replies < 2000; ++replies) {
    for (const auto& [ip, n] : InFlightByIp(placed_)) ASSERT_LE(n, 1) << ip;
    Placement p = placed_.front();
    placed_.pop_front();
    placed_priority_.pop_front();
    clock_.AdvanceBy(absl::Milliseconds(1));
    if (replies >= 150) {
      // The exchange now allows 50 per IP: every request beyond is refused
      // until the minute ends.
      DispatchOutcome o = Replied(51);
      o.http_status = 429;
      o.park_until = kMinute + absl::Seconds(60);
      o.park_kind = "rate_limited";
      ++refused[p.egress_ip];
      sched_->Report(p, o);
      continue;
    }
    sched_->Report(p, Replied());
  }
  EXPECT_TRUE(placed_.empty()) << "every IP is held to the minute's end";
  EXPECT_EQ(refused, (std::map<std::string, int>{{"10.0.0.1", 1}, {"10.0.0.2", 1}, {"10.0.0.3", 1}}));
  clock_.SetNow(kMinute + absl::Seconds(60) + absl::Milliseconds(2));
  sched_->Poll();
  EXPECT_EQ(placed_.size(), 3u) << "the next minute starts again, one per IP";
}

TEST_F(SchedulerTest, ExposureGrowsOnlyAsTheBudgetNeedsAtTheRoundTrip) {
  exposure_ = true;
  Make();  // 6000 a minute: at 30 s left, 200 pings a second
  AddNode("n1", "10.0.0.1");
  for (int i = 0; i < 3000; ++i) ASSERT_TRUE(Submit("/api/v3/ping").ok());
  std::vector<size_t> rounds;
  for (int round = 0; round < 9; ++round) {
    rounds.push_back(placed_.size());
    clock_.AdvanceBy(absl::Milliseconds(200));
    ReplyRound();
  }
  // Doubling while the replies confirm the ledger, up to 200/s x 0.2 s = 40
  // (a little more as the window's end nears).
  EXPECT_EQ(rounds[0], 1u);
  EXPECT_EQ(rounds[1], 2u);
  EXPECT_EQ(rounds[2], 4u);
  EXPECT_EQ(rounds[3], 8u);
  for (size_t i = 6; i < rounds.size(); ++i) {
    EXPECT_GE(rounds[i], 38u) << i;
    EXPECT_LE(rounds[i], 44u) << i;
  }
}

TEST_F(SchedulerTest, ForeignUseOrA429DropsTheExposureToOneAndHoldsTheQueue) {
  SaturateOneNodeAt200Ms(4);
  ASSERT_EQ(placed_.size(), 16u);
  // One reply shows 2,000 the node did not send: the other 15 were out when
  // the exchange changed, so their confirmations count for nothing.
  clock_.AdvanceBy(absl::Milliseconds(200));
  Placement first = placed_.front();
  placed_.pop_front();
  DispatchOutcome foreign = Replied(2100);
  foreign.foreign_units = 2000;
  sched_->Report(first, foreign);
  EXPECT_EQ(placed_.size(), 15u) << "nothing new while 15 are out";
  ReplyRound();
  EXPECT_EQ(placed_.size(), 1u) << "then one";
  auto lanes = sched_->Snapshot().nodes[0].lanes;
  auto lane = std::find_if(lanes.begin(), lanes.end(), [](const LaneStatus& l) { return l.exchange == "binance_spot"; });
  ASSERT_NE(lane, lanes.end());
  EXPECT_EQ(lane->foreign_units, 2000);
  EXPECT_EQ(lane->exposure, 1);
  // Grown again, then a 429 with thousands queued: nothing more is placed
  // on the IP until its Retry-After, whatever else replies.
  RoundTrips(4);
  ASSERT_GE(placed_.size(), 8u);
  Placement refused = placed_.front();
  placed_.pop_front();
  DispatchOutcome too_many = Replied(6000);
  too_many.http_status = 429;
  too_many.park_until = clock_.Now() + absl::Seconds(5);
  too_many.park_kind = "rate_limited";
  sched_->Report(refused, too_many);
  ReplyRound();
  EXPECT_TRUE(placed_.empty());
  clock_.AdvanceBy(absl::Seconds(5));
  sched_->Poll();
  EXPECT_TRUE(placed_.empty()) << "past the Retry-After, the exchange showed the window full (6000)";
  clock_.SetNow(kMinute + absl::Seconds(60) + absl::Milliseconds(2));
  sched_->Poll();
  EXPECT_EQ(placed_.size(), 1u) << "the next minute, one at first";
}

TEST_F(SchedulerTest, TheNodesOwnBoundCapsOursAndItsExposureRefusalKeepsItInRotation) {
  SaturateOneNodeAt200Ms(3);
  ASSERT_EQ(placed_.size(), 8u);
  // The node saw a surprise of its own (its clock probe): its bound is 1.
  Placement p = placed_.front();
  placed_.pop_front();
  DispatchOutcome o;
  o.kind = DispatchOutcome::Kind::kRefused;
  o.exposure_refused = true;
  o.exposure = 1;
  sched_->Report(p, o);
  ReplyRound();
  EXPECT_TRUE(placed_.empty()) << "held a round trip: the node still has requests out we no longer count";
  clock_.AdvanceBy(absl::Milliseconds(201));
  sched_->Poll();
  EXPECT_EQ(placed_.size(), 1u) << "then not parked, at the node's bound";
  EXPECT_TRUE(sched_->Snapshot().nodes[0].lanes[0].parked_until <= clock_.Now());
}

TEST_F(SchedulerTest, EachFixedWindowStartsAtOne) {
  SaturateOneNodeAt200Ms(4);
  ASSERT_EQ(placed_.size(), 16u);
  clock_.SetNow(kMinute + absl::Seconds(60) + absl::Milliseconds(10));
  ReplyRound();
  EXPECT_EQ(placed_.size(), 1u) << "the new minute is unknown until a reply confirms it";
}

TEST_F(SchedulerTest, NothingIsSentThatCouldNotBeAnsweredBeforeItsDeadlineAndOurDeadlineIsNoNodeFailure) {
  exposure_ = true;
  Make();
  AddNode("n1", "10.0.0.1");
  ASSERT_TRUE(Submit("/api/v3/ping").ok());
  clock_.AdvanceBy(absl::Milliseconds(200));
  ReplyRound();  // the round trip is 200 ms now
  ASSERT_TRUE(Submit("/api/v3/ping", {}, 0, absl::Milliseconds(150)).ok());
  EXPECT_TRUE(placed_.empty()) << "150 ms left, 200 ms round trip: it would come back too late";
  clock_.AdvanceBy(absl::Milliseconds(151));
  sched_->Poll();
  ASSERT_EQ(errors_.size(), 1u);
  EXPECT_EQ(errors_[0].code(), absl::StatusCode::kResourceExhausted);
  // Three dispatches cut short by their own deadlines leave the node in rotation.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Submit("/api/v3/ping").ok());
    ASSERT_EQ(placed_.size(), 1u) << i;
    Placement pl = placed_.front();
    placed_.pop_front();
    placed_priority_.pop_front();
    DispatchOutcome lost;
    lost.kind = DispatchOutcome::Kind::kLost;
    lost.deadline_passed = true;
    sched_->Report(pl, lost);
    placed_.clear();
  }
  ASSERT_TRUE(Submit("/api/v3/ping").ok());
  EXPECT_FALSE(placed_.empty()) << "not parked as unreachable";
}

}  // namespace
}  // namespace marketprism::coordinator
