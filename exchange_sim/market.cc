#include "exchange_sim/market.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/int_math.h"

namespace marketprism::sim {

namespace {

using common::FloorDiv;

uint64_t Mix(uint64_t x) {
  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t HashString(absl::string_view s) {
  uint64_t h = 1469598103934665603ULL;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  return Mix(h);
}

int64_t Pow10(int n) {
  int64_t p = 1;
  while (n-- > 0) p *= 10;
  return p;
}

struct Spec {
  const char* exchange;
  const char* symbol;
  const char* base;
  const char* quote;
  InstrumentKind kind;
  double price;
  int price_decimals;
  int64_t tick_units;
  int qty_decimals;
  int tps;
};

// Plausible prices, tick sizes and lot precisions; the data is synthetic.
constexpr Spec kSpecs[] = {
    {"binance_spot", "BTCUSDT", "BTC", "USDT", InstrumentKind::kSpot, 60000, 2, 1, 5, 20},
    {"binance_spot", "ETHUSDT", "ETH", "USDT", InstrumentKind::kSpot, 3000, 2, 1, 4, 15},
    {"binance_spot", "BNBUSDT", "BNB", "USDT", InstrumentKind::kSpot, 600, 2, 1, 3, 8},
    {"binance_spot", "SOLUSDT", "SOL", "USDT", InstrumentKind::kSpot, 150, 2, 1, 3, 10},
    {"binance_spot", "XRPUSDT", "XRP", "USDT", InstrumentKind::kSpot, 0.6, 4, 1, 0, 8},
    {"binance_spot", "ADAUSDT", "ADA", "USDT", InstrumentKind::kSpot, 0.45, 4, 1, 1, 5},
    {"binance_spot", "DOGEUSDT", "DOGE", "USDT", InstrumentKind::kSpot, 0.15, 5, 1, 0, 8},
    {"binance_spot", "LTCUSDT", "LTC", "USDT", InstrumentKind::kSpot, 80, 2, 1, 3, 4},
    {"binance_spot", "BNBBTC", "BNB", "BTC", InstrumentKind::kSpot, 0.01, 6, 1, 3, 2},
    {"binance_usdm", "BTCUSDT", "BTC", "USDT", InstrumentKind::kSwap, 60010, 1, 1, 3, 25},
    {"binance_usdm", "ETHUSDT", "ETH", "USDT", InstrumentKind::kSwap, 3001, 2, 1, 3, 15},
    {"binance_usdm", "SOLUSDT", "SOL", "USDT", InstrumentKind::kSwap, 150.1, 3, 10, 0, 8},
    {"okx", "BTC-USDT", "BTC", "USDT", InstrumentKind::kSpot, 60005, 1, 1, 8, 15},
    {"okx", "ETH-USDT", "ETH", "USDT", InstrumentKind::kSpot, 3000.5, 2, 1, 6, 10},
    {"okx", "SOL-USDT", "SOL", "USDT", InstrumentKind::kSpot, 150.05, 2, 1, 6, 6},
    {"okx", "BTC-USDT-SWAP", "BTC", "USDT", InstrumentKind::kSwap, 60020, 1, 1, 2, 20},
    {"okx", "ETH-USDT-SWAP", "ETH", "USDT", InstrumentKind::kSwap, 3002, 2, 1, 1, 12},
    {"deribit", "BTC-PERPETUAL", "BTC", "USD", InstrumentKind::kSwap, 60030, 1, 5, 0, 10},
    {"deribit", "ETH-PERPETUAL", "ETH", "USD", InstrumentKind::kSwap, 3003, 2, 5, 0, 8},
    {"deribit", "BTC-25DEC26", "BTC", "USD", InstrumentKind::kFuture, 61500, 1, 25, 0, 2},
    {"deribit", "BTC-25DEC26-70000-C", "BTC", "USD", InstrumentKind::kOption, 0.0450, 4, 5, 1, 1},
    {"deribit", "BTC-25DEC26-50000-P", "BTC", "USD", InstrumentKind::kOption, 0.0380, 4, 5, 1, 1},
};

// Value-noise octaves: (period in ms). Amplitudes scale with sqrt(period) so
// the sum behaves like a random walk over minutes to weeks.
constexpr int64_t kOctaves[] = {2'000,      15'000,     60'000,      600'000,
                                3'600'000,  21'600'000, 86'400'000,  604'800'000};

}  // namespace

Market::Market(uint64_t seed, const MarketOptions& options) : seed_(seed) {
  auto add = [&](Instrument inst) {
    if (options.trades_per_second > 0) inst.trades_per_second = std::min(options.trades_per_second, 1000);
    inst.daily_vol = inst.kind == InstrumentKind::kOption ? 0.08 : 0.03;
    inst.key = Mix(seed ^ HashString(absl::StrCat(inst.exchange, "/", inst.symbol)));
    index_[inst.exchange][inst.symbol] = instruments_.size();
    instruments_.push_back(std::move(inst));
  };
  for (const Spec& s : kSpecs) {
    Instrument inst;
    inst.exchange = s.exchange;
    inst.symbol = s.symbol;
    inst.base = s.base;
    inst.quote = s.quote;
    inst.kind = s.kind;
    inst.base_price = s.price;
    inst.price_decimals = s.price_decimals;
    inst.tick_units = s.tick_units;
    inst.qty_decimals = s.qty_decimals;
    inst.trades_per_second = s.tps;
    add(std::move(inst));
  }
  for (int i = 1; i <= options.extra_instruments; ++i) {
    std::string base = absl::StrFormat("X%04d", i);
    // Prices from 0.01 to 10,000, four significant digits on the grid.
    uint64_t h = Mix(seed ^ static_cast<uint64_t>(i) * 0x9e37);
    int magnitude = static_cast<int>(h % 7) - 2;  // 10^-2 .. 10^4
    double price = std::pow(10.0, magnitude) * (1.0 + static_cast<double>((h >> 8) % 900) / 100.0);
    int decimals = std::max(0, 3 - magnitude);
    for (const char* exchange : {"binance_spot", "okx"}) {
      Instrument inst;
      inst.exchange = exchange;
      inst.symbol = absl::StrCat(base, std::string(exchange) == "okx" ? "-" : "", "USDT");
      inst.base = base;
      inst.quote = "USDT";
      inst.kind = InstrumentKind::kSpot;
      inst.base_price = price;
      inst.price_decimals = decimals;
      inst.tick_units = 1;
      inst.qty_decimals = std::max(0, 2 + magnitude);
      inst.trades_per_second = 2 + static_cast<int>((h >> 20) % 9);
      add(std::move(inst));
    }
  }
}

std::vector<const Instrument*> Market::InstrumentsOf(absl::string_view exchange) const {
  std::vector<const Instrument*> out;
  for (const Instrument& i : instruments_) {
    if (i.exchange == exchange) out.push_back(&i);
  }
  return out;
}

const Instrument* Market::Find(absl::string_view exchange, absl::string_view symbol) const {
  auto on = index_.find(exchange);
  if (on == index_.end()) return nullptr;
  auto it = on->second.find(symbol);
  return it == on->second.end() ? nullptr : &instruments_[it->second];
}

uint64_t Market::Hash(uint64_t a, uint64_t b, uint64_t c, uint64_t d) const {
  return Mix(Mix(Mix(Mix(a) ^ b) ^ c) ^ d);
}

double Market::Price(const Instrument& inst, int64_t ms) const {
  double x = 0;
  for (size_t k = 0; k < std::size(kOctaves); ++k) {
    int64_t period = kOctaves[k];
    int64_t i = FloorDiv(ms, period);
    double f = static_cast<double>(ms - i * period) / static_cast<double>(period);
    double v0 = Unit(Hash(inst.key, k, static_cast<uint64_t>(i))) * 2 - 1;
    double v1 = Unit(Hash(inst.key, k, static_cast<uint64_t>(i + 1))) * 2 - 1;
    double amp = inst.daily_vol * std::sqrt(static_cast<double>(period) / 86'400'000.0) * 1.7;
    x += amp * (v0 + (v1 - v0) * f);
  }
  return inst.base_price * std::exp(x);
}

double Market::PriceOf(const Instrument& inst, int64_t grid) const {
  return static_cast<double>(grid * inst.tick_units) /
         static_cast<double>(Pow10(inst.price_decimals));
}

double Market::QtyOf(const Instrument& inst, int64_t qty) const {
  return static_cast<double>(qty) / static_cast<double>(Pow10(inst.qty_decimals));
}

int64_t Market::PriceGrid(const Instrument& inst, int64_t ms) const {
  double tick = PriceOf(inst, 1);
  return std::max<int64_t>(2, std::llround(Price(inst, ms) / tick));
}

int64_t Market::MidGrid(const Instrument& inst, int64_t tick) const {
  return PriceGrid(inst, tick * kTickMs);
}

int64_t Market::LevelQty(const Instrument& inst, int64_t grid, int64_t tick, int64_t mid) const {
  int64_t d = grid > mid ? grid - mid : mid - grid;
  if (d == 0 || d > kUniverse || grid < 1) return 0;  // prices stay positive
  uint64_t h = Hash(inst.key, 0x1e7e1, static_cast<uint64_t>(grid));
  // Typical level notional ~ 4,000 in the quote currency.
  double typical = 4000.0 / inst.base_price * static_cast<double>(Pow10(inst.qty_decimals));
  if (d > kActiveDepth) {
    if (Unit(h) < 0.25) return 0;  // an empty grid point
    return std::max<int64_t>(1, std::llround(typical * (0.2 + 2.0 * Unit(Mix(h)))));
  }
  int64_t period = 3 + static_cast<int64_t>(h % 40);
  int64_t phase = static_cast<int64_t>((h >> 20) % static_cast<uint64_t>(period));
  int64_t epoch = FloorDiv(tick + phase, period);
  uint64_t hq = Hash(h, static_cast<uint64_t>(epoch));
  if (Unit(hq) < 0.15) return 0;
  double near = d <= 3 ? 0.3 : 1.0;  // thinner at the touch
  return std::max<int64_t>(1, std::llround(typical * near * (0.1 + 1.8 * Unit(Mix(hq)))));
}

Book Market::BookAt(const Instrument& inst, int64_t tick, int depth) const {
  Book book;
  book.tick = tick;
  int64_t mid = MidGrid(inst, tick);
  for (int64_t g = mid - 1;
       g >= std::max<int64_t>(1, mid - kUniverse) && static_cast<int>(book.bids.size()) < depth;
       --g) {
    int64_t q = LevelQty(inst, g, tick, mid);
    if (q > 0) book.bids.push_back({g, q});
  }
  for (int64_t g = mid + 1; g <= mid + kUniverse && static_cast<int>(book.asks.size()) < depth;
       ++g) {
    int64_t q = LevelQty(inst, g, tick, mid);
    if (q > 0) book.asks.push_back({g, q});
  }
  return book;
}

BookDiff Market::Diff(const Instrument& inst, int64_t from, int64_t to) const {
  BookDiff diff;
  int64_t ma = MidGrid(inst, from);
  int64_t mb = MidGrid(inst, to);
  int64_t lo = std::min(ma, mb);
  int64_t hi = std::max(ma, mb);
  auto check = [&](int64_t g) {
    int64_t qa = LevelQty(inst, g, from, ma);
    int64_t qb = LevelQty(inst, g, to, mb);
    int64_t bid_a = g < ma ? qa : 0, bid_b = g < mb ? qb : 0;
    int64_t ask_a = g > ma ? qa : 0, ask_b = g > mb ? qb : 0;
    if (bid_a != bid_b) diff.bids.push_back({g, bid_b});
    if (ask_a != ask_b) diff.asks.push_back({g, ask_b});
  };
  // Only three stretches of the grid can differ: near the mids (quantities
  // move, sides flip) and the two deep edges (levels enter and leave the book
  // as the mid moves). Everything else is static and on the same side.
  std::vector<std::pair<int64_t, int64_t>> ranges = {
      {lo - kActiveDepth - 1, hi + kActiveDepth + 1},
      {lo - kUniverse - 1, hi - kUniverse + 1},
      {lo + kUniverse - 1, hi + kUniverse + 1}};
  std::sort(ranges.begin(), ranges.end());
  int64_t next = INT64_MIN;
  for (const auto& [a, b] : ranges) {
    for (int64_t g = std::max(a, next); g <= b; ++g) check(g);
    next = std::max(next, b + 1);
  }
  std::sort(diff.bids.begin(), diff.bids.end(),
            [](const Level& a, const Level& b) { return a.grid > b.grid; });
  std::sort(diff.asks.begin(), diff.asks.end(),
            [](const Level& a, const Level& b) { return a.grid < b.grid; });
  return diff;
}

BookDiff DiffViews(const Book& before, const Book& after) {
  BookDiff diff;
  // Both sides are sorted best first: bids by descending grid, asks ascending.
  auto side = [](const std::vector<Level>& a, const std::vector<Level>& b, bool descending,
                 std::vector<Level>* out) {
    auto better = [descending](int64_t x, int64_t y) { return descending ? x > y : x < y; };
    size_t i = 0, j = 0;
    while (i < a.size() || j < b.size()) {
      if (j == b.size() || (i < a.size() && better(a[i].grid, b[j].grid))) {
        out->push_back({a[i].grid, 0});  // left the view
        ++i;
      } else if (i == a.size() || better(b[j].grid, a[i].grid)) {
        out->push_back(b[j]);  // entered the view
        ++j;
      } else {
        if (a[i].qty != b[j].qty) out->push_back(b[j]);
        ++i;
        ++j;
      }
    }
  };
  side(before.bids, after.bids, true, &diff.bids);
  side(before.asks, after.asks, false, &diff.asks);
  return diff;
}

int64_t Market::TradeIntervalMs(const Instrument& inst) const {
  return std::max(1, 1000 / std::max(1, inst.trades_per_second));
}

Trade Market::TradeById(const Instrument& inst, int64_t id) const {
  int64_t interval = TradeIntervalMs(inst);
  uint64_t h = Hash(inst.key, 0x7ade, static_cast<uint64_t>(id));
  Trade t;
  t.id = id;
  t.time_ms = id * interval + static_cast<int64_t>(h % static_cast<uint64_t>(interval));
  int64_t mid = PriceGrid(inst, t.time_ms);
  t.buyer_is_maker = (h >> 32) & 1;
  t.price_grid = t.buyer_is_maker ? mid - 1 : mid + 1;
  double typical = 1500.0 / inst.base_price * static_cast<double>(Pow10(inst.qty_decimals));
  t.qty = std::max<int64_t>(1, std::llround(typical * (0.05 + 2.0 * Unit(Mix(h)))));
  return t;
}

int64_t Market::LastTradeId(const Instrument& inst, int64_t ms) const {
  int64_t k = FloorDiv(ms, TradeIntervalMs(inst));
  return TradeById(inst, k).time_ms <= ms ? k : k - 1;
}

int64_t Market::FirstTradeIdAtOrAfter(const Instrument& inst, int64_t ms) const {
  int64_t k = FloorDiv(ms, TradeIntervalMs(inst));
  return TradeById(inst, k).time_ms >= ms ? k : k + 1;
}

Candle Market::CandleAt(const Instrument& inst, int64_t open_ms, int64_t interval_ms,
                        int64_t now_ms) const {
  Candle c;
  c.open_ms = open_ms;
  c.close_ms = open_ms + interval_ms - 1;
  int64_t end = std::min(open_ms + interval_ms, std::max(open_ms, now_ms));
  c.open = PriceGrid(inst, open_ms);
  c.close = PriceGrid(inst, end);
  c.high = std::max(c.open, c.close);
  c.low = std::min(c.open, c.close);
  int64_t step = std::max<int64_t>(1000, interval_ms / 16);
  for (int64_t t = open_ms + step; t < end; t += step) {
    int64_t p = PriceGrid(inst, t);
    c.high = std::max(c.high, p);
    c.low = std::min(c.low, p);
  }
  int64_t span = end - open_ms;
  c.trades = span / TradeIntervalMs(inst);
  uint64_t h = Hash(inst.key, 0xca41e, static_cast<uint64_t>(open_ms), static_cast<uint64_t>(interval_ms));
  double typical = 800.0 / inst.base_price * static_cast<double>(Pow10(inst.qty_decimals));
  c.volume = std::llround(static_cast<double>(c.trades) * typical * (0.5 + Unit(h)));
  return c;
}

std::string Market::FormatFixed(int64_t units, int decimals, int pad_to) {
  bool negative = units < 0;
  uint64_t u = negative ? static_cast<uint64_t>(-units) : static_cast<uint64_t>(units);
  std::string digits = absl::StrCat(u);
  if (decimals > 0) {
    if (static_cast<int>(digits.size()) <= decimals) {
      digits.insert(0, static_cast<size_t>(decimals + 1) - digits.size(), '0');
    }
    digits.insert(digits.size() - static_cast<size_t>(decimals), ".");
  }
  if (pad_to > decimals) {
    if (decimals == 0) digits += ".";
    digits.append(static_cast<size_t>(pad_to - std::max(decimals, 0)), '0');
  }
  return negative ? "-" + digits : digits;
}

std::string Market::PriceStr(const Instrument& inst, int64_t grid, int pad_to) const {
  return FormatFixed(grid * inst.tick_units, inst.price_decimals, pad_to);
}

std::string Market::QtyStr(const Instrument& inst, int64_t qty, int pad_to) const {
  return FormatFixed(qty, inst.qty_decimals, pad_to);
}

}  // namespace marketprism::sim
