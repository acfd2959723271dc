// File: node/sinks/clickhouse_writer.h
//
// The `clickhouse=http://HOST:PORT/?database=DB` sink: batched
// `INSERT ... FORMAT JSONEachRow` over ClickHouse's HTTP interface (libcurl),
// one insert per table per batch, into tables it creates if missing:
//
//   trades, orderbooks (book snapshots: the top `depth` levels),
//   book_updates, book_tickers, tickers, klines, gaps, polls
//
// Every table is a ReplacingMergeTree ordered by the record's key (klines:
// by exchange, symbol, interval and open time, the closed candle winning),
// so the two copies of a redundant unit and every retried batch collapse:
// read with FINAL (docs/sinks.md has the queries). Only what ClickHouse
// 18.16 (Debian 12's) and current releases both accept: DateTime plus
// microsecond Int64 columns (no DateTime64), Decimal(38, 18) written as JSON
// numbers (exact), no TTL, CODEC or LowCardinality.
//
// A record whose decimals are not decimals is left out of the insert (one
// bad row would refuse it all) and counted in refused(), with a log line.
// Called from one thread (SinkPipeline's).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "node/sinks/record_writer.h"

namespace marketprism::node {

struct ClickHouseOptions {
  std::string url;                  // http://HOST:PORT (no path)
  std::string database = "marketprism";
  std::string user;                 // ClickHouse's X-ClickHouse-User; "" for default
  std::string password;
  int orderbook_depth = 400;        // levels per side kept of a snapshot
  absl::Duration timeout = absl::Seconds(10);
};

// Parses "http://HOST:PORT/?database=DB[&user=U&password=P&depth=N]".
absl::StatusOr<ClickHouseOptions> ParseClickHouseSpec(absl::string_view spec);

class ClickHouseWriter final : public RecordWriter {
 public:
  explicit ClickHouseWriter(ClickHouseOptions options);
  ~ClickHouseWriter() override;

  std::string name() const override { return "clickhouse"; }
  absl::Status Write(const std::vector<v1::MarketEvent>& batch) override;
  int64_t refused() const { return refused_; }

  // The statements that make the database and tables (IF NOT EXISTS).
  static std::vector<std::string> Schema(absl::string_view database);
  // `e` as its table and JSONEachRow line; false when a decimal is not one.
  bool Row(const v1::MarketEvent& e, std::string* table, std::string* line) const;

 private:
  // Sends `sql` (plus `body`, for an insert); the server's error, naming it.
  absl::Status Query(const std::string& sql, const std::string& body);
  absl::Status EnsureTables();

  ClickHouseOptions options_;
  void* curl_ = nullptr;  // CURL*, reused for keep-alive
  bool tables_ready_ = false;
  int64_t refused_ = 0;
};

}  // namespace marketprism::node
