// File: exchange_sim/market.h
//
// Deterministic synthetic market data for the exchange simulator. Everything
// is a pure function of (seed, instrument, time), so two simulators with the
// same seed agree at every timestamp, any point of the history can be read in
// O(1) without precomputing, and REST snapshots agree with stream diffs:
//
//  * Price: base * exp(sum of value-noise octaves), a random walk in shape.
//  * Book at tick n (one tick = 100 ms): levels on the instrument's price grid
//    around the mid at n; far levels are static, levels near the mid change
//    on per-level schedules. A diff between ticks is exactly book(n) vs
//    book(m), so snapshot update ids and stream U/u ids line up.
//  * Trades: trade k happens at a fixed rate with per-trade jitter; ids are k.
//  * Candles: open = P(open time), close = P(close time), high/low sampled.
//
// Thread-compatible (const methods only after construction).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace marketprism::sim {

enum class InstrumentKind { kSpot, kSwap, kFuture, kOption };

struct Instrument {
  std::string exchange;     // "binance_spot", "binance_usdm", "okx", "deribit"
  std::string symbol;       // native name: BTCUSDT, BTC-USDT, BTC-PERPETUAL
  std::string base;         // BTC
  std::string quote;        // USDT
  InstrumentKind kind = InstrumentKind::kSpot;
  double base_price = 0;
  int price_decimals = 2;   // the price grid is tick_units * 10^-price_decimals
  int64_t tick_units = 1;
  int qty_decimals = 5;
  double daily_vol = 0.03;
  int trades_per_second = 10;
  uint64_t key = 0;         // hash of exchange+symbol, mixed into every draw
};

// For benchmarks at scale: synthetic instruments beside the listed ones, and
// one message rate for all.
struct MarketOptions {
  // This many more spot instruments on each of binance_spot and okx, named
  // X0001USDT / X0001-USDT, ... (base X0001), with plausible, varied prices.
  int extra_instruments = 0;
  // Trades per second of every instrument (0: each its own, 2 to 25; at
  // most 1000). Book diffs come at every 100 ms tick regardless.
  int trades_per_second = 0;
};

struct Level {
  int64_t grid = 0;   // price = grid * tick
  int64_t qty = 0;    // in units of 10^-qty_decimals; 0 = removed
};

struct Book {
  int64_t tick = 0;                // 100 ms tick index
  std::vector<Level> bids;         // best first
  std::vector<Level> asks;         // best first
};

struct BookDiff {
  std::vector<Level> bids;   // changed levels, qty 0 = removed, best first
  std::vector<Level> asks;
};

// Differences between two bounded views of a book (say, the top 400 levels
// at two ticks): levels that appear, change or leave (qty 0), best first.
BookDiff DiffViews(const Book& before, const Book& after);

struct Trade {
  int64_t id = 0;
  int64_t time_ms = 0;
  int64_t price_grid = 0;
  int64_t qty = 0;
  bool buyer_is_maker = false;
};

struct Candle {
  int64_t open_ms = 0;
  int64_t close_ms = 0;    // open + interval - 1
  int64_t open = 0, high = 0, low = 0, close = 0;  // price grid units
  int64_t volume = 0;      // qty units
  int64_t trades = 0;
};

class Market {
 public:
  static constexpr int64_t kTickMs = 100;
  // Levels either side of the mid that make up the book (Binance's deepest
  // snapshot is 5000 levels; empty grid points are skipped).
  static constexpr int64_t kUniverse = 8000;
  // Levels this close to the mid change quantity over time; deeper ones are static.
  static constexpr int64_t kActiveDepth = 60;

  // The listed instruments; with `options`, more of them (many-instrument
  // mode) and every trade rate replaced.
  explicit Market(uint64_t seed, const MarketOptions& options = {});

  uint64_t seed() const { return seed_; }
  const std::vector<Instrument>& instruments() const { return instruments_; }
  std::vector<const Instrument*> InstrumentsOf(absl::string_view exchange) const;
  const Instrument* Find(absl::string_view exchange, absl::string_view symbol) const;

  // Mid price at `ms` (Unix milliseconds), as a double.
  double Price(const Instrument& inst, int64_t ms) const;
  int64_t PriceGrid(const Instrument& inst, int64_t ms) const;

  // The book at `tick` with at most `depth` levels per side.
  Book BookAt(const Instrument& inst, int64_t tick, int depth) const;
  // Levels that differ between tick `from` and tick `to` (from < to).
  BookDiff Diff(const Instrument& inst, int64_t from, int64_t to) const;

  // Trades: the id of the last trade at or before `ms`, and trade `id`.
  int64_t LastTradeId(const Instrument& inst, int64_t ms) const;
  Trade TradeById(const Instrument& inst, int64_t id) const;
  // First trade id at or after `ms`.
  int64_t FirstTradeIdAtOrAfter(const Instrument& inst, int64_t ms) const;

  // The candle of `interval_ms` opening at `open_ms` (aligned by the caller),
  // cut at `now_ms` if it has not closed yet.
  Candle CandleAt(const Instrument& inst, int64_t open_ms, int64_t interval_ms,
                  int64_t now_ms) const;

  // Formatting: exact decimal strings.
  static std::string FormatFixed(int64_t units, int decimals, int pad_to = -1);
  std::string PriceStr(const Instrument& inst, int64_t grid, int pad_to = -1) const;
  std::string QtyStr(const Instrument& inst, int64_t qty, int pad_to = -1) const;
  double PriceOf(const Instrument& inst, int64_t grid) const;
  double QtyOf(const Instrument& inst, int64_t qty) const;

  // Deterministic draws, exposed for data that only needs to look plausible.
  uint64_t Hash(uint64_t a, uint64_t b = 0, uint64_t c = 0, uint64_t d = 0) const;
  double Unit(uint64_t h) const { return static_cast<double>(h >> 11) * 0x1.0p-53; }

 private:
  int64_t LevelQty(const Instrument& inst, int64_t grid, int64_t tick, int64_t mid) const;
  int64_t MidGrid(const Instrument& inst, int64_t tick) const;
  int64_t TradeIntervalMs(const Instrument& inst) const;

  uint64_t seed_;
  std::vector<Instrument> instruments_;
  // exchange -> symbol -> index in instruments_
  std::map<std::string, std::map<std::string, size_t, std::less<>>, std::less<>> index_;
};

}  // namespace marketprism::sim
