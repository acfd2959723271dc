#include "common/net/socks_relay.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "common/net/ws_client.h"

namespace marketprism::common {

namespace {

constexpr int kHandshakeSeconds = 10;

// %XX in a URL's user info, as curl reads it for REST.
std::string PercentDecode(absl::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    int v = 0;
    if (in[i] == '%' && i + 2 < in.size() && absl::SimpleHexAtoi(in.substr(i + 1, 2), &v)) {
      out.push_back(static_cast<char>(v));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

void SetTimeouts(int fd, int seconds) {
  timeval tv{seconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

bool WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

bool ReadAll(int fd, uint8_t* out, size_t size) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = read(fd, out + done, size - done);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

std::string Answer(absl::string_view status, absl::string_view reason) {
  return absl::StrCat("HTTP/1.1 ", status, " ", reason, "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

// RFC 1928's reply codes.
std::string SocksReply(uint8_t rep) {
  switch (rep) {
    case 1: return "general SOCKS server failure";
    case 2: return "connection not allowed by ruleset";
    case 3: return "network unreachable";
    case 4: return "host unreachable";
    case 5: return "connection refused";
    case 6: return "TTL expired";
    case 7: return "command not supported";
    case 8: return "address type not supported";
    default: return absl::StrCat("reply code ", rep);
  }
}

}  // namespace

bool IsSocksProxy(absl::string_view url) {
  return absl::StartsWith(url, "socks5://") || absl::StartsWith(url, "socks5h://");
}

absl::StatusOr<SocksProxy> ParseSocksProxy(absl::string_view url) {
  const std::string shown = RedactProxy(url);
  SocksProxy p;
  absl::string_view rest = url;
  if (absl::ConsumePrefix(&rest, "socks5h://")) {
    p.remote_dns = true;
  } else if (!absl::ConsumePrefix(&rest, "socks5://")) {
    return absl::InvalidArgumentError(absl::StrCat("proxy ", shown, ": not socks5:// or socks5h://"));
  }
  rest = absl::StripSuffix(rest, "/");
  size_t at = rest.rfind('@');
  if (at != absl::string_view::npos) {
    absl::string_view info = rest.substr(0, at);
    size_t colon = info.find(':');
    p.user = PercentDecode(info.substr(0, colon));
    if (colon != absl::string_view::npos) p.password = PercentDecode(info.substr(colon + 1));
    if (p.user.empty() || p.user.size() > 255 || p.password.size() > 255) {
      return absl::InvalidArgumentError(
          absl::StrCat("proxy ", shown, ": SOCKS5 needs a user name of 1 to 255 bytes and a password of at most 255"));
    }
    rest = rest.substr(at + 1);
  }
  size_t colon = rest.rfind(':');
  if (rest.empty() || colon == absl::string_view::npos || colon == 0 ||
      !absl::SimpleAtoi(rest.substr(colon + 1), &p.port) || p.port <= 0 || p.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("proxy ", shown, ": needs host:port"));
  }
  p.host = std::string(rest.substr(0, colon));
  return p;
}

absl::StatusOr<std::unique_ptr<SocksRelay>> SocksRelay::Start(absl::string_view proxy_url) {
  absl::StatusOr<SocksProxy> proxy = ParseSocksProxy(proxy_url);
  if (!proxy.ok()) return proxy.status();
  auto r = std::unique_ptr<SocksRelay>(new SocksRelay(*std::move(proxy), RedactProxy(proxy_url)));
  r->listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (r->listener_ < 0) return absl::InternalError(absl::StrCat("SOCKS relay: socket: ", std::strerror(errno)));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (bind(r->listener_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(r->listener_, 64) != 0 ||
      getsockname(r->listener_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    return absl::InternalError(absl::StrCat("SOCKS relay for ", r->shown_, ": cannot listen: ", std::strerror(errno)));
  }
  r->port_ = ntohs(a.sin_port);
  r->acceptor_ = std::thread([raw = r.get()] { raw->Accept(); });
  return r;
}

SocksRelay::~SocksRelay() {
  stop_.store(true);
  if (listener_ >= 0) shutdown(listener_, SHUT_RDWR);
  if (acceptor_.joinable()) acceptor_.join();
  if (listener_ >= 0) close(listener_);
  std::vector<Worker> workers;
  {
    absl::MutexLock lock(&mu_);
    for (int fd : fds_) shutdown(fd, SHUT_RDWR);  // each tunnel closes its own as it ends
    workers.swap(workers_);
  }
  for (Worker& w : workers) w.thread.join();
}

std::string SocksRelay::address() const { return absl::StrCat("127.0.0.1:", port_); }

void SocksRelay::Accept() {
  while (!stop_.load()) {
    int client = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) {
      if (stop_.load()) return;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      poll(nullptr, 0, 10);  // EMFILE and the like: try again shortly
      continue;
    }
    absl::MutexLock lock(&mu_);
    // Tunnels that ended are joined here, so a relay that runs for weeks
    // of reconnects keeps only its open tunnels' threads.
    for (auto it = workers_.begin(); it != workers_.end();) {
      if (it->done->load()) {
        it->thread.join();
        it = workers_.erase(it);
      } else {
        ++it;
      }
    }
    fds_.push_back(client);
    auto done = std::make_shared<std::atomic<bool>>(false);
    workers_.push_back({std::thread([this, client, done] {
                          Serve(client);
                          Forget(client);
                          done->store(true);
                        }),
                        done});
  }
}

void SocksRelay::Serve(int client) {
  SetTimeouts(client, kHandshakeSeconds);
  // lws's request: "CONNECT host:port HTTP/1.1\r\n...\r\n\r\n".
  std::string head;
  char buf[16384];
  while (head.find("\r\n\r\n") == std::string::npos && head.size() < 8192) {
    ssize_t n = read(client, buf, sizeof(buf));
    if (n <= 0) return;
    head.append(buf, static_cast<size_t>(n));
  }
  size_t end = head.find("\r\n\r\n");
  std::vector<std::string> words = absl::StrSplit(head.substr(0, head.find("\r\n")), ' ');
  size_t colon = words.size() == 3 ? words[1].rfind(':') : std::string::npos;
  int port = 0;
  if (end == std::string::npos || words[0] != "CONNECT" || colon == std::string::npos ||
      !absl::SimpleAtoi(words[1].substr(colon + 1), &port) || port <= 0 || port > 65535) {
    WriteAll(client, Answer("400", "Bad Request"));
    return;
  }
  std::string host = words[1].substr(0, colon);
  std::string extra = head.substr(end + 4);  // bytes sent ahead of our answer

  // The tunnel leaves from the address the client came from: the egress IP
  // lws bound. 127.0.0.1 is an unbound client's, and binding it would keep
  // the tunnel from leaving the machine.
  sockaddr_in from{};
  socklen_t from_len = sizeof(from);
  bool bound = getpeername(client, reinterpret_cast<sockaddr*>(&from), &from_len) == 0 &&
               from.sin_family == AF_INET && from.sin_addr.s_addr != htonl(INADDR_LOOPBACK);
  from.sin_port = 0;
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  std::string why;
  int upstream = -1;
  if (int rc = getaddrinfo(proxy_.host.c_str(), std::to_string(proxy_.port).c_str(), &hints, &res); rc != 0) {
    why = absl::StrCat("cannot resolve the proxy: ", gai_strerror(rc));
  } else {
    upstream = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    SetTimeouts(upstream, kHandshakeSeconds);
    if ((bound && bind(upstream, reinterpret_cast<sockaddr*>(&from), sizeof(from)) != 0) ||
        connect(upstream, res->ai_addr, res->ai_addrlen) != 0) {
      why = absl::StrCat("cannot reach the proxy: ", std::strerror(errno));
    }
    freeaddrinfo(res);
  }
  if (upstream >= 0) {
    absl::MutexLock lock(&mu_);
    fds_.push_back(upstream);
  }
  if (why.empty()) why = Handshake(upstream, host, port);
  if (!why.empty()) {
    Log(LogLevel::kWarning, "socks", absl::StrCat("proxy ", shown_, " to ", words[1], ": ", why));
    WriteAll(client, Answer("502", absl::StrCat("SOCKS5 proxy ", shown_, ": ", why)));
    if (upstream >= 0) Forget(upstream);
    return;
  }
  SetTimeouts(client, 0);
  SetTimeouts(upstream, 0);
  if (!WriteAll(client, "HTTP/1.1 200 Connection established\r\n\r\n") ||
      (!extra.empty() && !WriteAll(upstream, extra))) {
    Forget(upstream);
    return;
  }
  pollfd fds[2] = {{client, POLLIN, 0}, {upstream, POLLIN, 0}};
  bool done = false;
  while (!done && !stop_.load()) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2 && !done; ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      done = n <= 0 || !WriteAll(fds[1 - i].fd, std::string(buf, static_cast<size_t>(n)));
    }
  }
  shutdown(client, SHUT_RDWR);
  Forget(upstream);
}

std::string SocksRelay::Handshake(int fd, const std::string& host, int port) {
  bool auth = !proxy_.user.empty();
  std::string hello = auth ? std::string("\x05\x02\x00\x02", 4) : std::string("\x05\x01\x00", 3);
  uint8_t reply[262];
  if (!WriteAll(fd, hello) || !ReadAll(fd, reply, 2)) return "the proxy closed the greeting";
  if (reply[0] != 5) return "not a SOCKS5 proxy";
  if (reply[1] == 0xFF || (reply[1] == 2 && !auth) || (reply[1] != 0 && reply[1] != 2)) {
    return auth ? "the proxy takes neither no authentication nor a user name and password"
                : "the proxy wants authentication (give user:pass@ in the proxy URL)";
  }
  if (reply[1] == 2) {
    std::string login = absl::StrCat(std::string(1, '\x01'), std::string(1, static_cast<char>(proxy_.user.size())),
                                     proxy_.user, std::string(1, static_cast<char>(proxy_.password.size())),
                                     proxy_.password);
    if (!WriteAll(fd, login) || !ReadAll(fd, reply, 2)) return "the proxy closed the login";
    if (reply[1] != 0) return "the proxy refused the user name and password";
  }
  std::string req("\x05\x01\x00", 3);
  if (proxy_.remote_dns) {
    if (host.empty() || host.size() > 255) return absl::StrCat("host name \"", host, "\" too long for SOCKS5");
    req += '\x03';
    req += static_cast<char>(host.size());
    req += host;
  } else {
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res); rc != 0) {
      return absl::StrCat("cannot resolve ", host, ": ", gai_strerror(rc), " (socks5h:// lets the proxy resolve it)");
    }
    in_addr a = reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr;
    freeaddrinfo(res);
    req += '\x01';
    req.append(reinterpret_cast<const char*>(&a), 4);
  }
  req += static_cast<char>((port >> 8) & 0xFF);
  req += static_cast<char>(port & 0xFF);
  if (!WriteAll(fd, req) || !ReadAll(fd, reply, 4)) return "the proxy closed the CONNECT";
  if (reply[1] != 0) return absl::StrCat("the proxy refused the CONNECT: ", SocksReply(reply[1]));
  // The bound address, by its type, and the port: read and dropped.
  size_t rest = 0;
  if (reply[3] == 1) {
    rest = 4 + 2;
  } else if (reply[3] == 4) {
    rest = 16 + 2;
  } else if (reply[3] == 3) {
    if (!ReadAll(fd, reply, 1)) return "the proxy closed the CONNECT";
    rest = reply[0] + 2u;
  } else {
    return absl::StrCat("the proxy answered with address type ", reply[3]);
  }
  if (!ReadAll(fd, reply, rest)) return "the proxy closed the CONNECT";
  return "";
}

void SocksRelay::Forget(int fd) {
  absl::MutexLock lock(&mu_);
  auto it = std::find(fds_.begin(), fds_.end(), fd);
  if (it == fds_.end()) return;
  fds_.erase(it);
  close(fd);
}

}  // namespace marketprism::common
