// mp-coordinator: places exchange requests on the egress IPs with budget.
#include <cstdio>

#include "common/process.h"
#include "common/clock.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/signals.h"
#include "coordinator/coordinator.h"

int main(int argc, char** argv) {
  marketprism::common::ConfigureProcess();
  using namespace marketprism;
  common::BlockTerminationSignals();
  // The one place the environment is read: MP_* settings and MP_LOG_LEVEL.
  const common::GetEnv env = common::ProcessEnvironment();
  common::SetLogLevelFrom(env("MP_LOG_LEVEL"));
  std::string help;
  auto options = coordinator::ParseCoordinatorOptions({argv + 1, argv + argc}, &help, env);
  if (!options.ok()) return common::ExitCodeFor("mp-coordinator", options.status());
  if (!options->has_value()) {
    std::fputs(help.c_str(), stdout);
    return 0;
  }
  std::string host = (*options)->listen.host;
  auto c = coordinator::Coordinator::Create(std::move(**options), common::RealClock::Get());
  if (!c.ok()) return common::ExitCodeFor("mp-coordinator", c.status());
  absl::Status started = (*c)->Start();
  if (!started.ok()) return common::ExitCodeFor("mp-coordinator", started);
  if (!(*c)->gossip_address().empty()) std::printf("mp-coordinator gossip at %s\n", (*c)->gossip_address().c_str());
  std::printf("mp-coordinator listening on %s:%d\n", host.c_str(), (*c)->port());
  std::fflush(stdout);
  common::AwaitTerminationSignal();
  (*c)->Shutdown();
  return 0;
}
