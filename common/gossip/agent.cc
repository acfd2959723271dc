// File: common/gossip/agent.cc
#include "common/gossip/agent.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log.h"

namespace marketprism::common::gossip {
namespace {

constexpr uint32_t kMaxStreamFrame = 16 << 20;  // a sync of a very large cluster fits

std::string AddrString(const sockaddr_in& a) {
  char ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a.sin_addr, ip, sizeof(ip));
  return absl::StrCat(ip, ":", ntohs(a.sin_port));
}

uint64_t RandomU64() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

int64_t MtimeOf(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return -1;
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

}  // namespace

bool ParseHostPort(const std::string& s, sockaddr_in* out) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos) return false;
  uint32_t port = 0;
  if (!absl::SimpleAtoi(s.substr(colon + 1), &port) || port > 65535) return false;
  std::memset(out, 0, sizeof(*out));
  out->sin_family = AF_INET;
  out->sin_port = htons(static_cast<uint16_t>(port));
  return inet_pton(AF_INET, s.substr(0, colon).c_str(), &out->sin_addr) == 1;
}

struct GossipAgent::Conn {
  int fd = -1;
  bool outgoing = false;
  bool connecting = false;
  uint64_t stream_id = 0;
  std::string peer;
  std::string wbuf;
  size_t woff = 0;
  std::string rbuf;
  bool answered = false;  // incoming: the response is queued
  absl::Time deadline;
};

absl::StatusOr<std::unique_ptr<GossipAgent>> GossipAgent::Start(AgentOptions options) {
  sockaddr_in probe{};
  if (!ParseHostPort(options.gossip.addr, &probe)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--gossip must be IPv4 ADDR:PORT, got \"", options.gossip.addr, "\""));
  }
  for (const std::string& j : options.join) {
    if (!ParseHostPort(j, &probe) || probe.sin_port == 0) {
      return absl::InvalidArgumentError(absl::StrCat("--join entry must be IPv4 ADDR:PORT, got \"", j, "\""));
    }
  }
  Keyring ring = Keyring::Unkeyed(options.cluster);
  if (!options.key_file.empty()) {
    absl::StatusOr<Keyring> r = Keyring::FromFile(options.key_file);
    if (!r.ok()) return r.status();
    ring = *r;
  } else if (!options.keys.empty()) {
    absl::StatusOr<Keyring> r = Keyring::FromStrings(options.keys);
    if (!r.ok()) return r.status();
    ring = *r;
  } else {
    Log(LogLevel::kWarning, "gossip",
        "*** NO GOSSIP KEY CONFIGURED: membership traffic is sealed with a key derived from the cluster "
        "name only; anyone who can reach the gossip port and knows the name can join or forge members. "
        "Give --gossip-key-file for production. ***");
  }
  options.gossip.max_payload = kMaxDatagramPayload;
  // Bind UDP and TCP to the same port (with port 0: a free one, picked by
  // UDP, retried if TCP has it taken).
  sockaddr_in addr{};
  ParseHostPort(options.gossip.addr, &addr);
  bool any_port = addr.sin_port == 0;
  int udp = -1, tcp = -1;
  for (int attempt = 0; attempt < 50 && tcp < 0; ++attempt) {
    auto fail = [&](const char* what) {
      absl::Status s = absl::UnavailableError(
          absl::StrCat("gossip ", what, " on ", options.gossip.addr, ": ", std::strerror(errno)));
      if (udp >= 0) close(udp);
      if (tcp >= 0) close(tcp);
      udp = tcp = -1;
      return s;
    };
    udp = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (bind(udp, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return fail("cannot bind UDP");
    sockaddr_in bound{};
    socklen_t len = sizeof(bound);
    getsockname(udp, reinterpret_cast<sockaddr*>(&bound), &len);
    tcp = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(tcp, reinterpret_cast<sockaddr*>(&bound), sizeof(bound)) != 0 || listen(tcp, 128) != 0) {
      absl::Status s = fail("cannot bind TCP");
      if (!any_port) return s;
      continue;
    }
    options.gossip.addr = AddrString(bound);
  }
  if (tcp < 0) return absl::UnavailableError("gossip: no free port for both UDP and TCP");
  MemberId self = RandomU64() | 1;
  std::unique_ptr<GossipAgent> agent(new GossipAgent(std::move(options), self, std::move(ring)));
  agent->udp_ = udp;
  agent->tcp_ = tcp;
  if (absl::Status s = agent->Open(); !s.ok()) return s;
  agent->thread_ = std::thread([a = agent.get()] { a->Loop(); });
  return agent;
}

