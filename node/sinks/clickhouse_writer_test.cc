#include "node/sinks/clickhouse_writer.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"

namespace marketprism::node {
namespace {

TEST(ClickHouseWriterTest, ARowHasExactDecimalsAsNumbersAndTheKey) {
  ClickHouseWriter w(ClickHouseOptions{.url = "http://127.0.0.1:1"});
  v1::MarketEvent e;
  e.set_exchange("okx");
  e.set_symbol("BTC-USDT-SWAP");
  e.set_channel("trades");
  e.set_exchange_time_us(1'700'000'000'123'456);
  e.set_key("okx/trades/BTC-USDT-SWAP/42");
  e.mutable_trade()->set_trade_id("42");
  e.mutable_trade()->set_price("0036150.10000000");
  e.mutable_trade()->set_quantity("0.000000000000000001");
  e.mutable_trade()->set_side(v1::SIDE_SELL);
  std::string table, line;
  ASSERT_TRUE(w.Row(e, &table, &line));
  EXPECT_EQ(table, "trades");
  EXPECT_TRUE(absl::StrContains(line, "\"price\":36150.1,")) << line;
  EXPECT_TRUE(absl::StrContains(line, "\"quantity\":0.000000000000000001,")) << line;
  EXPECT_TRUE(absl::StrContains(line, "\"market_type\":\"perpetual\"")) << line;
  EXPECT_TRUE(absl::StrContains(line, "\"side\":\"sell\"")) << line;
  EXPECT_TRUE(absl::StrContains(line, "\"trade_time\":1700000000,")) << line;
  EXPECT_TRUE(absl::StrContains(line, "\"key\":\"okx/trades/BTC-USDT-SWAP/42\"}")) << line;
  e.mutable_trade()->set_price("1e5");
  EXPECT_FALSE(w.Row(e, &table, &line));
}

TEST(ClickHouseWriterTest, ASnapshotKeepsItsTopLevelsAndATickerWithoutAnOpenHasNull) {
  ClickHouseOptions o{.url = "http://127.0.0.1:1"};
  o.orderbook_depth = 2;
  ClickHouseWriter w(o);
  v1::MarketEvent e;
  e.set_exchange("binance_spot");
  e.set_symbol("BTCUSDT");
  auto* b = e.mutable_book();
  b->set_snapshot(true);
  for (const char* p : {"3", "2", "1"}) {
    auto* l = b->add_bids();
    l->set_price(p);
    l->set_quantity("1.5");
  }
  std::string table, line;
  ASSERT_TRUE(w.Row(e, &table, &line));
  EXPECT_EQ(table, "orderbooks");
  EXPECT_TRUE(absl::StrContains(line, "\"bids_price\":[3,2],\"bids_quantity\":[1.5,1.5]")) << line;
  EXPECT_TRUE(absl::StrContains(line, "\"depth\":2")) << line;
  v1::MarketEvent t;
  t.set_exchange("deribit");
  t.set_symbol("BTC-PERPETUAL");
  t.mutable_ticker()->set_last_price("100");
  ASSERT_TRUE(w.Row(t, &table, &line));
  EXPECT_EQ(table, "tickers");
  EXPECT_TRUE(absl::StrContains(line, "\"open_price\":null")) << line;
}

TEST(ClickHouseWriterTest, EveryTableCollapsesRepeatsAndUsesOnlyWhat1816Accepts) {
  std::vector<std::string> schema = ClickHouseWriter::Schema("md");
  ASSERT_EQ(schema.size(), 10u);  // the database, nine tables
  EXPECT_EQ(schema[0], "CREATE DATABASE IF NOT EXISTS md");
  for (size_t i = 1; i < schema.size(); ++i) {
    EXPECT_TRUE(absl::StrContains(schema[i], "ReplacingMergeTree")) << schema[i];
    for (const char* unsupported : {"DateTime64", "TTL", "CODEC", "LowCardinality"}) {
      EXPECT_FALSE(absl::StrContains(schema[i], unsupported)) << schema[i];
    }
  }
}

TEST(ClickHouseWriterTest, SpecsNameWhatIsWrong) {
  auto ok = ParseClickHouseSpec("http://127.0.0.1:8123/?database=md&depth=50");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->url, "http://127.0.0.1:8123");
  EXPECT_EQ(ok->database, "md");
  EXPECT_EQ(ok->orderbook_depth, 50);
  EXPECT_TRUE(absl::StrContains(ParseClickHouseSpec("tcp://x:9000").status().message(), "expected http://"));
  EXPECT_TRUE(absl::StrContains(ParseClickHouseSpec("http://x:1/?databse=md").status().message(), "databse=md"));
  EXPECT_TRUE(absl::StrContains(ParseClickHouseSpec("http://x:1/?database=a;drop").status().message(),
                                "must be letters"));
}

TEST(ClickHouseWriterTest, AHealthProbeIsARowOfExchangeHealth) {
  ClickHouseWriter w(ClickHouseOptions{.url = "http://127.0.0.1:1"});
  v1::MarketEvent e;
  e.set_exchange("deribit");
  e.set_symbol("server_time");
  e.set_channel("exchange_health");
  e.set_key("deribit/exchange_health/1700000000000000");
  v1::ExchangeHealth* h = e.mutable_exchange_health();
  h->set_status("up");
  h->set_http_status(200);
  h->set_response_us(12345);
  h->set_server_time_ms(1700000000012);
  h->set_slot_us(1700000000000000);
  std::string table, line;
  ASSERT_TRUE(w.Row(e, &table, &line));
  EXPECT_EQ(table, "exchange_health");
  EXPECT_TRUE(absl::StrContains(line, "\"status\":\"up\"")) << line;
  EXPECT_TRUE(absl::StrContains(line, "\"response_ms\":12.345,")) << line;
  EXPECT_TRUE(absl::StrContains(line, "\"probe_time\":1700000000,")) << line;
  bool created = false;
  for (const std::string& sql : ClickHouseWriter::Schema("md")) created = created || absl::StrContains(sql, "md.exchange_health ");
  EXPECT_TRUE(created);
}

}  // namespace
}  // namespace marketprism::node
