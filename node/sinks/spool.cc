// File: node/sinks/spool.cc
#include "node/sinks/spool.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

#include "common/log.h"

namespace marketprism::node {
namespace {

constexpr int64_t kPrefix = 4;
// A record longer than this is not one of ours: the segment is damaged.
constexpr uint32_t kMaxRecord = 64u << 20;

void PutLength(uint32_t n, char out[4]) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
}

uint32_t GetLength(const unsigned char in[4]) {
  return uint32_t{in[0]} | uint32_t{in[1]} << 8 | uint32_t{in[2]} << 16 | uint32_t{in[3]} << 24;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Spool>> Spool::Open(std::string dir, int64_t max_bytes,
                                                   int64_t segment_bytes) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("spool ", dir, ": ", ec.message()));
  auto spool = std::unique_ptr<Spool>(new Spool(std::move(dir), max_bytes, segment_bytes));
  absl::Status scanned = spool->Scan();
  if (!scanned.ok()) return scanned;
  return spool;
}

Spool::~Spool() {
  if (write_ != nullptr) std::fclose(write_);
  if (read_ != nullptr) std::fclose(read_);
}

std::string Spool::SegmentPath(int64_t number) const {
  return absl::StrFormat("%s/%012d.spool", dir_, number);
}

absl::Status Spool::Scan() {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    std::string name = entry.path().filename().string();
    int64_t number = 0;
    if (name.size() != 18 || !name.ends_with(".spool") || !absl::SimpleAtoi(name.substr(0, 12), &number)) continue;
    segments_.push_back(number);
  }
  if (ec) return absl::InvalidArgumentError(absl::StrCat("spool ", dir_, ": ", ec.message()));
  std::sort(segments_.begin(), segments_.end());
  if (!segments_.empty()) next_segment_ = segments_.back() + 1;
  for (int64_t number : segments_) {
    FILE* f = std::fopen(SegmentPath(number).c_str(), "rb");
    if (f == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("spool ", SegmentPath(number), ": ", std::strerror(errno)));
    }
    std::error_code size_ec;
    int64_t size = static_cast<int64_t>(std::filesystem::file_size(SegmentPath(number), size_ec));
    int64_t at = 0;
    unsigned char prefix[4];
    while (std::fread(prefix, 1, 4, f) == 4) {
      uint32_t n = GetLength(prefix);
      if (n > kMaxRecord || at + kPrefix + n > size || std::fseek(f, n, SEEK_CUR) != 0) break;  // cut short
      at += kPrefix + n;
      ++records_;
      bytes_ += kPrefix + n;
    }
    std::fclose(f);
  }
  if (records_ > 0) {
    common::Log(common::LogLevel::kInfo, "sink", absl::StrCat("spool ", dir_, ": ", records_, " records (", bytes_,
                                 " bytes) left by an earlier run are sent first"));
  }
  return absl::OkStatus();
}

absl::Status Spool::Append(const std::vector<v1::MarketEvent>& records) {
  std::string out;
  for (const v1::MarketEvent& r : records) {
    std::string bytes = r.SerializeAsString();
    char prefix[4];
    PutLength(static_cast<uint32_t>(bytes.size()), prefix);
    out.append(prefix, 4);
    out += bytes;
  }
  if (bytes_ + static_cast<int64_t>(out.size()) > max_bytes_) {
    return absl::ResourceExhaustedError(absl::StrCat("spool ", dir_, " is full (", bytes_, " of ", max_bytes_,
                                                     " bytes)"));
  }
  if (write_ == nullptr || write_bytes_ >= segment_bytes_) {
    if (write_ != nullptr) std::fclose(write_);
    int64_t number = next_segment_++;
    write_ = std::fopen(SegmentPath(number).c_str(), "ab");
    if (write_ == nullptr) {
      return absl::UnavailableError(absl::StrCat("spool ", SegmentPath(number), ": ", std::strerror(errno)));
    }
    segments_.push_back(number);
    write_bytes_ = 0;
  }
  long before = std::ftell(write_);
  if (std::fwrite(out.data(), 1, out.size(), write_) != out.size() || std::fflush(write_) != 0) {
    std::string why = std::strerror(errno);
    // Take back what part of it went: none or all.
    if (before >= 0 && ftruncate(fileno(write_), before) == 0) std::fseek(write_, before, SEEK_SET);
    return absl::UnavailableError(absl::StrCat("spool ", SegmentPath(segments_.back()), ": ", why));
  }
  write_bytes_ += static_cast<int64_t>(out.size());
  bytes_ += static_cast<int64_t>(out.size());
  records_ += static_cast<int64_t>(records.size());
  return absl::OkStatus();
}