GossipAgent::GossipAgent(AgentOptions options, MemberId self, Keyring ring)
    : options_(std::move(options)),
      self_(self),
      core_(options_.gossip, self, absl::Now(), RandomU64()),
      ring_(std::move(ring)),
      sealer_(options_.cluster, static_cast<uint32_t>(RandomU64())),
      opener_(options_.cluster) {
  if (!options_.key_file.empty()) key_mtime_ = MtimeOf(options_.key_file);
}

GossipAgent::~GossipAgent() { Stop(); }

absl::Status GossipAgent::Open() {
  int one = 1;
  setsockopt(udp_, SOL_IP, IP_RECVERR, &one, sizeof(one));
  int buf = 4 << 20;
  setsockopt(udp_, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  for (int fd : {udp_, tcp_, wake_}) {
    epoll_event ev{};
    ev.events = EPOLLIN | (fd == udp_ ? EPOLLERR : 0);
    ev.data.fd = fd;
    epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
  }
  absl::MutexLock l(&mu_);
  if (!options_.join.empty()) core_.Join(absl::Now(), options_.join);
  Drain();
  return absl::OkStatus();
}

void GossipAgent::Wake() {
  uint64_t one = 1;
  if (wake_ >= 0) (void)!write(wake_, &one, sizeof(one));
}

void GossipAgent::Stop() {
  if (stop_.exchange(true)) return;
  Wake();
  if (thread_.joinable()) thread_.join();
  absl::MutexLock l(&mu_);
  for (auto& c : conns_) close(c->fd);
  conns_.clear();
  for (int fd : {udp_, tcp_, wake_, epfd_}) {
    if (fd >= 0) close(fd);
  }
  udp_ = tcp_ = wake_ = epfd_ = -1;
}

void GossipAgent::SetRecord(const std::string& key, std::string value, bool urgent) {
  absl::MutexLock l(&mu_);
  core_.SetRecord(absl::Now(), key, std::move(value), urgent);
  Drain();
  Wake();
}

void GossipAgent::Leave(absl::Duration grace) {
  {
    absl::MutexLock l(&mu_);
    core_.Leave(absl::Now());
    Drain();
  }
  Wake();
  absl::SleepFor(grace);
}

std::vector<MemberView> GossipAgent::Members() {
  absl::MutexLock l(&mu_);
  return core_.Members();
}

AgentStats GossipAgent::Stats() {
  absl::MutexLock l(&mu_);
  AgentStats s = stats_;
  s.local_health = core_.local_health();
  return s;
}

absl::Status GossipAgent::ReloadKeys() {
  absl::MutexLock l(&mu_);
  if (options_.key_file.empty()) return absl::FailedPreconditionError("no gossip key file configured");
  absl::StatusOr<Keyring> r = Keyring::FromFile(options_.key_file);
  if (!r.ok()) {
    Log(LogLevel::kError, "gossip", absl::StrCat("key file not reloaded, keeping the old keys: ", r.status().message()));
    return r.status();
  }
  ring_ = *r;
  key_mtime_ = MtimeOf(options_.key_file);
  Log(LogLevel::kInfo, "gossip",
      absl::StrFormat("keyring reloaded: %d key(s), primary %08x", ring_.size(), ring_.primary_id()));
  return absl::OkStatus();
}

void GossipAgent::MaybeReloadKeys(absl::Time now) {
  if (options_.key_file.empty() || now < next_key_check_) return;
  next_key_check_ = now + absl::Seconds(1);
  int64_t m = MtimeOf(options_.key_file);
  if (m == key_mtime_ || m < 0) return;
  key_mtime_ = m;
  absl::StatusOr<Keyring> r = Keyring::FromFile(options_.key_file);
  if (!r.ok()) {
    Log(LogLevel::kError, "gossip", absl::StrCat("key file changed but is bad, keeping the old keys: ", r.status().message()));
    return;
  }
  ring_ = *r;
  Log(LogLevel::kInfo, "gossip",
      absl::StrFormat("key file changed: %d key(s), primary %08x", ring_.size(), ring_.primary_id()));
}

void GossipAgent::Loop() {
  constexpr int kMaxEvents = 64;
  epoll_event events[kMaxEvents];
  while (!stop_.load()) {
    absl::Time wake_at;
    {
      absl::MutexLock l(&mu_);
      wake_at = core_.NextWake();
      for (const auto& c : conns_) wake_at = std::min(wake_at, c->deadline);
      if (!options_.key_file.empty()) wake_at = std::min(wake_at, next_key_check_);
    }
    absl::Time now = absl::Now();
    int timeout_ms = wake_at <= now ? 0 : static_cast<int>(std::min<int64_t>(1000, absl::ToInt64Milliseconds(wake_at - now) + 1));
    int n = epoll_wait(epfd_, events, kMaxEvents, timeout_ms);
    absl::MutexLock l(&mu_);
    now = absl::Now();
    if (wake_at != absl::InfiniteFuture() && now > wake_at) {
      stats_.max_loop_lag = std::max(stats_.max_loop_lag, now - wake_at);
    }
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == wake_) {
        uint64_t v;
        (void)!read(wake_, &v, sizeof(v));
      } else if (fd == udp_) {
        if (events[i].events & EPOLLERR) ReadErrors();
        if (events[i].events & EPOLLIN) ReadUdp();
      } else if (fd == tcp_) {
        Accept();
      } else {
        for (auto& c : conns_) {
          if (c->fd == fd) {
            OnConn(c.get(), events[i].events);
            break;
          }
        }
      }
    }
    now = absl::Now();
    ExpireConns(now);
    MaybeReloadKeys(now);
    if (now >= core_.NextWake()) core_.Tick(now);
    Drain();
  }
}

