#include "common/budget/pool_ledger.h"

#include <algorithm>
#include <optional>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "common/budget/exchange_window.h"

namespace marketprism::common {
namespace {

PoolRule Rule(WindowKind kind, int64_t cap, absl::Duration length, int64_t refill = 0) {
  PoolRule r;
  r.name = "P";
  r.window = kind;
  r.length = length;
  r.capacity = cap;
  r.refill_per_second = refill;
  return r;
}

const absl::Time kMinute = absl::FromUnixSeconds(1'700'000'000 - 1'700'000'000 % 60);
const absl::Duration kU = absl::Milliseconds(1);

// ---- fixed -----------------------------------------------------------------

TEST(PoolLedgerFixedTest, InFlightCountsAndRefundRestores) {
  PoolLedger l(Rule(WindowKind::kFixed, 10, absl::Seconds(60)), kU);
  absl::Time t = kMinute + absl::Seconds(10);
  ASSERT_TRUE(l.Fits(t, 10));
  LedgerTicket a = l.Charge(t, 10);
  EXPECT_FALSE(l.Fits(t, 1));
  EXPECT_EQ(l.Used(t), 10);
  l.Cancel(a);
  EXPECT_TRUE(l.Fits(t, 10)) << "a refunded reservation frees its units";
  EXPECT_EQ(l.Used(t), 0);
}

TEST(PoolLedgerFixedTest, CompletedRequestStaysInItsWindowOnly) {
  PoolLedger l(Rule(WindowKind::kFixed, 10, absl::Seconds(60)), kU);
  absl::Time t = kMinute + absl::Seconds(30);
  l.Complete(l.Charge(t, 10), t + absl::Milliseconds(5), 10);
  EXPECT_FALSE(l.Fits(t + absl::Seconds(29), 1));
  // The next window needs the whole uncertainty margin past the edge.
  EXPECT_FALSE(l.Fits(kMinute + absl::Seconds(60), 1));
  EXPECT_TRUE(l.Fits(kMinute + absl::Seconds(60) + kU, 10));
  EXPECT_EQ(l.EarliestFit(t, 1), kMinute + absl::Seconds(60) + kU);
}

TEST(PoolLedgerFixedTest, InFlightAcrossTheEdgeCountsInTheNewWindow) {
  PoolLedger l(Rule(WindowKind::kFixed, 10, absl::Seconds(60)), kU);
  absl::Time late = kMinute + absl::Seconds(59) + absl::Milliseconds(990);
  LedgerTicket a = l.Charge(late, 4);
  absl::Time next = kMinute + absl::Seconds(60) + absl::Milliseconds(5);
  EXPECT_TRUE(l.Fits(next, 6));
  EXPECT_FALSE(l.Fits(next, 7)) << "the in-flight request may land in the new window";
  // Its reply comes after the edge: it may be in either window, so both keep it.
  l.Complete(a, next, std::nullopt);
  EXPECT_FALSE(l.Fits(next, 7));
  EXPECT_FALSE(l.Fits(late, 7));
}

TEST(PoolLedgerFixedTest, UsageHeaderRaisesTheCount) {
  PoolLedger l(Rule(WindowKind::kFixed, 100, absl::Seconds(60)), kU);
  absl::Time t = kMinute + absl::Seconds(1);
  // Someone else used 50 of this IP's weight: the header says 51 after our 1.
  LedgerTicket a = l.Charge(t, 1);
  LedgerTicket b = l.Charge(t, 1);
  l.Complete(a, t, 51);
  EXPECT_EQ(l.Used(t), 52) << "max(settled, observed) + in flight";
  l.Complete(b, t, 52);
  EXPECT_EQ(l.Used(t), 52);
  EXPECT_TRUE(l.Fits(t, 48));
  EXPECT_FALSE(l.Fits(t, 49));
}

TEST(PoolLedgerFixedTest, OnceIdleTheHeaderCorrectsDownwardToo) {
  PoolLedger l(Rule(WindowKind::kFixed, 100, absl::Seconds(60)), kU);
  absl::Time t = kMinute + absl::Seconds(1);
  // We priced 10 but the exchange charged 4.
  l.Complete(l.Charge(t, 10), t, 4);
  EXPECT_EQ(l.Used(t), 4);
}

TEST(PoolLedgerFixedTest, NoDownwardCorrectionWhileAnythingIsInFlight) {
  PoolLedger l(Rule(WindowKind::kFixed, 100, absl::Seconds(60)), kU);
  absl::Time t = kMinute + absl::Seconds(1);
  LedgerTicket a = l.Charge(t, 10);
  LedgerTicket b = l.Charge(t, 10);
  // b's header may predate a's arrival: it must not lower the count.
  l.Complete(b, t, 10);
  EXPECT_EQ(l.Used(t), 20);
  l.Complete(a, t, 20);
  EXPECT_EQ(l.Used(t), 20);
}

TEST(PoolLedgerFixedTest, PreviousWindowKeepsItsOwnCountBesideTheHeader) {
  PoolLedger l(Rule(WindowKind::kFixed, 100, absl::Seconds(60)), kU);
  absl::Time t = kMinute + absl::Seconds(1);
  EXPECT_FALSE(l.PreviousWindow(t).has_value()) << "nothing counted yet";
  // We priced 10 but the exchange charged 4: the count follows the header,
  // the tally keeps what we predicted.
  l.Complete(l.Charge(t, 10), t, 4);
  absl::Time late = kMinute + absl::Seconds(59) + absl::Milliseconds(999);
  LedgerTicket straddling = l.Charge(late, 3);
  absl::Time next = kMinute + absl::Seconds(60) + absl::Milliseconds(2);
  l.Complete(straddling, next, std::nullopt);
  std::optional<PoolLedger::WindowTally> prev = l.PreviousWindow(next);
  ASSERT_TRUE(prev.has_value());
  EXPECT_EQ(prev->start, kMinute);
  EXPECT_EQ(prev->own, 13) << "a request that may have landed in either window counts in both";
  EXPECT_EQ(prev->observed, 4);
  EXPECT_FALSE(l.PreviousWindow(t).has_value()) << "the window before the first";
  PoolLedger rolling(Rule(WindowKind::kRolling, 10, absl::Seconds(60)), kU);
  EXPECT_FALSE(rolling.PreviousWindow(t).has_value());
}

TEST(PoolLedgerFixedTest, UnconfirmedRepliesSurviveTheSync) {
  PoolLedger l(Rule(WindowKind::kFixed, 100, absl::Seconds(60)), kU);
  absl::Time t = kMinute + absl::Seconds(1);
  LedgerTicket a = l.Charge(t, 10);
  LedgerTicket b = l.Charge(t, 5);
  l.Complete(a, t, 10);
  // b's reply was lost after sending: the exchange may have counted it.
  l.Complete(b, t, std::nullopt);
  EXPECT_EQ(l.Used(t), 15);
}

TEST(PoolLedgerFixedTest, MarkSpentBlocksUntilTheWindowEnds) {
  PoolLedger l(Rule(WindowKind::kFixed, 100, absl::Seconds(60)), kU);
  absl::Time t = kMinute + absl::Seconds(20);
  l.MarkSpent(t);
  EXPECT_FALSE(l.Fits(t, 1));
  EXPECT_EQ(l.Used(t), 100);
  EXPECT_EQ(l.EarliestFit(t, 1), kMinute + absl::Seconds(60) + kU);
}

TEST(PoolLedgerFixedTest, JustAfterAnEdgeTheNewWindowIsNextNotTheOneAfter) {
  const absl::Duration u = absl::Milliseconds(10);
  PoolLedger l(Rule(WindowKind::kFixed, 10, absl::Seconds(60)), u);
  l.Complete(l.Charge(kMinute + absl::Seconds(30), 10), kMinute + absl::Seconds(30), 10);
  // 5 ms after the edge: within the uncertainty, so the full old window may
  // still be the exchange's; the new window opens at edge + u.
  absl::Time t = kMinute + absl::Seconds(60) + absl::Milliseconds(5);
  EXPECT_FALSE(l.Fits(t, 1));
  EXPECT_EQ(l.EarliestFit(t, 1), kMinute + absl::Seconds(60) + u);
}

TEST(PoolLedgerFixedTest, AGrowingUncertaintyDoesNotMakeSettledRequestsAmbiguous) {
  const absl::Duration u = absl::Milliseconds(2);
  PoolLedger l(Rule(WindowKind::kFixed, 100, absl::Seconds(60)), u);
  // Placed at the first instant the new window is certain: edge + u.
  absl::Time sent = kMinute + absl::Seconds(60) + u;
  ASSERT_TRUE(l.Fits(sent, 10));
  LedgerTicket t = l.Charge(sent, 10);
  // Our clock estimate gets slightly less certain before the reply.
  l.set_uncertainty(u + absl::Microseconds(20));
  l.Complete(t, sent + absl::Milliseconds(1), 10);
  // It landed in the new window only: the old one is not charged with it.
  EXPECT_EQ(l.Used(kMinute + absl::Seconds(59)), 0);
  EXPECT_EQ(l.Used(sent + absl::Seconds(1)), 10);
}

TEST(RebaseTicketTest, ANarrowerEstimateNarrowsTheSendTime) {
  // Sent at 100 ms +- 50 ms; the estimate then moved by +30 ms and is good
  // to 1 ms: the send was at 130 ms +- 1 ms, which the old bounds allow.
  LedgerTicket t{1, kMinute + absl::Milliseconds(100), 50'000};
  RebaseTicket(t, absl::Milliseconds(30), absl::Milliseconds(1));
  EXPECT_EQ(t.sent, kMinute + absl::Milliseconds(130));
  EXPECT_EQ(t.uncertainty_us, 1'000);
}

TEST(RebaseTicketTest, AWiderEstimateKeepsTheOldBounds) {
  // A 0.5 ms shift with 3 ms of uncertainty now: the old +- 1 ms is tighter.
  LedgerTicket t{1, kMinute, 1'000};
  RebaseTicket(t, absl::Microseconds(500), absl::Milliseconds(3));
  EXPECT_EQ(t.sent, kMinute);
  EXPECT_EQ(t.uncertainty_us, 1'000);
}

TEST(RebaseTicketTest, DisagreeingEstimatesKeepWhatEitherAllows) {
  LedgerTicket t{1, kMinute, 1'000};
  RebaseTicket(t, absl::Milliseconds(10), absl::Milliseconds(1));
  // [-1, 1] ms and [9, 11] ms do not meet: [-1, 11] ms.
  EXPECT_EQ(t.sent, kMinute + absl::Milliseconds(5));
  EXPECT_EQ(t.uncertainty_us, 6'000);
}

TEST(RebaseTicketTest, ARebasedTicketSettlesInOneWindow) {
  // Sent when the clock was known to +- 50 ms, 40 ms after the edge by that
  // estimate (so perhaps before it); a sharper estimate moved it 30 ms
  // earlier: it was 10 ms +- 1 ms after the edge, so only the new window is
  // charged.
  PoolLedger l(Rule(WindowKind::kFixed, 100, absl::Seconds(60)), absl::Milliseconds(50));
  absl::Time edge = kMinute + absl::Seconds(60);
  LedgerTicket t = l.Charge(edge + absl::Milliseconds(40), 10);
  l.set_uncertainty(absl::Milliseconds(1));
  RebaseTicket(t, -absl::Milliseconds(30), absl::Milliseconds(1));
  l.Complete(t, edge + absl::Milliseconds(40), 10);
  EXPECT_EQ(l.Used(edge - absl::Seconds(1)), 0);
  EXPECT_EQ(l.Used(edge + absl::Seconds(1)), 10);
}

TEST(PoolLedgerFixedTest, TooLargeNeverFits) {
  PoolLedger l(Rule(WindowKind::kFixed, 10, absl::Seconds(60)), kU);
  EXPECT_EQ(l.EarliestFit(kMinute, 11), absl::InfiniteFuture());
}

// ---- rolling ---------------------------------------------------------------

TEST(PoolLedgerRollingTest, EntryCountsUntilReplyPlusLength) {
  PoolLedger l(Rule(WindowKind::kRolling, 2, absl::Seconds(2)), kU);
  absl::Time t = kMinute;
  l.Complete(l.Charge(t, 1), t + absl::Milliseconds(30));
  l.Complete(l.Charge(t, 1), t + absl::Milliseconds(40));
  EXPECT_FALSE(l.Fits(t + absl::Milliseconds(2029), 1));
  EXPECT_EQ(l.EarliestFit(t, 1), t + absl::Milliseconds(2030 + 1))
      << "the reply bounds the arrival; plus the uncertainty";
  EXPECT_TRUE(l.Fits(t + absl::Milliseconds(2031), 1));
  EXPECT_TRUE(l.Fits(t + absl::Milliseconds(2041), 2));
}

TEST(PoolLedgerRollingTest, InFlightBlocksUntilReplied) {
  PoolLedger l(Rule(WindowKind::kRolling, 1, absl::Seconds(2)), kU);
  LedgerTicket a = l.Charge(kMinute, 1);
  EXPECT_EQ(l.EarliestFit(kMinute + absl::Seconds(10), 1), absl::InfiniteFuture());
  l.Complete(a, kMinute + absl::Seconds(10));
  EXPECT_FALSE(l.Fits(kMinute + absl::Seconds(11), 1));
  EXPECT_TRUE(l.Fits(kMinute + absl::Seconds(12) + kU, 1));
}

TEST(PoolLedgerRollingTest, MarkSpentWaitsOneLength) {
  PoolLedger l(Rule(WindowKind::kRolling, 40, absl::Seconds(2)), kU);
  l.MarkSpent(kMinute);
  EXPECT_FALSE(l.Fits(kMinute + absl::Milliseconds(1999), 1));
  EXPECT_TRUE(l.Fits(kMinute + absl::Seconds(2), 40));
}

// ---- bucket ----------------------------------------------------------------

TEST(PoolLedgerBucketTest, BurstThenRefill) {
  PoolLedger l(Rule(WindowKind::kBucket, 50000, absl::ZeroDuration(), 10000), kU);
  absl::Time t = kMinute;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(l.Fits(t, 500)) << i;
    l.Complete(l.Charge(t, 500), t);
  }
  EXPECT_FALSE(l.Fits(t, 500));
  EXPECT_EQ(l.EarliestFit(t, 500), t + absl::Milliseconds(50));
}

TEST(PoolLedgerBucketTest, ReplyTimeIsTheAssumedArrival) {
  PoolLedger l(Rule(WindowKind::kBucket, 1000, absl::ZeroDuration(), 1000), kU);
  absl::Time t = kMinute;
  l.Complete(l.Charge(t, 1000), t + absl::Milliseconds(100));
  // Sent at t, but it may have arrived as late as the reply (+u): the bucket
  // refills only from then.
  EXPECT_FALSE(l.Fits(t + absl::Milliseconds(600), 500));
  EXPECT_TRUE(l.Fits(t + absl::Milliseconds(601), 500));
}

TEST(PoolLedgerBucketTest, InFlightCountsAtOnce) {
  PoolLedger l(Rule(WindowKind::kBucket, 1000, absl::ZeroDuration(), 1000), kU);
  LedgerTicket a = l.Charge(kMinute, 600);
  EXPECT_FALSE(l.Fits(kMinute + absl::Seconds(5), 500)) << "still in flight";
  l.Cancel(a);
  EXPECT_TRUE(l.Fits(kMinute, 1000));
}

TEST(PoolLedgerBucketTest, MarkSpentEmptiesTheBucket) {
  PoolLedger l(Rule(WindowKind::kBucket, 50000, absl::ZeroDuration(), 10000), kU);
  l.MarkSpent(kMinute);
  EXPECT_FALSE(l.Fits(kMinute, 500));
  EXPECT_EQ(l.EarliestFit(kMinute, 500), kMinute + absl::Milliseconds(50));
}

// ---- property: a client obeying its ledger is never refused ----------------

struct Flight {
  LedgerTicket ticket;
  absl::Time arrive;
  absl::Time reply;
  std::optional<int64_t> header;  // usage the exchange reports, taken at arrival
};

// Drives a client at `demand_per_ms` requests against an exact exchange with
// random one-way delays (so requests reorder), obeying the ledger. Returns
// (refusals, units accepted).
std::pair<int, int64_t> Drive(const PoolRule& rule, int64_t units, double demand_per_ms,
                              absl::Duration duration, uint32_t seed) {
  PoolLedger ledger(rule, kU);
  ExchangeWindow exchange(rule);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> delay_us(50, 3000);
  std::bernoulli_distribution send(std::min(1.0, demand_per_ms));
  std::vector<Flight> flights;
  int refusals = 0;
  int64_t accepted = 0;
  absl::Time start = kMinute + absl::Seconds(7);
  for (absl::Time now = start; now < start + duration; now += absl::Microseconds(100)) {
    // Deliver arrivals and replies that are due, in time order.
    std::sort(flights.begin(), flights.end(),
              [](const Flight& a, const Flight& b) { return a.arrive < b.arrive; });
    for (Flight& f : flights) {
      if (f.arrive <= now && f.arrive != absl::InfiniteFuture()) {
        if (exchange.TrySpend(f.arrive, f.ticket.units)) {
          accepted += f.ticket.units;
        } else {
          ++refusals;
        }
        if (rule.window == WindowKind::kFixed) f.header = exchange.Used(f.arrive);
        f.arrive = absl::InfiniteFuture();
      }
    }
    for (auto it = flights.begin(); it != flights.end();) {
      if (it->arrive == absl::InfiniteFuture() && it->reply <= now) {
        ledger.Complete(it->ticket, it->reply, it->header);
        it = flights.erase(it);
      } else {
        ++it;
      }
    }
    if (send(rng) && ledger.Fits(now, units)) {
      absl::Time arrive = now + absl::Microseconds(delay_us(rng));
      absl::Time reply = arrive + absl::Microseconds(delay_us(rng));
      flights.push_back({ledger.Charge(now, units), arrive, reply, std::nullopt});
    }
  }
  return {refusals, accepted};
}

TEST(PoolLedgerPropertyTest, FixedWindowNeverRefusedAndNearlyFull) {
  PoolRule rule = Rule(WindowKind::kFixed, 600, absl::Seconds(60));
  for (uint32_t seed = 1; seed <= 3; ++seed) {
    auto [refusals, accepted] = Drive(rule, 1, 0.5, absl::Seconds(180), seed);
    EXPECT_EQ(refusals, 0) << "seed " << seed;
    // Three windows are touched (start at :07): 53 s + 60 s + 60 s + 7 s.
    EXPECT_GE(accepted, 600 * 3 * 98 / 100) << "seed " << seed;
  }
}

TEST(PoolLedgerPropertyTest, RollingWindowNeverRefused) {
  PoolRule rule = Rule(WindowKind::kRolling, 40, absl::Seconds(2));
  for (uint32_t seed = 1; seed <= 3; ++seed) {
    auto [refusals, accepted] = Drive(rule, 1, 0.5, absl::Seconds(20), seed);
    EXPECT_EQ(refusals, 0) << "seed " << seed;
    EXPECT_GE(accepted, 40 * 10 * 90 / 100) << "seed " << seed;
  }
}

TEST(PoolLedgerPropertyTest, BucketNeverRefused) {
  PoolRule rule = Rule(WindowKind::kBucket, 50000, absl::ZeroDuration(), 10000);
  for (uint32_t seed = 1; seed <= 3; ++seed) {
    auto [refusals, accepted] = Drive(rule, 500, 0.5, absl::Seconds(20), seed);
    EXPECT_EQ(refusals, 0) << "seed " << seed;
    // Burst 50,000 plus 10,000/s for 20 s, less the latency margin.
    EXPECT_GE(accepted, (50000 + 10000 * 20) * 95 / 100) << "seed " << seed;
  }
}

}  // namespace
}  // namespace marketprism::common
