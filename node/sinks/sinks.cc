// File: node/sinks/sinks.cc
#include "node/sinks/sinks.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

#include "node/sinks/clickhouse_writer.h"
#include "node/sinks/jsonl_writer.h"
#include "node/sinks/nats_writer.h"

namespace marketprism::node {
namespace {

struct Spec {
  std::string kind;
  std::string target;
};

absl::StatusOr<Spec> Split(absl::string_view spec) {
  std::pair<std::string, std::string> p = absl::StrSplit(spec, absl::MaxSplits('=', 1));
  if (p.first != "nats" && p.first != "clickhouse" && p.first != "jsonl") {
    return absl::InvalidArgumentError(
        absl::StrCat("--sink \"", spec, "\": expected nats=URL, clickhouse=URL or jsonl=DIR"));
  }
  if (p.second.empty()) return absl::InvalidArgumentError(absl::StrCat("--sink \"", spec, "\": no target"));
  return Spec{p.first, p.second};
}

// FNV-1a: the same on every run, so a restarted node finds its spool.
uint64_t SpecHash(absl::string_view s) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace

absl::Status ValidateSinkSpec(absl::string_view spec) {
  auto s = Split(spec);
  if (!s.ok()) return s.status();
  if (s->kind == "nats") return ParseNatsSpec(s->target).status();
  if (s->kind == "clickhouse") return ParseClickHouseSpec(s->target).status();
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Sinks>> Sinks::Create(const SinksOptions& options, common::Clock& clock) {
  auto sinks = std::unique_ptr<Sinks>(new Sinks());
  for (const std::string& text : options.specs) {
    auto spec = Split(text);
    if (!spec.ok()) return spec.status();
    SinkPipelineOptions p;
    // A folder per spec: a sink's spool waits for that destination only.
    p.spool_dir = absl::StrCat(options.spool_dir, "/", spec->kind, "-", absl::Hex(SpecHash(text), absl::kZeroPad16));
    p.spool_max_bytes = options.spool_max_bytes;
    p.memory_records = options.memory_records;
    std::unique_ptr<RecordWriter> writer;
    if (spec->kind == "nats") {
      auto o = ParseNatsSpec(spec->target);
      if (!o.ok()) return o.status();
      writer = std::make_unique<NatsWriter>(std::move(*o));
      p.linger = absl::Milliseconds(20);
    } else if (spec->kind == "clickhouse") {
      auto o = ParseClickHouseSpec(spec->target);
      if (!o.ok()) return o.status();
      writer = std::make_unique<ClickHouseWriter>(std::move(*o));
      p.linger = absl::Milliseconds(500);  // ClickHouse wants few, large inserts
      p.batch_records = 20000;
    } else {
      auto w = JsonlWriter::Create(spec->target, options.node_id);
      if (!w.ok()) return w.status();
      writer = std::move(*w);
      p.linger = absl::Milliseconds(200);
    }
    auto pipeline = SinkPipeline::Create(std::move(p), std::move(writer), clock);
    if (!pipeline.ok()) return pipeline.status();
    sinks->pipelines_.push_back(std::move(*pipeline));
  }
  return sinks;
}

Sinks::~Sinks() { Stop(); }

void Sinks::Start() {
  for (auto& p : pipelines_) p->Start();
}

void Sinks::Offer(const std::vector<v1::MarketEvent>& records) {
  for (auto& p : pipelines_) p->Offer(records);
}

std::vector<SinkStatus> Sinks::Status() {
  std::vector<SinkStatus> out;
  for (auto& p : pipelines_) out.push_back(p->Status());
  return out;
}

void Sinks::Stop() {
  for (auto& p : pipelines_) p->Stop();
}

}  // namespace marketprism::node
