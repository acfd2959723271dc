#include "tests/testing/sim_process.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace marketprism::testing {

absl::StatusOr<std::unique_ptr<SimProcess>> SimProcess::Start(std::vector<std::string> extra_flags) {
  std::vector<std::string> argv = {BinDir() + "/mp-exchange-sim", "--listen", "127.0.0.1:0"};
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  auto sim = std::unique_ptr<SimProcess>(new SimProcess());
  for (size_t i = 0; i + 1 < extra_flags.size(); ++i) {
    if (extra_flags[i] == "--tls-cert") sim->tls_cert_ = extra_flags[i + 1];
  }
  MP_ASSIGN_OR_RETURN(sim->process_, Subprocess::Start(argv));
  MP_ASSIGN_OR_RETURN(std::string line,
                      sim->process_->WaitForLine("listening on", absl::Seconds(10)));
  size_t colon = line.rfind(':');
  if (colon == std::string::npos || !absl::SimpleAtoi(line.substr(colon + 1), &sim->port_)) {
    return absl::InternalError("cannot read the port from: " + line);
  }
  return sim;
}

std::vector<std::string> SimProcess::CoordinatorFlags(const std::vector<std::string>& exchanges) const {
  std::vector<std::string> flags;
  for (const std::string& e : exchanges) {
    flags.insert(flags.end(), {"--exchange-url", absl::StrCat(e, "=", base_url())});
    if (e == "binance_usdm") flags.insert(flags.end(), {"--ws-url", absl::StrCat(e, "=", ws_url(), "/usdm")});
  }
  return flags;
}

common::CurlHttpClient& SimProcess::Client(const std::string& source_ip) {
  absl::MutexLock lock(&mu_);
  auto& c = clients_[source_ip];
  if (!c) c = std::make_unique<common::CurlHttpClient>(common::CurlHttpOptions{.source_ip = source_ip, .ca_bundle = tls_cert_});
  return *c;
}

absl::StatusOr<common::HttpReply> SimProcess::Get(const std::string& source_ip,
                                                  const std::string& path) {
  common::HttpRequestSpec req;
  req.url = base_url() + path;
  return Client(source_ip).Send(req);
}

absl::StatusOr<common::HttpReply> SimProcess::Post(const std::string& source_ip,
                                                   const std::string& path,
                                                   const std::string& body) {
  common::HttpRequestSpec req;
  req.method = "POST";
  req.url = base_url() + path;
  req.body = body;
  req.headers.emplace_back("Content-Type", "application/json");
  return Client(source_ip).Send(req);
}

absl::StatusOr<nlohmann::json> SimProcess::Stats() {
  MP_ASSIGN_OR_RETURN(common::HttpReply r, Get("127.0.0.1", "/sim/stats"));
  if (r.status != 200) return absl::InternalError("GET /sim/stats: " + r.body);
  return nlohmann::json::parse(r.body);
}

int64_t SimProcess::Rejections(const nlohmann::json& stats) {
  int64_t n = 0;
  for (auto& [ex, e] : stats["exchanges"].items()) {
    for (auto& [kind, count] : e["totals"]["rejections"].items()) n += count.get<int64_t>();
  }
  return n;
}

absl::Status SimProcess::SetFaults(const std::string& json) {
  MP_ASSIGN_OR_RETURN(common::HttpReply r, Post("127.0.0.1", "/sim/faults", json));
  if (r.status != 200) return absl::InternalError("POST /sim/faults: " + r.body);
  return absl::OkStatus();
}

absl::StatusOr<absl::Time> SimProcess::AlignServerClock(absl::Duration into_minute) {
  absl::Time now = absl::Now();
  absl::Time minute = absl::FromUnixSeconds(absl::ToUnixSeconds(now) / 60 * 60);
  absl::Time target = minute + into_minute;
  // Aim for a target no earlier than now - 60 s, so offsets stay small.
  int64_t offset_ms = absl::ToInt64Milliseconds(target - now);
  MP_RETURN_IF_ERROR(SetFaults(absl::StrCat("{\"clock_offset_ms\": ", offset_ms, "}")));
  return now + absl::Milliseconds(offset_ms);
}

}  // namespace marketprism::testing
