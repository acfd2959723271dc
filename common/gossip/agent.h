// File: common/gossip/agent.h
//
// The Linux driver of the gossip Core: one thread, one epoll loop.
//  * UDP socket (probes and gossip), with IP_RECVERR: an ICMP "port
//    unreachable" for a datagram we sent is read from the error queue and
//    handed to the Core (which confirms it over TCP before acting).
//  * TCP on the same port for sync, catch-up and fallback pings: one sealed,
//    length-prefixed request frame, one response frame, close.
//  * Every datagram and stream frame is sealed (wire.h) under the keyring;
//    a key file is re-read when it changes (rotation while running).
//  * Event-loop lag: how late the loop woke for the Core's timers is
//    measured (the Core turns lateness into local health) and exported.
// Thread-safe: the public methods may be called from any thread.
#pragma once

#include <netinet/in.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/gossip/core.h"
#include "common/gossip/wire.h"

namespace marketprism::common::gossip {

struct AgentOptions {
  GossipOptions gossip;           // gossip.addr: the "ip:port" to bind and be dialled at
  std::string cluster = "marketprism";
  std::vector<std::string> join;  // seeds
  std::string key_file;           // empty: unkeyed (a loud warning at start)
  std::vector<std::string> keys;  // or keys given directly (primary first)
  absl::Duration stream_timeout = absl::Seconds(2);
  // Called on the loop thread for every membership event; keep it short.
  std::function<void(const MemberEvent&)> on_event;
};

struct AgentStats {
  uint64_t datagrams_sent = 0, datagrams_received = 0;
  uint64_t bytes_sent = 0, bytes_received = 0;  // UDP payload + TCP frames
  uint64_t frames_rejected = 0;                 // failed to open (key, cluster, replay...)
  uint64_t icmp_unreachable = 0;
  absl::Duration max_loop_lag = absl::ZeroDuration();
  int local_health = 0;
};

class GossipAgent {
 public:
  static absl::StatusOr<std::unique_ptr<GossipAgent>> Start(AgentOptions options);
  ~GossipAgent();

  MemberId self_id() const { return self_; }
  // The address bound (the port picked, if 0 was asked).
  const std::string& addr() const { return options_.gossip.addr; }
  void SetRecord(const std::string& key, std::string value, bool urgent = true);
  // Announces the leave and gives it `grace` to go out; the loop keeps running.
  void Leave(absl::Duration grace = absl::Milliseconds(300));
  std::vector<MemberView> Members();
  AgentStats Stats();
  // Re-reads the key file now (also done when its modification time changes).
  absl::Status ReloadKeys();
  void Stop();

 private:
  struct Conn;
  GossipAgent(AgentOptions options, MemberId self, Keyring ring);
  absl::Status Open();
  void Loop();
  void Drain() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendDatagram(const std::string& addr, const v1::GossipPacket& p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartStream(uint64_t id, const std::string& addr, const v1::StreamRequest& req)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReadUdp() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReadErrors() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Accept() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnConn(Conn* c, uint32_t events) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CloseConn(Conn* c, bool refused) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExpireConns(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeReloadKeys(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Wake();

  AgentOptions options_;
  MemberId self_;
  absl::Mutex mu_;
  Core core_ ABSL_GUARDED_BY(mu_);
  Keyring ring_ ABSL_GUARDED_BY(mu_);
  Sealer sealer_ ABSL_GUARDED_BY(mu_);
  Opener opener_ ABSL_GUARDED_BY(mu_);
  AgentStats stats_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Conn>> conns_ ABSL_GUARDED_BY(mu_);
  int64_t key_mtime_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time next_key_check_ ABSL_GUARDED_BY(mu_);
  int epfd_ = -1, udp_ = -1, tcp_ = -1, wake_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// "ip:port" <-> sockaddr, IPv4.
bool ParseHostPort(const std::string& s, sockaddr_in* out);

}  // namespace marketprism::common::gossip
