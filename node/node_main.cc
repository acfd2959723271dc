// mp-node: sends exchange requests from one egress IP for the coordinator.
#include <cstdio>

#include "common/process.h"
#include "common/clock.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/signals.h"
#include "node/http_client_factory.h"
#include "node/node.h"

int main(int argc, char** argv) {
  marketprism::common::ConfigureProcess();
  using namespace marketprism;
  common::BlockTerminationSignals();
  // The one place the environment is read: MP_* settings, proxy variables, MP_LOG_LEVEL.
  const common::GetEnv env = common::ProcessEnvironment();
  common::SetLogLevelFrom(env("MP_LOG_LEVEL"));
  std::string help;
  auto config = node::ParseNodeOptions({argv + 1, argv + argc}, &help, env);
  if (!config.ok()) return common::ExitCodeFor("mp-node", config.status());
  if (!config->has_value()) {
    std::fputs(help.c_str(), stdout);
    return 0;
  }
  node::NodeConfig& c = **config;
  std::string id = c.options.node_id, ip = c.options.egress_ip;
  node::NodeTransports transports;
  transports.http = node::CurlHttpClientFactory();
  auto node = node::Node::Create(std::move(c.options), std::move(c.rules), common::RealClock::Get(),
                                 std::move(transports));
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
