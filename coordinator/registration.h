// File: coordinator/registration.h
//
// What a node's registration and reports mean to this coordinator: its
// ledger, clocks, bans and recent sends seed the scheduler (so a new leader
// places nothing the IP has already spent), its dispatch address goes to the
// node transport, its leases to the lease pusher; the welcome tells it the
// term, the limits every ledger must use, the exchanges' URLs and whether it
// is drained. Called from NodeSessions' hooks, on gRPC threads.
//
// Thread-safe (everything it touches is). Everything borrowed must outlive it.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "coordinator/lease_pusher.h"
#include "coordinator/node_transport.h"
#include "coordinator/scheduler.h"
#include "marketprism/v1/node.pb.h"

namespace marketprism::coordinator {

class Registrar {
 public:
  struct Options {
    std::string coordinator_id;  // "" without gossip
    std::map<std::string, std::string> exchange_urls;  // REST, for nodes without their own
    std::map<std::string, std::string> ws_urls;
    std::vector<std::string> sinks;  // the cluster's, for nodes without their own
  };
  Registrar(Options options, Scheduler& scheduler, GrpcNodeClient& nodes, LeasePusher& leases,
            std::function<int64_t()> term);

  // Seeds everything `r` brings and returns the welcome (accepted).
  v1::Registered Register(const v1::Register& r);
  void Report(const std::string& node_id, const v1::UsageReport& r);

 private:
  void ApplyEvents(const std::string& node_id, const google::protobuf::RepeatedPtrField<v1::UsageEvent>& events);
  void ApplyBans(const std::string& node_id, const google::protobuf::RepeatedPtrField<v1::Ban>& bans);

  const Options options_;
  Scheduler& scheduler_;
  GrpcNodeClient& nodes_;
  LeasePusher& leases_;
  const std::function<int64_t()> term_;
};

}  // namespace marketprism::coordinator
