#include "tests/bench/http_load.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace marketprism::bench {

namespace {

using Clock = std::chrono::steady_clock;

struct Conn {
  int fd = -1;
  std::string out;
  size_t out_off = 0;
  std::string in;
  std::deque<Clock::time_point> sent;  // one per outstanding request
  size_t next_path = 0;
};

int Connect(const std::string& source, const std::string& host, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_in local{};
  local.sin_family = AF_INET;
  inet_pton(AF_INET, source.c_str(), &local.sin_addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) {
    close(fd);
    return -1;
  }
  sockaddr_in remote{};
  remote.sin_family = AF_INET;
  remote.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, host.c_str(), &remote.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&remote), sizeof(remote)) != 0 &&
      errno != EINPROGRESS) {
    close(fd);
    return -1;
  }
  return fd;
}

// Parses one complete response off the front of `in`; returns its status, or
// 0 if the response is not complete yet.
int TakeResponse(std::string& in) {
  size_t end = in.find("\r\n\r\n");
  if (end == std::string::npos) return 0;
  absl::string_view head(in.data(), end);
  int status = 0;
  if (head.size() < 12 || !absl::SimpleAtoi(head.substr(9, 3), &status)) return -1;
  size_t length = 0;
  size_t pos = 0;
  while ((pos = head.find("\r\n", pos)) != absl::string_view::npos) {
    pos += 2;
    absl::string_view line = head.substr(pos, head.find("\r\n", pos) - pos);
    if (line.size() > 15 && absl::EqualsIgnoreCase(line.substr(0, 15), "content-length:")) {
      (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(15)), &length);
    }
  }
  if (in.size() < end + 4 + length) return 0;
  in.erase(0, end + 4 + length);
  return status;
}

}  // namespace

double Percentile(std::vector<double>& sample, double p) {
  if (sample.empty()) return 0;
  std::sort(sample.begin(), sample.end());
  size_t i = static_cast<size_t>(p / 100.0 * static_cast<double>(sample.size() - 1) + 0.5);
  return sample[std::min(i, sample.size() - 1)];
}

absl::StatusOr<HttpLoadResult> RunHttpLoad(const HttpLoadOptions& o) {
  if (o.paths.empty()) return absl::InvalidArgumentError("no paths to request");
  int ep = epoll_create1(0);
  std::vector<Conn> conns(static_cast<size_t>(o.connections));
  std::vector<std::string> requests;
  for (const std::string& p : o.paths) {
    requests.push_back(absl::StrCat("GET ", p, " HTTP/1.1\r\nHost: ", o.host, "\r\n\r\n"));
  }
  auto queue = [&](Conn& c) {
    c.out += requests[c.next_path++ % requests.size()];
    c.sent.push_back(Clock::now());
  };
  for (size_t i = 0; i < conns.size(); ++i) {
    Conn& c = conns[i];
    c.next_path = i;
    c.fd = Connect(o.source_ips[i % o.source_ips.size()], o.host, o.port);
    if (c.fd < 0) {
      close(ep);
      return absl::UnavailableError(absl::StrCat("cannot connect from ",
                                                 o.source_ips[i % o.source_ips.size()]));
    }
    for (int k = 0; k < o.pipeline; ++k) queue(c);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.u64 = i;
    epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
  }
  HttpLoadResult result;
  std::vector<double> latencies;
  latencies.reserve(1 << 20);
  Clock::time_point start = Clock::now();
  Clock::time_point measure_from = start + absl::ToChronoNanoseconds(o.warmup);
  Clock::time_point stop = measure_from + absl::ToChronoNanoseconds(o.duration);
  epoll_event events[256];
  char buf[65536];
  while (true) {
    Clock::time_point now = Clock::now();
    if (now >= stop) break;
    int n = epoll_wait(ep, events, 256, 100);
    for (int e = 0; e < n; ++e) {
      Conn& c = conns[events[e].data.u64];
      if (c.fd < 0) continue;
      if (events[e].events & (EPOLLERR | EPOLLHUP)) {
        ++result.connection_errors;
        close(c.fd);
        c.fd = -1;
        continue;
      }
      if (events[e].events & EPOLLIN) {
        while (true) {
          ssize_t r = read(c.fd, buf, sizeof(buf));
          if (r > 0) {
            c.in.append(buf, static_cast<size_t>(r));
            continue;
          }
          if (r == 0 || errno != EAGAIN) {
            ++result.connection_errors;
            close(c.fd);
            c.fd = -1;
          }
          break;
        }
        if (c.fd < 0) continue;
        int status;
        while (!c.sent.empty() && (status = TakeResponse(c.in)) != 0) {
          Clock::time_point done = Clock::now();
          if (done >= measure_from) {
            ++result.requests;
            ++result.statuses[status];
            latencies.push_back(
                std::chrono::duration<double, std::micro>(done - c.sent.front()).count());
          }
          c.sent.pop_front();
          queue(c);
        }
      }
      while (c.out_off < c.out.size()) {
        ssize_t w = write(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off);
        if (w <= 0) break;
        c.out_off += static_cast<size_t>(w);
      }
      if (c.out_off == c.out.size()) {
        c.out.clear();
        c.out_off = 0;
      }
    }
  }
  result.seconds = absl::ToDoubleSeconds(o.duration);
  for (Conn& c : conns) {
    if (c.fd >= 0) close(c.fd);
  }
  close(ep);
  result.p50_us = Percentile(latencies, 50);
  result.p90_us = Percentile(latencies, 90);
  result.p99_us = Percentile(latencies, 99);
  result.max_us = latencies.empty() ? 0 : latencies.back();
  return result;
}

}  // namespace marketprism::bench
