// File: node/sinks/nats_writer.h
//
// The `nats=nats://HOST:PORT[,nats://HOST:PORT...][?stream=S&format=F]`
// sink: every record published to JetStream (libnats, asynchronously, a
// batch's acknowledgements awaited together) on the subject
// `{type}.{exchange}.{market_type}.{symbol}` (record_format.h) with its key
// as `Nats-Msg-Id`, so that retries and the two copies of a redundant unit
// collapse in the stream's duplicate window. The stream (default
// "MARKETPRISM", on file, subjects `trade.>`, `orderbook.>`, `book_ticker.>`,
// `ticker.>`, `kline.>`, `gap.>`, `poll.>`) is created if missing and left
// as it is if it exists. The payload is the MarketEvent in protobuf
// (format=protobuf, the default; header `Content-Type:
// application/x-protobuf; proto=marketprism.v1.MarketEvent`) or its JSON
// line (format=json).
//
// Called from one thread (SinkPipeline's); libnats runs its own.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

#include "node/sinks/record_writer.h"

struct __natsConnection;
struct __jsCtx;
struct jsStreamInfo;

namespace marketprism::node {

struct NatsOptions {
  std::vector<std::string> servers;  // nats://HOST:PORT
  std::string stream = "MARKETPRISM";
  bool json = false;
  absl::Duration duplicate_window = absl::Minutes(2);  // for a stream this creates
  absl::Duration timeout = absl::Seconds(5);           // a batch's acknowledgements
};

// Parses the part after "nats=". kInvalidArgument naming what is wrong.
absl::StatusOr<NatsOptions> ParseNatsSpec(absl::string_view spec);

class NatsWriter final : public RecordWriter {
 public:
  explicit NatsWriter(NatsOptions options);
  ~NatsWriter() override;

  std::string name() const override { return "nats"; }
  absl::Status Write(const std::vector<v1::MarketEvent>& batch) override;
  void Close() override;

  // The subjects a stream this creates takes.
  static std::vector<std::string> StreamSubjects();

 private:
  absl::Status Connect();
  void Disconnect();
  // Adds to an existing stream the subjects it lacks (StreamSubjects).
  absl::Status AddMissingSubjects(::jsStreamInfo* si);

  NatsOptions options_;
  __natsConnection* nc_ = nullptr;
  __jsCtx* js_ = nullptr;
  // Acknowledgements that came back as errors: libnats' thread adds them.
  absl::Mutex ack_mu_;
  int64_t failed_acks_ ABSL_GUARDED_BY(ack_mu_) = 0;
  std::string last_ack_error_ ABSL_GUARDED_BY(ack_mu_);

  friend struct NatsAckHandler;
};

}  // namespace marketprism::node
