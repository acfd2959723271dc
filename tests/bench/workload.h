// File: tests/bench/workload.h
//
// Demand for the demo and the routing benchmark: a weighted mix of real
// public endpoints, offered open-loop at a chosen rate, either
//  * through the cluster (ClusterDriver: Execute on the coordinator with the
//    gRPC callback API, so queued calls hold no threads), or
//  * the way users throttle today (BaselineDriver: each IP its own client
//    with a static 1/N share of the demand and a token bucket at its IP's
//    limit, ccxt-style: no burst beyond one request, no knowledge of the
//    exchange's window or of the other clients).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "marketprism/v1/coordinator.grpc.pb.h"

namespace marketprism::bench {

struct MixItem {
  std::string exchange;
  std::string path;
  std::vector<std::pair<std::string, std::string>> query;
  int64_t weight = 1;  // Binance request weight (1 for the others' counts)
  double share = 1;
};

// The mixes: Binance spot (weights 1 to 25, mean about 4.7), OKX, Deribit.
const std::vector<MixItem>& BinanceMix();
const std::vector<MixItem>& OkxMix();
const std::vector<MixItem>& DeribitMix();

struct Demand {
  double binance_weight_per_second = 0;
  double okx_per_second = 0;
  double deribit_per_second = 0;
};

struct DriveStats {
  std::atomic<int64_t> sent{0};
  std::atomic<int64_t> ok{0};           // an exchange reply
  std::atomic<int64_t> exhausted{0};    // no budget before the deadline (not a violation)
  std::atomic<int64_t> other_errors{0};
  std::atomic<int64_t> in_flight{0};
  absl::Mutex mu;
  std::map<int, int64_t> http ABSL_GUARDED_BY(mu);
};

// One answered call, for benchmarks that look at where and when calls went.
struct Answer {
  absl::Time issued, answered;
  std::string egress_ip;
  int64_t weight = 0;
  int64_t queued_us = 0;
  int attempts = 0;
  int http_status = 0;
};

class ClusterDriver {
 public:
  // Calls carry `priority` (higher goes first).
  ClusterDriver(const std::string& coordinator, Demand demand, absl::Duration deadline, uint64_t seed,
                int priority = 0);
  // Offers the demand until `until`, then waits for outstanding calls.
  void Run(absl::Time until);
  DriveStats& stats() { return stats_; }
  // Keep every answered call (off by default: long runs answer millions).
  void RecordAnswers() { record_ = true; }
  std::vector<Answer> TakeAnswers() ABSL_LOCKS_EXCLUDED(stats_.mu);

 private:
  void Issue(const MixItem& item);

  std::unique_ptr<v1::Coordinator::Stub> stub_;
  Demand demand_;
  absl::Duration deadline_;
  std::mt19937_64 rng_;
  int priority_;
  bool record_ = false;
  DriveStats stats_;
  std::vector<Answer> answers_ ABSL_GUARDED_BY(stats_.mu);
};

class BaselineDriver {
 public:
  // One client per IP in `ips`, client i taking `shares[i]` of `demand`
  // (empty: 1/N each) through a token bucket refilling at
  // `limit_per_minute / 60` weight per second.
  BaselineDriver(const std::string& sim_url, std::vector<std::string> ips, Demand demand,
                 int64_t limit_per_minute, absl::Duration deadline, uint64_t seed,
                 std::vector<double> shares = {});
  void Run(absl::Time until);
  DriveStats& stats() { return stats_; }

 private:
  std::string sim_url_;
  std::vector<std::string> ips_;
  std::vector<double> shares_;
  Demand demand_;
  int64_t limit_per_minute_;
  absl::Duration deadline_;
  uint64_t seed_;
  DriveStats stats_;
};

// Figures as the benchmarks print them: rounded to hundredths; `part` of
// `whole` in percent (0 for an empty whole).
double Round2(double v);
double Pct(int64_t part, int64_t whole);

// Picks an item of `mix` by share.
const MixItem& Pick(const std::vector<MixItem>& mix, std::mt19937_64& rng);

}  // namespace marketprism::bench