bool Spool::ReadOne(Entry* out) {
  while (true) {
    if (read_ == nullptr) {
      auto next = std::upper_bound(segments_.begin(), segments_.end(), read_segment_);
      if (next == segments_.end()) return false;
      read_ = std::fopen(SegmentPath(*next).c_str(), "rb");
      if (read_ == nullptr) return false;
      read_segment_ = *next;
    }
    unsigned char prefix[4];
    long at = std::ftell(read_);
    if (std::fread(prefix, 1, 4, read_) == 4) {
      uint32_t n = GetLength(prefix);
      std::string bytes(n <= kMaxRecord ? n : 0, '\0');
      if (n <= kMaxRecord && std::fread(bytes.data(), 1, n, read_) == n) {
        out->bytes = kPrefix + n;
        out->segment = read_segment_;
        if (out->record.ParseFromString(bytes)) return true;
        ++skipped_;
        --records_;
        bytes_ -= out->bytes;
        common::Log(common::LogLevel::kWarning, "sink", absl::StrCat("spool ", SegmentPath(read_segment_), ": a record that does not parse is skipped"));
        continue;
      }
    }
    // The end of what is there. The segment being written may grow: read it
    // again from here next time.
    bool last = read_segment_ == segments_.back();
    if (last) {
      std::fseek(read_, at, SEEK_SET);
      std::clearerr(read_);
      return false;
    }
    std::fclose(read_);
    read_ = nullptr;
  }
}

void Spool::Fill(size_t n) {
  while (cache_.size() < n) {
    Entry e;
    if (!ReadOne(&e)) return;
    cache_.push_back(std::move(e));
  }
}

std::vector<v1::MarketEvent> Spool::Peek(size_t max) {
  Fill(max);
  std::vector<v1::MarketEvent> out;
  out.reserve(std::min(max, cache_.size()));
  for (size_t i = 0; i < max && i < cache_.size(); ++i) out.push_back(cache_[i].record);
  return out;
}

void Spool::Pop(size_t n) {
  for (size_t i = 0; i < n && !cache_.empty(); ++i) {
    bytes_ -= cache_.front().bytes;
    --records_;
    cache_.pop_front();
  }
  DropPopped();
}

void Spool::DropPopped() {
  // Segments before the oldest record still held are done; so is the
  // segment being read once nothing of it remains and it is the last.
  int64_t keep_from = cache_.empty() ? read_segment_ : cache_.front().segment;
  while (!segments_.empty() && segments_.front() < keep_from) {
    std::remove(SegmentPath(segments_.front()).c_str());
    segments_.pop_front();
  }
  if (records_ == 0 && !segments_.empty()) {
    // Everything is out: start over with a fresh segment.
    if (read_ != nullptr) std::fclose(read_), read_ = nullptr;
    if (write_ != nullptr) std::fclose(write_), write_ = nullptr;
    for (int64_t number : segments_) std::remove(SegmentPath(number).c_str());
    read_segment_ = segments_.back();  // numbers go on rising
    segments_.clear();
    bytes_ = 0;
  }
}

int64_t Spool::oldest_received_us() {
  if (records_ == 0) return 0;
  Fill(1);
  return cache_.empty() ? 0 : cache_.front().record.received_time_us();
}

}  // namespace marketprism::node