void GossipAgent::Drain() {
  Outbox out = core_.TakeOutbox();
  for (const Outbox::Packet& p : out.packets) SendDatagram(p.addr, p.ToProto());
  for (const Outbox::Stream& s : out.streams) StartStream(s.id, s.addr, s.request);
  if (options_.on_event) {
    for (const MemberEvent& e : out.events) options_.on_event(e);
  }
}

void GossipAgent::SendDatagram(const std::string& addr, const v1::GossipPacket& p) {
  sockaddr_in to{};
  if (!ParseHostPort(addr, &to)) return;
  std::string payload = p.SerializeAsString();
  absl::StatusOr<std::string> frame = sealer_.Seal(ring_, FrameKind::kDatagram, payload, absl::Now());
  if (!frame.ok()) return;
  ssize_t sent = sendto(udp_, frame->data(), frame->size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to));
  if (sent > 0) {
    ++stats_.datagrams_sent;
    stats_.bytes_sent += static_cast<uint64_t>(sent);
  } else if (errno == ECONNREFUSED) {
    // A pending ICMP error surfaced on this send; the error queue has it.
    ReadErrors();
  }
}

void GossipAgent::ReadUdp() {
  char buf[2048];
  for (int i = 0; i < 256; ++i) {
    sockaddr_in from{};
    socklen_t len = sizeof(from);
    ssize_t n = recvfrom(udp_, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n < 0) {
      if (errno == ECONNREFUSED) {
        ReadErrors();
        continue;
      }
      return;
    }
    ++stats_.datagrams_received;
    stats_.bytes_received += static_cast<uint64_t>(n);
    absl::Time now = absl::Now();
    absl::StatusOr<OpenedFrame> f = opener_.Open(ring_, absl::string_view(buf, static_cast<size_t>(n)), now);
    if (!f.ok() || f->kind != FrameKind::kDatagram) {
      if (stats_.frames_rejected++ % 1000 == 0) {
        Log(LogLevel::kWarning, "gossip",
            absl::StrCat("dropped a datagram from ", AddrString(from), ": ",
                         f.ok() ? "not a datagram frame" : f.status().message()));
      }
      continue;
    }
    v1::GossipPacket p;
    if (!p.ParseFromString(f->payload)) {
      ++stats_.frames_rejected;
      continue;
    }
    core_.HandlePacket(now, AddrString(from), std::move(p));
    Drain();
  }
}

