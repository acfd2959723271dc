#include "tests/testing/tunnel_proxy.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace marketprism::testing {

absl::StatusOr<std::unique_ptr<TunnelProxy>> TunnelProxy::Start(std::string socks_login) {
  auto p = std::unique_ptr<TunnelProxy>(new TunnelProxy());
  p->socks_login_ = std::move(socks_login);
  p->listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);  // not inherited by the cluster's processes
  if (p->listener_ < 0) return absl::InternalError(absl::StrCat("tunnel proxy: socket: ", std::strerror(errno)));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (bind(p->listener_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(p->listener_, 64) != 0 ||
      getsockname(p->listener_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    return absl::InternalError(absl::StrCat("tunnel proxy: cannot listen: ", std::strerror(errno)));
  }
  p->port_ = ntohs(a.sin_port);
  p->acceptor_ = std::thread([raw = p.get()] { raw->Accept(); });
  return p;
}

TunnelProxy::~TunnelProxy() {
  stop_.store(true);
  if (listener_ >= 0) shutdown(listener_, SHUT_RDWR);
  if (acceptor_.joinable()) acceptor_.join();
  if (listener_ >= 0) close(listener_);
  std::vector<std::thread> workers;
  {
    absl::MutexLock lock(&mu_);
    for (int fd : fds_) shutdown(fd, SHUT_RDWR);  // each tunnel closes its own as it ends
    workers.swap(workers_);
  }
  for (std::thread& t : workers) t.join();
}

std::vector<TunnelProxy::Tunnel> TunnelProxy::tunnels() {
  absl::MutexLock lock(&mu_);
  return tunnels_;
}

void TunnelProxy::Accept() {
  while (!stop_.load()) {
    sockaddr_in from{};
    socklen_t len = sizeof(from);
    int client = accept4(listener_, reinterpret_cast<sockaddr*>(&from), &len, SOCK_CLOEXEC);
    if (client < 0) {
      if (stop_.load()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // EINTR, ECONNABORTED, EMFILE...: it stays
      continue;
    }
    char ip[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, &from.sin_addr, ip, sizeof(ip));
    absl::MutexLock lock(&mu_);
    tunnels_.push_back({ip, "", ""});
    fds_.push_back(client);
    size_t index = tunnels_.size() - 1;
    workers_.emplace_back([this, client, index] {
      Serve(client, index);
      Forget(client);
    });
  }
}

namespace {

bool ReadExactly(int fd, uint8_t* out, size_t n) {
  for (size_t done = 0; done < n;) {
    ssize_t got = read(fd, out + done, n - done);
    if (got <= 0) return false;
    done += static_cast<size_t>(got);
  }
  return true;
}

int ConnectTo(const std::string& host, const std::string& port) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  int fd = -1;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) == 0) {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
      close(fd);
      fd = -1;
    }
    freeaddrinfo(res);
  }
  return fd;
}

}  // namespace

int TunnelProxy::ServeSocks(int client, size_t index) {
  uint8_t b[512];
  if (!ReadExactly(client, b, 2) || !ReadExactly(client, b + 2, b[1])) return -1;
  bool want_login = !socks_login_.empty();
  uint8_t method = 0xFF;
  for (int i = 0; i < b[1]; ++i) {
    if (b[2 + i] == (want_login ? 2 : 0)) method = want_login ? 2 : 0;
  }
  uint8_t choice[2] = {5, method};
  if (write(client, choice, 2) != 2 || method == 0xFF) return -1;
  if (want_login) {
    if (!ReadExactly(client, b, 2) || !ReadExactly(client, b + 2, b[1] + 1u)) return -1;
    size_t ulen = b[1];
    std::string user(reinterpret_cast<char*>(b + 2), ulen);
    size_t plen = b[2 + ulen];
    if (!ReadExactly(client, b, plen)) return -1;
    std::string pass(reinterpret_cast<char*>(b), plen);
    uint8_t status[2] = {1, static_cast<uint8_t>(absl::StrCat(user, ":", pass) == socks_login_ ? 0 : 1)};
    if (write(client, status, 2) != 2 || status[1] != 0) return -1;
  }
  if (!ReadExactly(client, b, 4) || b[1] != 1) return -1;
  std::string host;
  if (b[3] == 1) {
    if (!ReadExactly(client, b, 4)) return -1;
    char ip[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, b, ip, sizeof(ip));
    host = ip;
  } else if (b[3] == 3) {
    if (!ReadExactly(client, b, 1)) return -1;
    size_t len = b[0];
    if (!ReadExactly(client, b, len)) return -1;
    host.assign(reinterpret_cast<char*>(b), len);
  } else {
    return -1;
  }
  if (!ReadExactly(client, b, 2)) return -1;
  std::string port = absl::StrCat(b[0] * 256 + b[1]);
  {
    absl::MutexLock lock(&mu_);
    tunnels_[index].target = absl::StrCat(host, ":", port);
    tunnels_[index].method = "SOCKS5";
  }
  int upstream = ConnectTo(host, port);
  uint8_t reply[10] = {5, static_cast<uint8_t>(upstream < 0 ? 5 : 0), 0, 1, 0, 0, 0, 0, 0, 0};
  if (write(client, reply, sizeof(reply)) != sizeof(reply) && upstream >= 0) {
    close(upstream);
    return -1;
  }
  return upstream;
}

