// mp-node: sends exchange requests from one egress IP for the coordinator.
#include <cstdio>

#include "common/clock.h"
#include "common/flags.h"
#include "common/signals.h"
#include "node/node.h"

int main(int argc, char** argv) {
  using namespace marketprism;
  common::BlockTerminationSignals();
  std::string help;
  auto options = node::ParseNodeOptions({argv + 1, argv + argc}, &help);
  if (!options.ok()) return common::ExitCodeFor("mp-node", options.status());
  if (!options->has_value()) {
    std::fputs(help.c_str(), stdout);
    return 0;
  }
  std::string id = (*options)->node_id, ip = (*options)->egress_ip;
  auto node = node::Node::Create(std::move(**options), common::RealClock::Get());
  if (!node.ok()) return common::ExitCodeFor("mp-node", node.status());
  absl::Status started = (*node)->Start();
  if (!started.ok()) return common::ExitCodeFor("mp-node", started);
  if (!(*node)->gossip_address().empty()) {
    std::printf("mp-node %s gossip at %s\n", id.c_str(), (*node)->gossip_address().c_str());
  }
  std::printf("mp-node %s serving on %s, egress %s\n", id.c_str(), (*node)->advertise().c_str(),
              ip.c_str());
  std::fflush(stdout);
  common::AwaitTerminationSignal();
  (*node)->Shutdown();
  return 0;
}
