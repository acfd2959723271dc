// The exchange surprises a saturated cluster (tests/testing/surprise.h: real
// processes against the simulator with its default ban policy, Binance's
// REQUEST_WEIGHT window shortened to 5 s): its limit drops without notice,
// or another program shares a node's IP at the top of every window. The
// simulator's per-IP counts are the judge: no 418, at most one refused
// request per IP per surprise, the new limit spent in the next window.
// With the exposure bound off (MP_MAX_IN_FLIGHT=0) the same runs earn 418s.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/testing/surprise.h"

namespace marketprism::testing {
namespace {

SurpriseOptions Options() {
  SurpriseOptions o;
  o.rules_file = MP_RULES_FILE;
  return o;
}

TEST(SurpriseTest, ALimitLoweredUnderSaturatingLoadCostsOneRefusalPerIpAndTheNewLimitIsSpentNext) {
  auto r = RunLoweredLimit(Options(), 300);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(r->calls_ok, 100);
  EXPECT_LT(r->adopted_after, absl::Seconds(10)) << "the refusal made the coordinator re-read the published limits";
  for (const IpCount& ip : r->ips) {
    EXPECT_EQ(ip.banned_418, 0) << ip.ip << " " << r->sim_stats;
    EXPECT_LE(ip.refused_429, 1) << ip.ip << ": at most one refused request for the surprise\n" << r->refusal_log;
    EXPECT_LE(ip.last_window_used, 300) << ip.ip;
    EXPECT_GE(ip.last_window_used, 300 * 95 / 100) << ip.ip << ": the new limit is used";
  }
}

TEST(SurpriseTest, AForeignClientAtTheTopOfEveryWindowCostsAtMostOneRefusalPerWindowAndNoBan) {
  constexpr int kWindows = 3;
  auto r = RunForeignClient(Options(), kWindows, 200);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(r->calls_ok, 100);
  EXPECT_GT(r->foreign_ok, 0) << "the foreign client did run";
  EXPECT_EQ(r->victim.banned_418, 0) << r->sim_stats;
  EXPECT_LE(r->victim.refused_429 - r->foreign_refused, kWindows)
      << "at most one refused request of the cluster's per surprise";
  for (const IpCount& ip : r->others) EXPECT_EQ(ip.refused_429, 0) << ip.ip << " was never surprised";
  EXPECT_GT(r->foreign_seen, 0) << "the coordinator reports the foreign use of the victim's IP";
}

}  // namespace
}  // namespace marketprism::testing