void TunnelProxy::Pump(int client, int upstream) {
  char buf[16384];
  pollfd fds[2] = {{client, POLLIN, 0}, {upstream, POLLIN, 0}};
  while (!stop_.load()) {
    if (poll(fds, 2, 200) < 0) break;
    bool done = false;
    for (int i = 0; i < 2; ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n <= 0 || write(fds[1 - i].fd, buf, static_cast<size_t>(n)) != n) done = true;
    }
    if (done) break;
  }
}

void TunnelProxy::Serve(int client, size_t index) {
  uint8_t first = 0;
  if (recv(client, &first, 1, MSG_PEEK) != 1) return;
  if (first == 5) {
    int upstream = ServeSocks(client, index);
    if (upstream < 0) return;
    {
      absl::MutexLock lock(&mu_);
      fds_.push_back(upstream);
    }
    Pump(client, upstream);
    Forget(upstream);
    return;
  }
  // The request head: "CONNECT host:port HTTP/1.1\r\n...\r\n\r\n".
  std::string head;
  char buf[16384];
  while (!absl::StrContains(head, "\r\n\r\n") && head.size() < 8192) {
    ssize_t n = read(client, buf, sizeof(buf));
    if (n <= 0) return;
    head.append(buf, static_cast<size_t>(n));
  }
  size_t end = head.find("\r\n\r\n");
  if (end == std::string::npos) {  // a head past 8 KiB
    const char kBad[] = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n";
    (void)!write(client, kBad, sizeof(kBad) - 1);
    return;
  }
  std::vector<std::string> words = absl::StrSplit(head.substr(0, head.find("\r\n")), ' ');
  std::string extra = head.substr(end + 4);  // bytes sent ahead of our answer
  // A plain http:// request comes in absolute form ("GET http://host:port/path"):
  // it goes on in origin form, with "Connection: close" so that each
  // request has a tunnel of its own.
  bool forward = words.size() == 3 && words[0] != "CONNECT" && absl::StartsWith(words[1], "http://");
  std::string request;
  if (forward) {
    std::string target = words[1].substr(strlen("http://"));
    size_t slash = target.find('/');
    std::string path = slash == std::string::npos ? "/" : target.substr(slash);
    words[1] = target.substr(0, slash);
    request = absl::StrCat(words[0], " ", path, " ", words[2], "\r\n");
    std::vector<std::string> lines = absl::StrSplit(head.substr(0, end), "\r\n");
    for (size_t i = 1; i < lines.size(); ++i) {
      std::string lower = absl::AsciiStrToLower(lines[i]);
      if (absl::StartsWith(lower, "connection:") || absl::StartsWith(lower, "proxy-connection:")) continue;
      absl::StrAppend(&request, lines[i], "\r\n");
    }
    absl::StrAppend(&request, "Connection: close\r\n\r\n", extra);
    if (words[1].find(':') == std::string::npos) words[1] += ":80";
  }
  std::vector<std::string> hp = words.size() == 3 ? absl::StrSplit(words[1], ':') : std::vector<std::string>{};
  int port = 0;
  if (words.size() != 3 || (words[0] != "CONNECT" && !forward) || hp.size() != 2 || !absl::SimpleAtoi(hp[1], &port)) {
    const char kBad[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    (void)!write(client, kBad, sizeof(kBad) - 1);
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    tunnels_[index].target = words[1];
    tunnels_[index].method = words[0];
  }
  int upstream = ConnectTo(hp[0], hp[1]);
  if (upstream < 0) {
    const char kBad[] = "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n";
    (void)!write(client, kBad, sizeof(kBad) - 1);
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    fds_.push_back(upstream);
  }
  if (forward) {
    (void)!write(upstream, request.data(), request.size());
  } else {
    const char kOk[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    (void)!write(client, kOk, sizeof(kOk) - 1);
    if (!extra.empty()) (void)!write(upstream, extra.data(), extra.size());
  }
  Pump(client, upstream);
  Forget(upstream);
}

void TunnelProxy::Forget(int fd) {
  absl::MutexLock lock(&mu_);
  auto it = std::find(fds_.begin(), fds_.end(), fd);
  if (it == fds_.end()) return;
  fds_.erase(it);
  close(fd);
}

}  // namespace marketprism::testing
