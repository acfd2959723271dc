// File: node/sinks/clickhouse_writer.cc
#include "node/sinks/clickhouse_writer.h"

#include <curl/curl.h>

#include <map>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

#include "common/collect/decimal.h"
#include "common/log.h"
#include "node/sinks/record_format.h"

namespace marketprism::node {
namespace {

// The columns every table starts with and ends with.
constexpr absl::string_view kHead = "exchange String, market_type String, symbol String, ";
constexpr absl::string_view kTail =
    "exchange_time_us Int64, received_time_us Int64, node_id String, key String";
constexpr absl::string_view kDec = "Decimal(38, 18)";

std::string Table(absl::string_view db, absl::string_view name, absl::string_view columns,
                  absl::string_view time_column, absl::string_view order = "(exchange, symbol, key)",
                  absl::string_view version = "") {
  return absl::StrCat("CREATE TABLE IF NOT EXISTS ", db, ".", name, " (", kHead, columns, kTail,
                      ") ENGINE = ReplacingMergeTree(", version, ") PARTITION BY toYYYYMM(", time_column,
                      ") ORDER BY ", order);
}

std::string Quote(absl::string_view s) {
  return nlohmann::json(std::string(s)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// One JSONEachRow line, built field by field.
class RowBuilder {
 public:
  RowBuilder& Str(absl::string_view k, absl::string_view v) { return Raw(k, Quote(v)); }
  RowBuilder& Int(absl::string_view k, int64_t v) { return Raw(k, absl::StrCat(v)); }
  RowBuilder& UInt(absl::string_view k, uint64_t v) { return Raw(k, absl::StrCat(v)); }
  RowBuilder& Float(absl::string_view k, double v) { return Raw(k, absl::StrFormat("%.3f", v)); }
  // A decimal as a JSON number (ClickHouse refuses a string); "" is null
  // where `nullable`, else the row is bad.
  RowBuilder& Dec(absl::string_view k, absl::string_view v, bool nullable = false) {
    if (v.empty() && nullable) return Raw(k, "null");
    return Raw(k, Decimal(v));
  }
  RowBuilder& Decs(absl::string_view k, const google::protobuf::RepeatedPtrField<v1::Level>& levels, bool price,
                   int max) {
    std::string out = "[";
    int n = 0;
    for (const v1::Level& l : levels) {
      if (n == max) break;
      if (n++ > 0) out += ",";
      out += Decimal(price ? l.price() : l.quantity());
    }
    out += "]";
    return Raw(k, out);
  }
  bool ok() const { return ok_; }
  std::string Done() { return line_ + "}"; }

 private:
  std::string Decimal(absl::string_view v) {
    std::optional<std::string> c = common::CanonicalDecimal(v);
    if (!c) {
      ok_ = false;
      return "0";
    }
    return *c;
  }
  RowBuilder& Raw(absl::string_view k, absl::string_view v) {
    absl::StrAppend(&line_, line_.size() > 1 ? "," : "", "\"", k, "\":", v);
    return *this;
  }
  std::string line_ = "{";
  bool ok_ = true;
};

int64_t Seconds(const v1::MarketEvent& e) {
  return (e.exchange_time_us() != 0 ? e.exchange_time_us() : e.received_time_us()) / 1000000;
}

size_t WriteBody(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

}  // namespace

absl::StatusOr<ClickHouseOptions> ParseClickHouseSpec(absl::string_view spec) {
  ClickHouseOptions o;
  if (!absl::StartsWith(spec, "http://") && !absl::StartsWith(spec, "https://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("clickhouse sink \"", spec, "\": expected http://HOST:PORT/?database=DB"));
  }
  std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(spec, absl::MaxSplits('?', 1));
  o.url = std::string(absl::StripSuffix(parts.first, "/"));
  for (absl::string_view kv : absl::StrSplit(parts.second, '&', absl::SkipEmpty())) {
    std::pair<std::string, std::string> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    if (p.first == "database" && !p.second.empty()) {
      o.database = p.second;
    } else if (p.first == "user") {
      o.user = p.second;
    } else if (p.first == "password") {
      o.password = p.second;
    } else if (p.first == "depth" && absl::SimpleAtoi(p.second, &o.orderbook_depth) && o.orderbook_depth > 0) {
    } else {
      return absl::InvalidArgumentError(absl::StrCat("clickhouse sink \"", spec, "\": unknown or bad parameter \"",
                                                     kv, "\" (database, user, password, depth)"));
    }
  }
  for (char c : o.database) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_') {
      return absl::InvalidArgumentError(absl::StrCat("clickhouse sink: database \"", o.database,
                                                     "\" must be letters, digits and '_'"));
    }
  }
  return o;
}

std::vector<std::string> ClickHouseWriter::Schema(absl::string_view db) {
  const std::string dec(kDec);
  const std::string levels = absl::StrCat("bids_price Array(", dec, "), bids_quantity Array(", dec,
                                          "), asks_price Array(", dec, "), asks_quantity Array(", dec, "), ");
  const std::string nullable = absl::StrCat("Nullable(", dec, ")");
  return {
      absl::StrCat("CREATE DATABASE IF NOT EXISTS ", db),
      Table(db, "trades",
            absl::StrCat("trade_id String, price ", dec, ", quantity ", dec,
                         ", side String, sequence Int64, trade_time DateTime, "),
            "trade_time"),
      Table(db, "orderbooks", absl::StrCat("last_update_id Int64, depth UInt32, ", levels, "snapshot_time DateTime, "),
            "snapshot_time"),
      Table(db, "book_updates",
            absl::StrCat("first_update_id Int64, last_update_id Int64, previous_update_id Int64, ", levels,
                         "update_time DateTime, "),
            "update_time"),
      Table(db, "book_tickers",
            absl::StrCat("update_id Int64, bid_price ", dec, ", bid_quantity ", dec, ", ask_price ", dec,
                         ", ask_quantity ", dec, ", ticker_time DateTime, "),
            "ticker_time"),
      Table(db, "tickers",
            absl::StrCat("last_price ", nullable, ", open_price ", nullable, ", high_price ", nullable,
                         ", low_price ", nullable, ", volume ", nullable, ", quote_volume ", nullable,
                         ", best_bid_price ", nullable, ", best_bid_quantity ", nullable, ", best_ask_price ",
                         nullable, ", best_ask_quantity ", nullable, ", ticker_time DateTime, "),
            "ticker_time"),
      // One row per candle: its later updates replace it, the closed one last.
      Table(db, "klines",
            absl::StrCat("kline_interval String, open_time DateTime, open_time_us Int64, close_time_us Int64, open ", dec,
                         ", high ", dec, ", low ", dec, ", close ", dec, ", volume ", dec,
                         ", closed UInt8, version UInt64, "),
            "open_time", "(exchange, symbol, kline_interval, open_time_us)", "version"),
      Table(db, "gaps",
            "channel String, after_update_id Int64, resumed_update_id Int64, reason String, gap_time DateTime, ",
            "gap_time"),
      Table(db, "polls", "path String, http_status Int32, body String, slot DateTime, slot_us Int64, ", "slot"),
      Table(db, "exchange_health",
            "status String, path String, http_status Int32, response_ms Float64, server_time_ms Int64, "
            "clock_offset_ms Int64, error String, probe_time DateTime, slot_us Int64, ",
            "probe_time"),
  };
}

bool ClickHouseWriter::Row(const v1::MarketEvent& e, std::string* table, std::string* line) const {
  RowBuilder r;
  r.Str("exchange", e.exchange()).Str("market_type", MarketType(e.exchange(), e.symbol())).Str("symbol", e.symbol());
  switch (e.body_case()) {
    case v1::MarketEvent::kTrade: {
      const v1::Trade& t = e.trade();
      *table = "trades";
      r.Str("trade_id", t.trade_id()).Dec("price", t.price()).Dec("quantity", t.quantity());
      r.Str("side", t.side() == v1::SIDE_BUY ? "buy" : t.side() == v1::SIDE_SELL ? "sell" : "");
      r.Int("sequence", t.sequence()).Int("trade_time", Seconds(e));
      break;
    }
    case v1::MarketEvent::kBook: {
      const v1::BookUpdate& b = e.book();
      int depth = b.snapshot() ? options_.orderbook_depth : 1 << 30;
      *table = b.snapshot() ? "orderbooks" : "book_updates";
      if (b.snapshot()) {
        r.Int("last_update_id", b.last_update_id());
        r.Int("depth", std::min<int>(depth, std::max(b.bids_size(), b.asks_size())));
      } else {
        r.Int("first_update_id", b.first_update_id()).Int("last_update_id", b.last_update_id());
        r.Int("previous_update_id", b.previous_update_id());
      }
      r.Decs("bids_price", b.bids(), true, depth).Decs("bids_quantity", b.bids(), false, depth);
      r.Decs("asks_price", b.asks(), true, depth).Decs("asks_quantity", b.asks(), false, depth);
      r.Int(b.snapshot() ? "snapshot_time" : "update_time", Seconds(e));
      break;
    }
    case v1::MarketEvent::kBookTicker: {
      const v1::BookTicker& t = e.book_ticker();
      *table = "book_tickers";
      r.Int("update_id", t.update_id()).Dec("bid_price", t.bid().price()).Dec("bid_quantity", t.bid().quantity());
      r.Dec("ask_price", t.ask().price()).Dec("ask_quantity", t.ask().quantity()).Int("ticker_time", Seconds(e));
      break;
    }
    case v1::MarketEvent::kTicker: {
      const v1::Ticker& t = e.ticker();
      *table = "tickers";
      r.Dec("last_price", t.last_price(), true).Dec("open_price", t.open_price(), true);
      r.Dec("high_price", t.high_price(), true).Dec("low_price", t.low_price(), true);
      r.Dec("volume", t.volume(), true).Dec("quote_volume", t.quote_volume(), true);
      r.Dec("best_bid_price", t.best_bid().price(), true).Dec("best_bid_quantity", t.best_bid().quantity(), true);
      r.Dec("best_ask_price", t.best_ask().price(), true).Dec("best_ask_quantity", t.best_ask().quantity(), true);
      r.Int("ticker_time", Seconds(e));
      break;
    }
    case v1::MarketEvent::kKline: {
      const v1::Kline& k = e.kline();
      *table = "klines";
      r.Str("kline_interval", k.interval()).Int("open_time", k.open_time_us() / 1000000);
      r.Int("open_time_us", k.open_time_us()).Int("close_time_us", k.close_time_us());
      r.Dec("open", k.open()).Dec("high", k.high()).Dec("low", k.low()).Dec("close", k.close());
      r.Dec("volume", k.volume()).Int("closed", k.closed() ? 1 : 0);
      // The closed candle replaces every update of it; among updates, the
      // one read last.
      r.UInt("version", k.closed() ? uint64_t{1} << 62 : static_cast<uint64_t>(std::max<int64_t>(0, e.received_time_us())));
      break;
    }
    case v1::MarketEvent::kGap: {
      const v1::Gap& g = e.gap();
      *table = "gaps";
      r.Str("channel", e.channel()).Int("after_update_id", g.after_update_id());
      r.Int("resumed_update_id", g.resumed_update_id()).Str("reason", g.reason()).Int("gap_time", Seconds(e));
      break;
    }
    case v1::MarketEvent::kPoll: {
      const v1::PollResult& p = e.poll();
      *table = "polls";
      r.Str("path", p.path()).Int("http_status", p.http_status()).Str("body", p.body());
      r.Int("slot", p.slot_us() / 1000000).Int("slot_us", p.slot_us());
      break;
    }
    case v1::MarketEvent::kExchangeHealth: {
      const v1::ExchangeHealth& h = e.exchange_health();
      *table = "exchange_health";
      r.Str("status", h.status()).Str("path", h.path()).Int("http_status", h.http_status());
      r.Float("response_ms", static_cast<double>(h.response_us()) / 1000.0);
      r.Int("server_time_ms", h.server_time_ms()).Int("clock_offset_ms", h.clock_offset_ms());
      r.Str("error", h.error()).Int("probe_time", h.slot_us() / 1000000).Int("slot_us", h.slot_us());
      break;
    }
    default:
      return false;
  }
  r.Int("exchange_time_us", e.exchange_time_us()).Int("received_time_us", e.received_time_us());
  r.Str("node_id", e.node_id()).Str("key", e.key());
  *line = r.Done();
  return r.ok();
}

ClickHouseWriter::ClickHouseWriter(ClickHouseOptions options) : options_(std::move(options)) {
  curl_ = curl_easy_init();
}

ClickHouseWriter::~ClickHouseWriter() {
  if (curl_ != nullptr) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

absl::Status ClickHouseWriter::Query(const std::string& sql, const std::string& body) {
  CURL* c = static_cast<CURL*>(curl_);
  if (c == nullptr) return absl::InternalError("clickhouse sink: curl_easy_init failed");
  char* escaped = curl_easy_escape(c, sql.c_str(), static_cast<int>(sql.size()));
  std::string url = absl::StrCat(options_.url, "/?query=", escaped);
  curl_free(escaped);
  std::string reply;
  curl_slist* headers = nullptr;
  std::string user = absl::StrCat("X-ClickHouse-User: ", options_.user);
  std::string key = absl::StrCat("X-ClickHouse-Key: ", options_.password);
  if (!options_.user.empty()) headers = curl_slist_append(headers, user.c_str());
  if (!options_.password.empty()) headers = curl_slist_append(headers, key.c_str());
  curl_easy_reset(c);
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &WriteBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &reply);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(absl::ToInt64Milliseconds(options_.timeout)));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
  CURLcode rc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK) {
    return absl::UnavailableError(absl::StrCat("clickhouse ", options_.url, ": ", curl_easy_strerror(rc)));
  }
  if (status != 200) {
    if (absl::StrContains(reply, "Code: 60,") || absl::StrContains(reply, "Code: 81,")) tables_ready_ = false;
    return absl::UnavailableError(absl::StrCat("clickhouse ", options_.url, ": HTTP ", status, ": ",
                                               absl::StripAsciiWhitespace(reply.substr(0, 300))));
  }
  return absl::OkStatus();
}

absl::Status ClickHouseWriter::EnsureTables() {
  if (tables_ready_) return absl::OkStatus();
  for (const std::string& sql : Schema(options_.database)) {
    absl::Status s = Query(sql, "");
    if (!s.ok()) return s;
  }
  tables_ready_ = true;
  return absl::OkStatus();
}

absl::Status ClickHouseWriter::Write(const std::vector<v1::MarketEvent>& batch) {
  absl::Status ready = EnsureTables();
  if (!ready.ok()) return ready;
  std::map<std::string, std::string> bodies;  // by table
  std::string table, line;
  for (const v1::MarketEvent& e : batch) {
    if (!Row(e, &table, &line)) {
      ++refused_;
      common::Log(common::LogLevel::kWarning, "sink",
                  absl::StrCat("clickhouse sink: record ", e.key(), " is left out: a price or amount is not a decimal"));
      continue;
    }
    std::string& body = bodies[table];
    body += line;
    body += '\n';
  }
  for (const auto& [t, body] : bodies) {
    absl::Status s = Query(absl::StrCat("INSERT INTO ", options_.database, ".", t, " FORMAT JSONEachRow"), body);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace marketprism::node
