// File: tests/testing/data_servers.cc
#include "tests/testing/data_servers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"

#include "common/net/curl_http_client.h"
#include "tests/testing/wait.h"

namespace marketprism::testing {

int FreeTcpPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

bool NatsServer::Available() { return access("/usr/sbin/nats-server", X_OK) == 0; }

absl::StatusOr<std::unique_ptr<NatsServer>> NatsServer::Start(const std::string& dir) {
  std::filesystem::create_directories(dir);
  auto s = std::unique_ptr<NatsServer>(new NatsServer());
  s->port_ = FreeTcpPort();
  auto p = Subprocess::Start({"/usr/sbin/nats-server", "-js", "-a", "127.0.0.1", "-p", std::to_string(s->port_),
                              "-sd", dir, "--http_port", "0"});
  if (!p.ok()) return p.status();
  s->process_ = std::move(*p);
  auto ready = s->process_->WaitForLine("Server is ready", absl::Seconds(10));
  if (!ready.ok()) return ready.status();
  return s;
}

bool ClickHouseServer::Available() { return access("/usr/sbin/clickhouse-server", X_OK) == 0; }

absl::StatusOr<std::unique_ptr<ClickHouseServer>> ClickHouseServer::Start(const std::string& dir) {
  auto s = std::unique_ptr<ClickHouseServer>(new ClickHouseServer());
  s->dir_ = dir;
  s->port_ = FreeTcpPort();
  std::filesystem::create_directories(dir + "/data");
  std::ofstream(dir + "/users.xml") << R"(<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks>
    <profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
)";
  // A TCP port of its own too: the default 9000 may be taken.
  std::ofstream(dir + "/config.xml") << absl::StrCat(R"(<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <http_port>)", s->port_, R"(</http_port>
  <tcp_port>)", FreeTcpPort(), R"(</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>)", dir, R"(/data/</path>
  <tmp_path>)", dir, R"(/tmp/</tmp_path>
  <user_files_path>)", dir, R"(/user_files/</user_files_path>
  <format_schema_path>)", dir, R"(/format_schemas/</format_schema_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>5368709120</mark_cache_size>
</yandex>
)");
  absl::Status launched = s->Launch();
  if (!launched.ok()) return launched;
  return s;
}

absl::Status ClickHouseServer::Launch() {
  auto p = Subprocess::Start({"/usr/sbin/clickhouse-server", "--config-file=" + dir_ + "/config.xml"});
  if (!p.ok()) return p.status();
  process_ = std::move(*p);
  common::CurlHttpClient http({});
  bool up = WaitUntil(
      [&] {
        auto r = http.Send({.method = "GET", .url = url() + "/ping"});
        return r.ok() && r->status == 200;
      },
      absl::Seconds(20));
  if (!up) {
    return absl::UnavailableError(absl::StrCat("clickhouse-server did not answer /ping within 20 s:\n",
                                               process_->Output()));
  }
  return absl::OkStatus();
}

void ClickHouseServer::Stop() {
  if (process_) process_->Stop(absl::Seconds(10));
}

absl::Status ClickHouseServer::Restart() {
  Stop();
  return Launch();
}

absl::StatusOr<std::string> ClickHouseServer::Query(const std::string& sql) {
  common::CurlHttpClient http({});
  auto r = http.Send({.method = "POST", .url = url() + "/", .body = sql});
  if (!r.ok()) return r.status();
  if (r->status != 200) return absl::InternalError(absl::StrCat("clickhouse: ", r->body));
  return r->body;
}

}  // namespace marketprism::testing
