// File: node/sinks/jsonl_writer.h
//
// The `jsonl=DIR` sink: one JSON line per record (record_format.h), one file
// per unit and hour of the record's receive time (UTC):
//
//   DIR/<exchange>/<channel>/<symbol>/<YYYYMMDD>T<HH>.<node>.jsonl
//
// (a kline's channel carries its interval: "kline_1m"). The node's name in
// the file name keeps two nodes sharing DIR apart. A file is closed when its
// hour is over (at the first write after it) and at Close; a batch that
// fails part-way is taken back out of the files it touched, so a retry
// writes no line twice. At most `max_open` files are open at once.
//
// Called from one thread (SinkPipeline's).
#pragma once

#include <cstdio>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "node/sinks/record_writer.h"

namespace marketprism::node {

class JsonlWriter final : public RecordWriter {
 public:
  // kInvalidArgument when `dir` cannot be made, naming it.
  static absl::StatusOr<std::unique_ptr<JsonlWriter>> Create(std::string dir, std::string node_id,
                                                             size_t max_open = 256);
  ~JsonlWriter() override;

  std::string name() const override { return "jsonl"; }
  absl::Status Write(const std::vector<v1::MarketEvent>& batch) override;
  void Close() override;

  // The file `e` goes to.
  std::string PathFor(const v1::MarketEvent& e) const;

 private:
  JsonlWriter(std::string dir, std::string node_id, size_t max_open)
      : dir_(std::move(dir)), node_id_(std::move(node_id)), max_open_(max_open) {}
  struct Open {
    FILE* file = nullptr;
    int64_t hour = 0;  // unix hour of its records
    std::list<std::string>::iterator lru;
  };
  absl::StatusOr<FILE*> FileFor(const std::string& path, int64_t hour);
  void CloseOne(std::map<std::string, Open>::iterator it);

  std::string dir_;
  std::string node_id_;
  size_t max_open_;
  std::map<std::string, Open> open_;  // by path
  std::list<std::string> lru_;        // paths, least recently written first
};

}  // namespace marketprism::node
