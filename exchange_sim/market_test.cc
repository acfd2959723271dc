#include "exchange_sim/market.h"

#include <climits>
#include <cmath>
#include <map>
#include <set>

#include <gtest/gtest.h>

namespace marketprism::sim {
namespace {

const int64_t kNowMs = 1'795'000'000'000;  // 2026-11-18

std::map<int64_t, int64_t> AsMap(const std::vector<Level>& levels) {
  std::map<int64_t, int64_t> m;
  for (const Level& l : levels) m[l.grid] = l.qty;
  return m;
}

void Apply(std::map<int64_t, int64_t>& side, const std::vector<Level>& diff) {
  for (const Level& l : diff) {
    if (l.qty == 0) {
      side.erase(l.grid);
    } else {
      side[l.grid] = l.qty;
    }
  }
}

TEST(MarketTest, SameSeedSameData) {
  Market a(7), b(7), c(8);
  const Instrument& ia = *a.Find("binance_spot", "BTCUSDT");
  const Instrument& ib = *b.Find("binance_spot", "BTCUSDT");
  const Instrument& ic = *c.Find("binance_spot", "BTCUSDT");
  EXPECT_EQ(a.Price(ia, kNowMs), b.Price(ib, kNowMs));
  EXPECT_NE(a.Price(ia, kNowMs), c.Price(ic, kNowMs));
  Book ba = a.BookAt(ia, kNowMs / 100, 50), bb = b.BookAt(ib, kNowMs / 100, 50);
  EXPECT_EQ(AsMap(ba.bids), AsMap(bb.bids));
  EXPECT_EQ(a.TradeById(ia, 12345).price_grid, b.TradeById(ib, 12345).price_grid);
}

TEST(MarketTest, BooksAreOrderedAndUncrossed) {
  Market m(1);
  for (const Instrument& inst : m.instruments()) {
    Book b = m.BookAt(inst, kNowMs / 100, 100);
    // A cheap option has fewer than 100 price points below its mid.
    ASSERT_TRUE(b.bids.size() == 100u || b.bids.back().grid < 10) << inst.symbol;
    ASSERT_EQ(b.asks.size(), 100u) << inst.symbol;
    EXPECT_LT(b.bids[0].grid, b.asks[0].grid) << inst.symbol;
    for (size_t i = 1; i < b.bids.size(); ++i) EXPECT_GT(b.bids[i - 1].grid, b.bids[i].grid);
    for (size_t i = 1; i < b.asks.size(); ++i) EXPECT_LT(b.asks[i - 1].grid, b.asks[i].grid);
    // The book straddles the price.
    double mid = m.Price(inst, kNowMs / 100 * 100);
    EXPECT_LE(m.PriceOf(inst, b.bids[0].grid), mid * 1.0001) << inst.symbol;
    EXPECT_GE(m.PriceOf(inst, b.asks[0].grid), mid * 0.9999) << inst.symbol;
  }
}

TEST(MarketTest, ManyInstrumentModeListsThousandsOfPlausibleSymbolsAtOneRate) {
  Market listed(1);
  Market m(1, MarketOptions{.extra_instruments = 2000, .trades_per_second = 50});
  for (const char* exchange : {"binance_spot", "okx"}) {
    EXPECT_EQ(m.InstrumentsOf(exchange).size(), listed.InstrumentsOf(exchange).size() + 2000) << exchange;
  }
  // The listed instruments are as they were (but for the rate).
  EXPECT_EQ(m.Price(*m.Find("binance_spot", "BTCUSDT"), kNowMs),
            listed.Price(*listed.Find("binance_spot", "BTCUSDT"), kNowMs));
  const Instrument* x = m.Find("okx", "X2000-USDT");
  ASSERT_NE(x, nullptr);
  EXPECT_EQ(x->base, "X2000");
  EXPECT_NE(m.Find("binance_spot", "X0001USDT"), nullptr);
  EXPECT_EQ(m.Find("binance_spot", "X2001USDT"), nullptr);
  std::set<double> prices;
  for (const Instrument* inst : m.InstrumentsOf("binance_spot")) {
    EXPECT_EQ(inst->trades_per_second, 50) << inst->symbol;
    // Each trade is jittered within its 20 ms slot: 500 in 10 s, give or take one.
    EXPECT_NEAR(m.LastTradeId(*inst, kNowMs + 10'000) - m.LastTradeId(*inst, kNowMs), 500, 1) << inst->symbol;
    Book b = m.BookAt(*inst, kNowMs / 100, 20);
    ASSERT_EQ(b.asks.size(), 20u) << inst->symbol;
    ASSERT_FALSE(b.bids.empty()) << inst->symbol;
    EXPECT_LT(b.bids[0].grid, b.asks[0].grid) << inst->symbol;
    double mid = m.Price(*inst, kNowMs / 100 * 100);
    EXPECT_GT(mid, 0) << inst->symbol;
    EXPECT_LE(m.PriceOf(*inst, b.bids[0].grid), mid * 1.001) << inst->symbol;
    EXPECT_GE(m.PriceOf(*inst, b.asks[0].grid), mid * 0.999) << inst->symbol;
    prices.insert(std::round(std::log10(inst->base_price)));
  }
  EXPECT_GE(prices.size(), 5u) << "prices spread over orders of magnitude";
}

TEST(MarketTest, DeepestBinanceSnapshotIsAvailable) {
  Market m(1);
  Book b = m.BookAt(*m.Find("binance_spot", "BTCUSDT"), kNowMs / 100, 5000);
  EXPECT_EQ(b.bids.size(), 5000u);
  EXPECT_EQ(b.asks.size(), 5000u);
}

// The property every depth stream relies on: book(a) + Diff(a, b) == book(b).
TEST(MarketTest, DiffTurnsOneFullBookIntoTheNext) {
  Market m(3);
  for (const char* sym : {"BTCUSDT", "XRPUSDT", "BNBBTC"}) {
    const Instrument& inst = *m.Find("binance_spot", sym);
    for (int64_t span : {1, 10, 37, 600}) {
      int64_t a = kNowMs / 100 + span * 13, b = a + span;
      Book full_a = m.BookAt(inst, a, INT_MAX), full_b = m.BookAt(inst, b, INT_MAX);
      auto bids = AsMap(full_a.bids), asks = AsMap(full_a.asks);
      BookDiff d = m.Diff(inst, a, b);
      Apply(bids, d.bids);
      Apply(asks, d.asks);
      EXPECT_EQ(bids, AsMap(full_b.bids)) << sym << " span " << span;
      EXPECT_EQ(asks, AsMap(full_b.asks)) << sym << " span " << span;
    }
  }
}

TEST(MarketTest, DiffOfChainedTicksEqualsOneDiff) {
  Market m(4);
  const Instrument& inst = *m.Find("okx", "BTC-USDT");
  int64_t a = kNowMs / 100;
  auto bids = AsMap(m.BookAt(inst, a, INT_MAX).bids);
  for (int64_t t = a; t < a + 10; ++t) Apply(bids, m.Diff(inst, t, t + 1).bids);
  EXPECT_EQ(bids, AsMap(m.BookAt(inst, a + 10, INT_MAX).bids));
}

TEST(MarketTest, DiffViewsTurnsOneBoundedViewIntoTheNext) {
  Market m(5);
  const Instrument& inst = *m.Find("deribit", "BTC-PERPETUAL");
  for (int64_t step : {1, 5, 50}) {
    Book a = m.BookAt(inst, kNowMs / 100, 400), b = m.BookAt(inst, kNowMs / 100 + step, 400);
    BookDiff d = DiffViews(a, b);
    auto bids = AsMap(a.bids), asks = AsMap(a.asks);
    Apply(bids, d.bids);
    Apply(asks, d.asks);
    EXPECT_EQ(bids, AsMap(b.bids));
    EXPECT_EQ(asks, AsMap(b.asks));
  }
}

TEST(MarketTest, DiffsAreUsuallySmall) {
  Market m(1);
  const Instrument& inst = *m.Find("binance_spot", "BTCUSDT");
  BookDiff d = m.Diff(inst, kNowMs / 100, kNowMs / 100 + 1);
  EXPECT_GT(d.bids.size() + d.asks.size(), 0u);
  EXPECT_LT(d.bids.size() + d.asks.size(), 2000u);
}

TEST(MarketTest, TradesAreOrderedAndIndexedByTime) {
  Market m(1);
  const Instrument& inst = *m.Find("binance_spot", "ETHUSDT");
  int64_t last = m.LastTradeId(inst, kNowMs);
  EXPECT_LE(m.TradeById(inst, last).time_ms, kNowMs);
  EXPECT_GT(m.TradeById(inst, last + 1).time_ms, kNowMs);
  for (int64_t id = last - 100; id < last; ++id) {
    EXPECT_LE(m.TradeById(inst, id).time_ms, m.TradeById(inst, id + 1).time_ms);
  }
  int64_t first = m.FirstTradeIdAtOrAfter(inst, kNowMs);
  EXPECT_EQ(first, last + 1);
}

TEST(MarketTest, CandlesChainAndBoundTheirPrices) {
  Market m(1);
  const Instrument& inst = *m.Find("binance_spot", "BTCUSDT");
  int64_t step = 60'000;
  int64_t open = kNowMs / step * step - 100 * step;
  for (int i = 0; i < 100; ++i, open += step) {
    Candle c = m.CandleAt(inst, open, step, kNowMs);
    Candle next = m.CandleAt(inst, open + step, step, kNowMs);
    EXPECT_EQ(c.close, next.open);
    EXPECT_GE(c.high, std::max(c.open, c.close));
    EXPECT_LE(c.low, std::min(c.open, c.close));
    EXPECT_EQ(c.close_ms, open + step - 1);
    EXPECT_GT(c.volume, 0);
  }
}

TEST(MarketTest, ThirtyDaysOfHistoryStayPlausible) {
  Market m(1);
  for (const Instrument& inst : m.instruments()) {
    for (int day = 0; day <= 45; ++day) {
      double p = m.Price(inst, kNowMs - day * 86'400'000LL);
      EXPECT_GT(p, inst.base_price * 0.3) << inst.symbol << " day " << day;
      EXPECT_LT(p, inst.base_price * 3.0) << inst.symbol << " day " << day;
    }
  }
}

TEST(MarketTest, FormatFixedIsExact) {
  EXPECT_EQ(Market::FormatFixed(400000200, 8), "4.00000200");
  EXPECT_EQ(Market::FormatFixed(5, 2), "0.05");
  EXPECT_EQ(Market::FormatFixed(123456, 2, 8), "1234.56000000");
  EXPECT_EQ(Market::FormatFixed(7, 0, 8), "7.00000000");
  EXPECT_EQ(Market::FormatFixed(7, 0), "7");
}

}  // namespace
}  // namespace marketprism::sim
