#include "cli/collect_commands.h"

#include <grpcpp/grpcpp.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/collect/job.h"
#include "google/protobuf/util/json_util.h"
#include "marketprism/v1/collector.grpc.pb.h"

namespace marketprism::cli {

namespace {

std::string ToJson(const google::protobuf::Message& m, bool pretty) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = pretty;
  o.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

int Fail(const grpc::Status& s) {
  std::fprintf(stderr, "mpctl: error: %s\n", s.error_message().c_str());
  return s.error_code() == grpc::StatusCode::INVALID_ARGUMENT ? 2 : 1;
}

void Deadline(grpc::ClientContext& ctx, absl::Duration timeout) {
  ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
}

std::string Row(const std::vector<std::string>& cells, const std::vector<size_t>& width) {
  std::string line;
  for (size_t i = 0; i < cells.size(); ++i) {
    line += cells[i];
    if (i + 1 < cells.size()) line += std::string(width[i] > cells[i].size() ? width[i] - cells[i].size() + 2 : 2, ' ');
  }
  return line + "\n";
}

std::string Describe(const v1::MarketEvent& e) {
  std::string head = absl::StrCat(e.exchange(), " ", e.channel(), " ", e.symbol(), " ");
  if (e.has_trade()) {
    return absl::StrCat(head, "trade ", e.trade().trade_id(), " ", e.trade().side() == v1::SIDE_BUY ? "buy " : "sell ",
                        e.trade().quantity(), " @ ", e.trade().price());
  }
  if (e.has_book()) {
    const v1::BookUpdate& b = e.book();
    std::string best;
    if (b.bids_size() > 0 && b.asks_size() > 0) {
      best = absl::StrCat(" bid ", b.bids(0).price(), " ask ", b.asks(0).price());
    }
    return absl::StrCat(head, b.snapshot() ? "snapshot " : "update ", b.first_update_id(), "..", b.last_update_id(),
                        " (", b.bids_size(), " bids, ", b.asks_size(), " asks)", b.snapshot() ? best : "");
  }
  if (e.has_gap()) {
    return absl::StrCat(head, "GAP after ", e.gap().after_update_id(), ", resumed at ", e.gap().resumed_update_id(),
                        ": ", e.gap().reason());
  }
  if (e.has_book_ticker()) {
    const v1::BookTicker& t = e.book_ticker();
    return absl::StrCat(head, "top ", t.update_id(), " bid ", t.bid().quantity(), " @ ", t.bid().price(), " ask ",
                        t.ask().quantity(), " @ ", t.ask().price());
  }
  if (e.has_ticker()) {
    const v1::Ticker& t = e.ticker();
    // Deribit gives no 24 h open.
    return absl::StrCat(head, "24h last ", t.last_price(), " open ", t.open_price().empty() ? "-" : t.open_price(),
                        " high ", t.high_price(), " low ",
                        t.low_price(), " volume ", t.volume());
  }
  if (e.has_kline()) {
    const v1::Kline& k = e.kline();
    return absl::StrCat(head, k.interval(), " ", absl::FormatTime("%H:%M:%S", absl::FromUnixMicros(k.open_time_us()), absl::UTCTimeZone()),
                        k.closed() ? " closed" : " open", " o ", k.open(), " h ", k.high(), " l ", k.low(), " c ",
                        k.close(), " v ", k.volume());
  }
  if (e.has_poll()) {
    return absl::StrCat(head, "poll HTTP ", e.poll().http_status(), ", ", e.poll().body().size(), " bytes");
  }
  return absl::StrCat(head, "record ", e.key());
}

}  // namespace

int RunJobs(const std::shared_ptr<grpc::Channel>& channel, const std::vector<std::string>& args, bool json,
            absl::Duration timeout) {
  auto stub = v1::Collector::NewStub(channel);
  if (args.size() >= 2 && args[1] == "create") {
    if (args.size() != 3) {
      std::fprintf(stderr, "mpctl: usage: mpctl jobs create FILE\n");
      return 2;
    }
    absl::StatusOr<common::RulesBook> rules = common::RulesBook::LoadDefault();
    if (!rules.ok()) return std::fprintf(stderr, "mpctl: error: %s\n", std::string(rules.status().message()).c_str()), 1;
    absl::StatusOr<std::vector<v1::Job>> jobs = common::LoadJobsFile(args[2], *rules);
    if (!jobs.ok()) {
      std::fprintf(stderr, "mpctl: error: %s\n", std::string(jobs.status().message()).c_str());
      return 2;
    }
    for (const v1::Job& j : *jobs) {
      grpc::ClientContext ctx;
      Deadline(ctx, timeout);
      v1::CreateJobRequest req;
      *req.mutable_job() = j;
      v1::Job created;
      grpc::Status s = stub->CreateJob(&ctx, req, &created);
      if (!s.ok()) return Fail(s);
      std::printf("created job %s\n", created.name().c_str());
    }
    return 0;
  }
  if (args.size() >= 2 && args[1] == "delete") {
    if (args.size() != 3) {
      std::fprintf(stderr, "mpctl: usage: mpctl jobs delete NAME\n");
      return 2;
    }
    grpc::ClientContext ctx;
    Deadline(ctx, timeout);
    v1::DeleteJobRequest req;
    req.set_name(args[2]);
    v1::DeleteJobResponse r;
    grpc::Status s = stub->DeleteJob(&ctx, req, &r);
    if (!s.ok()) return Fail(s);
    std::printf("deleted job %s\n", args[2].c_str());
    return 0;
  }
  if (args.size() != 1) {
    std::fprintf(stderr, "mpctl: usage: mpctl jobs [create FILE | delete NAME]\n");
    return 2;
  }
  grpc::ClientContext ctx;
  Deadline(ctx, timeout);
  v1::ListJobsResponse r;
  grpc::Status s = stub->ListJobs(&ctx, {}, &r);
  if (!s.ok()) return Fail(s);
  if (json) return std::printf("%s\n", ToJson(r, true).c_str()) < 0;
  std::vector<std::vector<std::string>> rows = {
      {"JOB", "UNIT", "NODE", "EGRESS", "STATE", "MESSAGES", "GAPS", "LAG", "LAST RECORD"}};
  for (const v1::Job& j : r.jobs()) {
    for (const v1::Unit& u : j.units()) {
      if (u.copies_size() == 0) {
        rows.push_back({j.name(), u.key(), "-", "-", j.channel() == "poll" ? "coordinator" : "unplaced", "-", "-",
                        "-", "-"});
      }
      for (const v1::UnitCopy& c : u.copies()) {
        bool seen = c.messages_total() > 0;
        rows.push_back({j.name(), u.key(), c.node_id().empty() ? "-" : c.node_id(),
                        c.egress_ip().empty() ? "-" : c.egress_ip(), c.state(), absl::StrCat(c.messages_total()),
                        absl::StrCat(c.gaps_total()), seen ? absl::StrCat(c.lag_us() / 1000, "ms") : "-",
                        seen ? absl::StrCat(c.last_record_age_ms(), "ms ago") : "-"});
      }
    }
  }
  std::vector<size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) std::printf("%s", Row(row, width).c_str());
  return 0;
}

int RunTail(const std::shared_ptr<grpc::Channel>& channel, const std::vector<std::string>& args, bool json) {
  if (args.size() < 2) {
    std::fprintf(stderr, "mpctl: usage: mpctl tail EXCHANGE [CHANNEL [SYMBOL ...]]\n");
    return 2;
  }
  auto stub = v1::Collector::NewStub(channel);
  v1::SubscribeRequest req;
  req.set_exchange(args[1]);
  if (args.size() >= 3) req.set_channel(args[2]);
  for (size_t i = 3; i < args.size(); ++i) req.add_symbols(args[i]);
  grpc::ClientContext ctx;
  auto reader = stub->Subscribe(&ctx, req);
  v1::MarketEvent e;
  while (reader->Read(&e)) {
    std::printf("%s\n", json ? ToJson(e, false).c_str() : Describe(e).c_str());
    std::fflush(stdout);
  }
  grpc::Status s = reader->Finish();
  return s.ok() ? 0 : Fail(s);
}

}  // namespace marketprism::cli