void GossipAgent::ReadErrors() {
  for (int i = 0; i < 64; ++i) {
    char data[2048], control[512];
    sockaddr_in to{};
    iovec iov{data, sizeof(data)};
    msghdr msg{};
    msg.msg_name = &to;
    msg.msg_namelen = sizeof(to);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    if (recvmsg(udp_, &msg, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) return;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_IP || c->cmsg_type != IP_RECVERR) continue;
      const auto* ee = reinterpret_cast<const sock_extended_err*>(CMSG_DATA(c));
      bool unreachable = ee->ee_origin == SO_EE_ORIGIN_ICMP && ee->ee_type == ICMP_DEST_UNREACH &&
                         (ee->ee_code == ICMP_PORT_UNREACH || ee->ee_code == ICMP_HOST_UNREACH ||
                          ee->ee_code == ICMP_PROT_UNREACH);
      if (ee->ee_origin == SO_EE_ORIGIN_LOCAL && ee->ee_errno == ECONNREFUSED) unreachable = true;
      if (unreachable && msg.msg_namelen >= sizeof(sockaddr_in)) {
        ++stats_.icmp_unreachable;
        core_.HandleUnreachable(absl::Now(), AddrString(to));
        Drain();
      }
    }
  }
}

void GossipAgent::StartStream(uint64_t id, const std::string& addr, const v1::StreamRequest& req) {
  sockaddr_in to{};
  if (!ParseHostPort(addr, &to)) {
    core_.HandleStreamResult(absl::Now(), id, StreamResult{});
    return;
  }
  absl::StatusOr<std::string> frame =
      sealer_.Seal(ring_, FrameKind::kStreamRequest, req.SerializeAsString(), absl::Now());
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  // Dial from our own address (the node's egress IP, where it has one).
  sockaddr_in self{};
  ParseHostPort(options_.gossip.addr, &self);
  self.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&self), sizeof(self));
  auto c = std::make_unique<Conn>();
  c->fd = fd;
  c->outgoing = true;
  c->stream_id = id;
  c->peer = addr;
  c->deadline = absl::Now() + options_.stream_timeout;
  uint32_t len = htonl(static_cast<uint32_t>(frame->size()));
  c->wbuf.assign(reinterpret_cast<const char*>(&len), 4);
  c->wbuf += *frame;
  int r = connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to));
  if (r != 0 && errno != EINPROGRESS) {
    bool refused = errno == ECONNREFUSED;
    close(fd);
    core_.HandleStreamResult(absl::Now(), id, StreamResult{std::nullopt, refused});
    return;
  }
  c->connecting = r != 0;
  epoll_event ev{};
  ev.events = EPOLLOUT | EPOLLIN;
  ev.data.fd = fd;
  epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
  conns_.push_back(std::move(c));
}

