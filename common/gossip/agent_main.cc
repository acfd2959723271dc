// mp-gossip-agent: one gossip member on its own, for tests, benchmarks and
// debugging a network. Prints one JSON object per line on stdout: each
// membership event as it happens, each usage record it publishes
// (--publish-every) and stats every --stats-every.
//   SIGTERM/SIGINT: graceful leave, then exit.  SIGUSR1: print the member table.
//   SIGUSR2: publish the next value of an urgent "state" record (benchmarks).
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/flags.h"
#include "common/gossip/agent.h"
#include "common/log.h"

using marketprism::common::FlagSet;
using namespace marketprism::common::gossip;

namespace {

absl::Mutex out_mu;

void PrintLine(const std::string& line) {
  absl::MutexLock l(&out_mu);
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

std::string Escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o.push_back('\\');
    if (static_cast<unsigned char>(c) < 0x20) continue;
    o.push_back(c);
  }
  return o;
}

std::string MemberJson(const MemberView& m) {
  std::string records;
  for (const auto& [k, r] : m.records) {
    absl::StrAppend(&records, records.empty() ? "" : ",", "\"", Escape(k), "\":\"", Escape(r.value), "\"");
  }
  int64_t last_seen_ms = m.last_heard == absl::InfinitePast() ? -1 : absl::ToUnixMillis(m.last_heard);
  return absl::StrFormat(
      "{\"name\":\"%s\",\"id\":\"%016x\",\"addr\":\"%s\",\"state\":\"%s\",\"incarnation\":%u,"
      "\"last_seen_ms\":%d,\"self\":%s,\"records\":{%s}}",
      Escape(m.name), m.id, m.addr, MemberStateName(m.state), m.incarnation, last_seen_ms,
      m.self ? "true" : "false", records);
}

}  // namespace

