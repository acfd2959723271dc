// File: cli/collect_commands.h
//
// mpctl's collection commands, on the Collector API:
//   mpctl jobs                      every unit: job, node and IP, state, messages, gaps, lag, last record's age
//   mpctl jobs create FILE          each job of a jobs file (checked here first; nothing is sent if one is bad)
//   mpctl jobs delete NAME
//   mpctl tail EXCHANGE CHANNEL [SYMBOL ...]   records live, one line each (--json: one JSON object each)
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "grpcpp/channel.h"

namespace marketprism::cli {

// `args` starts with the command's name. Returns the exit code.
int RunJobs(const std::shared_ptr<grpc::Channel>& channel, const std::vector<std::string>& args, bool json,
            absl::Duration timeout);
int RunTail(const std::shared_ptr<grpc::Channel>& channel, const std::vector<std::string>& args, bool json);

}  // namespace marketprism::cli
