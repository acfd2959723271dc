// File: tests/bench/http_load.h
//
// A small HTTP/1.1 load generator for benchmarks: one thread, epoll,
// keep-alive connections spread over several source IPs, each connection
// sending the next request as soon as the previous reply is complete (or
// keeping `pipeline` requests outstanding).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace marketprism::bench {

struct HttpLoadOptions {
  std::string host = "127.0.0.1";
  int port = 0;
  std::vector<std::string> source_ips = {"127.0.0.1"};
  int connections = 32;
  int pipeline = 1;
  absl::Duration duration = absl::Seconds(5);
  absl::Duration warmup = absl::Milliseconds(500);
  std::vector<std::string> paths;  // GET paths with query, used round-robin
};

struct HttpLoadResult {
  int64_t requests = 0;          // replies received in the measured period
  double seconds = 0;
  std::map<int, int64_t> statuses;
  int64_t connection_errors = 0;
  double p50_us = 0, p90_us = 0, p99_us = 0, max_us = 0;
};

absl::StatusOr<HttpLoadResult> RunHttpLoad(const HttpLoadOptions& options);

// Percentile (0..100) of an unsorted sample; sorts it.
double Percentile(std::vector<double>& sample, double p);

}  // namespace marketprism::bench