void GossipAgent::Accept() {
  for (int i = 0; i < 64; ++i) {
    sockaddr_in from{};
    socklen_t len = sizeof(from);
    int fd = accept4(tcp_, reinterpret_cast<sockaddr*>(&from), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    auto c = std::make_unique<Conn>();
    c->fd = fd;
    c->peer = AddrString(from);
    c->deadline = absl::Now() + options_.stream_timeout;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
    conns_.push_back(std::move(c));
  }
}

void GossipAgent::OnConn(Conn* c, uint32_t events) {
  if (c->outgoing && c->connecting) {
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      CloseConn(c, err == ECONNREFUSED);
      return;
    }
    if (!(events & EPOLLOUT)) return;
    c->connecting = false;
  }
  // Write what is pending.
  while (c->woff < c->wbuf.size()) {
    ssize_t n = send(c->fd, c->wbuf.data() + c->woff, c->wbuf.size() - c->woff, MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      CloseConn(c, !c->answered && errno == ECONNREFUSED);
      return;
    }
    c->woff += static_cast<size_t>(n);
    stats_.bytes_sent += static_cast<uint64_t>(n);
  }
  if (!c->outgoing && c->answered && c->woff == c->wbuf.size()) {
    CloseConn(c, false);
    return;
  }
  epoll_event ev{};
  ev.events = EPOLLIN | (c->woff < c->wbuf.size() ? EPOLLOUT : 0);
  ev.data.fd = c->fd;
  epoll_ctl(epfd_, EPOLL_CTL_MOD, c->fd, &ev);
  if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
  // Read one length-prefixed frame.
  char buf[65536];
  for (;;) {
    ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
    if (n > 0) {
      c->rbuf.append(buf, static_cast<size_t>(n));
      stats_.bytes_received += static_cast<uint64_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0 && errno == ECONNREFUSED) {
      CloseConn(c, true);
      return;
    }
    break;  // closed by the peer
  }
  if (c->rbuf.size() < 4) {
    if (events & (EPOLLHUP | EPOLLRDHUP)) CloseConn(c, false);
    return;
  }
  uint32_t len;
  std::memcpy(&len, c->rbuf.data(), 4);
  len = ntohl(len);
  if (len > kMaxStreamFrame) {
    Log(LogLevel::kWarning, "gossip", absl::StrCat("stream frame of ", len, " bytes from ", c->peer, " refused"));
    CloseConn(c, false);
    return;
  }
  if (c->rbuf.size() < 4 + len || c->answered) return;
  absl::Time now = absl::Now();
  absl::StatusOr<OpenedFrame> f = opener_.Open(ring_, absl::string_view(c->rbuf).substr(4, len), now);
  if (!f.ok()) {
    ++stats_.frames_rejected;
    Log(LogLevel::kWarning, "gossip", absl::StrCat("dropped a stream frame from ", c->peer, ": ", f.status().message()));
    CloseConn(c, false);
    return;
  }
  if (c->outgoing) {
    v1::StreamResponse resp;
    if (f->kind != FrameKind::kStreamResponse || !resp.ParseFromString(f->payload)) {
      CloseConn(c, false);
      return;
    }
    uint64_t id = c->stream_id;
    c->stream_id = 0;
    CloseConn(c, false);
    core_.HandleStreamResult(now, id, StreamResult{std::move(resp), false});
    return;
  }
  v1::StreamRequest req;
  if (f->kind != FrameKind::kStreamRequest || !req.ParseFromString(f->payload)) {
    CloseConn(c, false);
    return;
  }
  v1::StreamResponse resp = core_.HandleStream(now, c->peer, req);
  absl::StatusOr<std::string> out = sealer_.Seal(ring_, FrameKind::kStreamResponse, resp.SerializeAsString(), now);
  uint32_t olen = htonl(static_cast<uint32_t>(out->size()));
  c->wbuf.assign(reinterpret_cast<const char*>(&olen), 4);
  c->wbuf += *out;
  c->woff = 0;
  c->answered = true;
  OnConn(c, EPOLLOUT);
}

void GossipAgent::CloseConn(Conn* c, bool refused) {
  uint64_t id = c->outgoing ? c->stream_id : 0;
  epoll_ctl(epfd_, EPOLL_CTL_DEL, c->fd, nullptr);
  close(c->fd);
  for (auto it = conns_.begin(); it != conns_.end(); ++it) {
    if (it->get() == c) {
      conns_.erase(it);
      break;
    }
  }
  if (id != 0) core_.HandleStreamResult(absl::Now(), id, StreamResult{std::nullopt, refused});
}

void GossipAgent::ExpireConns(absl::Time now) {
  std::vector<Conn*> late;
  for (auto& c : conns_) {
    if (now >= c->deadline) late.push_back(c.get());
  }
  for (Conn* c : late) CloseConn(c, false);
}

}  // namespace marketprism::common::gossip
