// File: coordinator/test_routing_parts.h
//
// Test-only: the scheduler and router a front door or client service sits
// on, with no node to send to (every dispatch is answered NOT_SENT).
#pragma once

#include <memory>
#include <string>

#include "coordinator/router.h"
#include "coordinator/scheduler.h"

namespace marketprism::coordinator {

class NoNodes final : public NodeClient {
 public:
  void Dispatch(const std::string&, v1::DispatchRequest, absl::Time, DispatchDone done) override {
    v1::DispatchResponse r;
    r.set_outcome(v1::DispatchResponse::NOT_SENT);
    done(absl::OkStatus(), r);
  }
};

// `clock` must outlive the parts.
struct RoutingParts {
  explicit RoutingParts(common::Clock& clock)
      : scheduler(std::make_unique<Scheduler>(*common::RulesBook::LoadDefault(), clock)),
        router(std::make_unique<Router>(*scheduler, nodes)) {}
  NoNodes nodes;
  std::unique_ptr<Scheduler> scheduler;
  std::unique_ptr<Router> router;
};

}  // namespace marketprism::coordinator