int main(int argc, char** argv) {
  marketprism::common::SetLogLevelFrom(std::getenv("MP_LOG_LEVEL"));
  FlagSet flags("mp-gossip-agent", "One gossip member: prints membership events as JSON lines.");
  std::string name, gossip, join, cluster = "marketprism", key_file;
  std::vector<std::string> records;
  absl::Duration stall_budget = absl::Seconds(2), probe_interval = absl::Milliseconds(200);
  absl::Duration publish_every = absl::ZeroDuration(), stats_every = absl::ZeroDuration();
  flags.String("name", &name, "member name (default: the gossip address)");
  flags.String("gossip", &gossip, "ADDR:PORT to bind and be reached at (UDP and TCP; port 0: any free)");
  flags.String("join", &join, "seeds, ADDR:PORT[,ADDR:PORT...]");
  flags.String("cluster", &cluster, "cluster name (authenticated in every frame)");
  flags.String("gossip-key-file", &key_file, "keyring file: one 32-byte key per line (hex or base64), primary first");
  flags.List("record", &records, "KEY=VALUE record to publish (repeatable)");
  flags.Duration("stall-budget", &stall_budget, "a member silent for less is never declared dead");
  flags.Duration("probe-interval", &probe_interval, "time between probes");
  flags.Duration("publish-every", &publish_every, "publish a changing 'usage' record this often (0: never)");
  flags.Duration("stats-every", &stats_every, "print traffic stats this often (0: never)");
  absl::StatusOr<std::vector<std::string>> args = flags.Parse(argc, argv);
  if (flags.help_requested()) {
    std::printf("%s", flags.Help().c_str());
    return 0;
  }
  if (!args.ok()) {
    std::fprintf(stderr, "mp-gossip-agent: %s\n", std::string(args.status().message()).c_str());
    return 2;
  }
  if (gossip.empty()) {
    std::fprintf(stderr, "mp-gossip-agent: --gossip ADDR:PORT is required\n");
    return 2;
  }
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGINT, SIGTERM, SIGUSR1, SIGUSR2}) sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  AgentOptions o;
  o.gossip.name = name.empty() ? gossip : name;
  o.gossip.addr = gossip;
  o.gossip.stall_budget = stall_budget;
  o.gossip.probe_interval = probe_interval;
  o.cluster = cluster;
  o.key_file = key_file;
  for (absl::string_view j : absl::StrSplit(join, ',', absl::SkipEmpty())) o.join.emplace_back(j);
  o.on_event = [](const MemberEvent& e) {
    PrintLine(absl::StrFormat("{\"event\":\"%s\",\"t_ms\":%d,\"member\":%s,\"reason\":\"%s\"}",
                              MemberEventName(e.kind), absl::ToUnixMillis(absl::Now()), MemberJson(e.member),
                              Escape(e.reason)));
  };
  absl::StatusOr<std::unique_ptr<GossipAgent>> agent = GossipAgent::Start(std::move(o));
  if (!agent.ok()) {
    std::fprintf(stderr, "mp-gossip-agent: %s\n", std::string(agent.status().message()).c_str());
    return 1;
  }
  for (const std::string& r : records) {
    std::pair<std::string, std::string> kv = absl::StrSplit(r, absl::MaxSplits('=', 1));
    (*agent)->SetRecord(kv.first, kv.second);
  }
  PrintLine(absl::StrFormat("{\"event\":\"started\",\"t_ms\":%d,\"id\":\"%016x\",\"addr\":\"%s\"}",
                            absl::ToUnixMillis(absl::Now()), (*agent)->self_id(), (*agent)->addr()));
  absl::Time next_publish = publish_every > absl::ZeroDuration() ? absl::Now() + publish_every : absl::InfiniteFuture();
  absl::Time next_stats = stats_every > absl::ZeroDuration() ? absl::Now() + stats_every : absl::InfiniteFuture();
  uint64_t usage = 0, state = 0;
  for (;;) {
    absl::Time until = std::min({next_publish, next_stats, absl::Now() + absl::Seconds(1)});
    timespec ts = absl::ToTimespec(std::max(absl::ZeroDuration(), until - absl::Now()));
    int sig = sigtimedwait(&set, nullptr, &ts);
    absl::Time now = absl::Now();
    if (sig == SIGINT || sig == SIGTERM) {
      (*agent)->Leave();
      (*agent)->Stop();
      PrintLine(absl::StrFormat("{\"event\":\"stopped\",\"t_ms\":%d}", absl::ToUnixMillis(absl::Now())));
      return 0;
    }
    if (sig == SIGUSR1) {
      std::string all;
      for (const MemberView& m : (*agent)->Members()) absl::StrAppend(&all, all.empty() ? "" : ",", MemberJson(m));
      PrintLine(absl::StrCat("{\"members\":[", all, "]}"));
    }
    // Sets a record and says so (benchmarks time its spread from here).
    auto publish = [&](const std::string& key, const std::string& value, bool urgent) {
      (*agent)->SetRecord(key, value, urgent);
      PrintLine(absl::StrFormat("{\"event\":\"published\",\"t_ms\":%d,\"key\":\"%s\",\"value\":\"%s\"}",
                                absl::ToUnixMillis(now), key, Escape(value)));
    };
    if (sig == SIGUSR2) publish("state", absl::StrCat(++state), /*urgent=*/true);
    if (now >= next_publish) {
      next_publish += publish_every;
      publish("usage", absl::StrCat("{\"weight_used\":", ++usage, "}"), /*urgent=*/false);
    }
    if (now >= next_stats) {
      next_stats += stats_every;
      AgentStats s = (*agent)->Stats();
      PrintLine(absl::StrFormat(
          "{\"stats\":{\"t_ms\":%d,\"datagrams_sent\":%d,\"datagrams_received\":%d,\"bytes_sent\":%d,"
          "\"bytes_received\":%d,\"frames_rejected\":%d,\"icmp_unreachable\":%d,\"max_loop_lag_us\":%d,"
          "\"local_health\":%d}}",
          absl::ToUnixMillis(now), s.datagrams_sent, s.datagrams_received, s.bytes_sent, s.bytes_received,
          s.frames_rejected, s.icmp_unreachable, absl::ToInt64Microseconds(s.max_loop_lag), s.local_health));
    }
  }
}
