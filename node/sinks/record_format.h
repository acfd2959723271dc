// File: node/sinks/record_format.h
//
// How a record is named and written outside the node, shared by the sinks:
// its type and market type, its NATS subject
// (`{type}.{exchange}.{market_type}.{symbol}`, as the original system
// published) and its JSON line (protobuf's JSON mapping, field names as in
// collector.proto).
#pragma once

#include <string>

#include "absl/strings/string_view.h"
#include "marketprism/v1/collector.pb.h"

namespace marketprism::node {

// "trade", "orderbook" (book snapshots and updates), "book_ticker",
// "ticker", "kline", "gap", "poll".
std::string RecordType(const v1::MarketEvent& e);
// "spot", "perpetual", "futures" or "option": from the exchange and the
// instrument's name (OKX "BTC-USDT-SWAP", Deribit "BTC-PERPETUAL",
// "BTC-27DEC24", "BTC-27DEC24-60000-C").
std::string MarketType(absl::string_view exchange, absl::string_view symbol);
// A name made safe as one token of a NATS subject: '.', '*', '>', and
// white space become '_'.
std::string SubjectToken(absl::string_view s);
std::string NatsSubject(const v1::MarketEvent& e);
// One line, no newline.
std::string RecordJson(const v1::MarketEvent& e);

}  // namespace marketprism::node
