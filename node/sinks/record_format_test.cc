#include "node/sinks/record_format.h"

#include <gtest/gtest.h>

namespace marketprism::node {
namespace {

TEST(RecordFormatTest, MarketTypesFollowTheInstrumentsName) {
  EXPECT_EQ(MarketType("binance_spot", "BTCUSDT"), "spot");
  EXPECT_EQ(MarketType("binance_usdm", "BTCUSDT"), "perpetual");
  EXPECT_EQ(MarketType("binance_usdm", "BTCUSDT_250627"), "futures");
  EXPECT_EQ(MarketType("okx", "BTC-USDT"), "spot");
  EXPECT_EQ(MarketType("okx", "BTC-USDT-SWAP"), "perpetual");
  EXPECT_EQ(MarketType("okx", "BTC-USD-250627"), "futures");
  EXPECT_EQ(MarketType("okx", "BTC-USD-250627-60000-C"), "option");
  EXPECT_EQ(MarketType("deribit", "BTC-PERPETUAL"), "perpetual");
  EXPECT_EQ(MarketType("deribit", "BTC-27DEC24"), "futures");
  EXPECT_EQ(MarketType("deribit", "BTC-27DEC24-60000-P"), "option");
  EXPECT_EQ(MarketType("deribit", "BTC_USDC"), "spot");
}

TEST(RecordFormatTest, SubjectsAreTypeExchangeMarketTypeSymbolWithUnsafeCharactersReplaced) {
  v1::MarketEvent e;
  e.set_exchange("okx");
  e.set_symbol("BTC-USDT-SWAP");
  e.mutable_trade();
  EXPECT_EQ(NatsSubject(e), "trade.okx.perpetual.BTC-USDT-SWAP");
  e.mutable_book();
  EXPECT_EQ(NatsSubject(e), "orderbook.okx.perpetual.BTC-USDT-SWAP");
  e.set_exchange("binance_spot");
  e.set_symbol("every 30 s.tickers>");
  e.mutable_poll();
  EXPECT_EQ(NatsSubject(e), "poll.binance_spot.spot.every_30_s_tickers_");
}

TEST(RecordFormatTest, AJsonLineKeepsTheProtosFieldNamesAndExactDecimals) {
  v1::MarketEvent e;
  e.set_exchange("binance_spot");
  e.set_key("binance_spot/trades/BTCUSDT/7");
  e.mutable_trade()->set_price("0.00000001");
  std::string line = RecordJson(e);
  EXPECT_NE(line.find("\"key\":\"binance_spot/trades/BTCUSDT/7\""), std::string::npos) << line;
  EXPECT_NE(line.find("\"price\":\"0.00000001\""), std::string::npos) << line;
  EXPECT_EQ(line.find('\n'), std::string::npos);
}

}  // namespace
}  // namespace marketprism::node
