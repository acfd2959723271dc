// File: node/sinks/jsonl_writer.cc
#include "node/sinks/jsonl_writer.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

#include "node/sinks/record_format.h"
#include "node/sinks/sink_pipeline.h"

namespace marketprism::node {
namespace {

constexpr int64_t kMicrosPerHour = int64_t{3600} * 1000 * 1000;

// A name safe as one path element.
std::string PathElement(absl::string_view s) {
  std::string out(s.empty() ? "_" : s);
  for (char& c : out) {
    if (c == '/' || c == '\0') c = '_';
  }
  if (out[0] == '.') out[0] = '_';
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<JsonlWriter>> JsonlWriter::Create(std::string dir, std::string node_id,
                                                                 size_t max_open) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("jsonl sink ", dir, ": ", ec.message()));
  return std::unique_ptr<JsonlWriter>(new JsonlWriter(std::move(dir), std::move(node_id), max_open));
}

JsonlWriter::~JsonlWriter() { Close(); }

std::string JsonlWriter::PathFor(const v1::MarketEvent& e) const {
  std::string channel = e.has_kline() ? absl::StrCat(e.channel(), "_", e.kline().interval()) : e.channel();
  absl::Time at = absl::FromUnixMicros(e.received_time_us());
  return absl::StrCat(dir_, "/", PathElement(e.exchange()), "/", PathElement(channel), "/", PathElement(e.symbol()),
                      "/", absl::FormatTime("%Y%m%dT%H", at, absl::UTCTimeZone()), ".", PathElement(node_id_),
                      ".jsonl");
}

absl::StatusOr<FILE*> JsonlWriter::FileFor(const std::string& path, int64_t hour) {
  auto it = open_.find(path);
  if (it != open_.end()) {
    lru_.splice(lru_.end(), lru_, it->second.lru);
    return it->second.file;
  }
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  FILE* f = std::fopen(path.c_str(), "ab");
  if (f == nullptr) return absl::UnavailableError(absl::StrCat("jsonl sink ", path, ": ", std::strerror(errno)));
  std::fseek(f, 0, SEEK_END);  // ftell gives the size
  while (open_.size() >= max_open_ && !lru_.empty()) CloseOne(open_.find(lru_.front()));
  lru_.push_back(path);
  open_[path] = Open{f, hour, std::prev(lru_.end())};
  return f;
}

void JsonlWriter::CloseOne(std::map<std::string, Open>::iterator it) {
  std::fclose(it->second.file);
  lru_.erase(it->second.lru);
  open_.erase(it);
}

absl::Status JsonlWriter::Write(const std::vector<v1::MarketEvent>& batch) {
  std::map<FILE*, long> before;  // each file touched: its size before the batch
  absl::Status failed;
  int64_t newest_hour = 0;
  for (const v1::MarketEvent& e : batch) {
    int64_t hour = e.received_time_us() / kMicrosPerHour;
    newest_hour = std::max(newest_hour, hour);
    std::string path = PathFor(e);
    auto file = FileFor(path, hour);
    if (!file.ok()) {
      failed = file.status();
      break;
    }
    FILE* f = *file;
    if (!before.contains(f)) before[f] = std::ftell(f);
    std::string line = RecordJson(e);
    line.push_back('\n');
    if (std::fwrite(line.data(), 1, line.size(), f) != line.size()) {
      failed = absl::UnavailableError(absl::StrCat("jsonl sink ", path, ": ", std::strerror(errno)));
      break;
    }
  }
  for (auto& [f, size] : before) {
    if (failed.ok() && std::fflush(f) != 0) {
      failed = absl::UnavailableError(absl::StrCat("jsonl sink ", dir_, ": ", std::strerror(errno)));
    }
  }
  if (!failed.ok()) {
    for (auto& [f, size] : before) {
      std::fflush(f);
      std::clearerr(f);
      if (size >= 0 && ftruncate(fileno(f), size) == 0) std::fseek(f, size, SEEK_SET);
    }
    return failed;
  }
  // Hours that are over: their files are complete.
  for (auto it = open_.begin(); it != open_.end();) {
    auto next = std::next(it);
    if (it->second.hour < newest_hour) CloseOne(it);
    it = next;
  }
  return absl::OkStatus();
}

void JsonlWriter::Close() {
  while (!open_.empty()) CloseOne(open_.begin());
}

}  // namespace marketprism::node
