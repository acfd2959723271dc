// File: node/sinks/record_format.cc
#include "node/sinks/record_format.h"

#include <google/protobuf/util/json_util.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace marketprism::node {

std::string RecordType(const v1::MarketEvent& e) {
  switch (e.body_case()) {
    case v1::MarketEvent::kTrade:
      return "trade";
    case v1::MarketEvent::kBook:
      return "orderbook";
    case v1::MarketEvent::kBookTicker:
      return "book_ticker";
    case v1::MarketEvent::kTicker:
      return "ticker";
    case v1::MarketEvent::kKline:
      return "kline";
    case v1::MarketEvent::kGap:
      return "gap";
    case v1::MarketEvent::kPoll:
      return "poll";
    case v1::MarketEvent::kExchangeHealth:
      return "exchange_health";
    default:
      return "record";
  }
}

std::string MarketType(absl::string_view exchange, absl::string_view symbol) {
  if (exchange == "binance_spot") return "spot";
  if (exchange == "binance_usdm") {
    // Delivery contracts carry their date: "BTCUSDT_250627".
    return absl::StrContains(symbol, '_') ? "futures" : "perpetual";
  }
  std::vector<absl::string_view> parts = absl::StrSplit(symbol, '-');
  if (exchange == "okx") {
    if (parts.size() >= 3 && parts.back() == "SWAP") return "perpetual";
    if (parts.size() >= 4 && (parts.back() == "C" || parts.back() == "P")) return "option";
    if (parts.size() == 3) return "futures";
    return "spot";
  }
  if (exchange == "deribit") {
    if (parts.size() >= 2 && parts.back() == "PERPETUAL") return "perpetual";
    if (parts.size() >= 4 && (parts.back() == "C" || parts.back() == "P")) return "option";
    if (absl::StrContains(symbol, '_')) return "spot";  // "BTC_USDC"
    return "futures";
  }
  return "spot";
}

std::string SubjectToken(absl::string_view s) {
  std::string out(s.empty() ? "_" : s);
  for (char& c : out) {
    if (c == '.' || c == '*' || c == '>' || absl::ascii_isspace(static_cast<unsigned char>(c))) c = '_';
  }
  return out;
}

std::string NatsSubject(const v1::MarketEvent& e) {
  return absl::StrCat(RecordType(e), ".", SubjectToken(e.exchange()), ".", MarketType(e.exchange(), e.symbol()),
                      ".", SubjectToken(e.symbol()));
}

std::string RecordJson(const v1::MarketEvent& e) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(e, &out, options);
  return out;
}

}  // namespace marketprism::node
