#include "common/collect/book_sync.h"

#include <algorithm>
#include <map>
#include <optional>
#include <random>

#include "absl/strings/str_cat.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace marketprism::common {
namespace {

using ::testing::HasSubstr;
using Kind = BookRecord::Kind;

BookDiff Diff(int64_t first, int64_t last, int64_t prev, std::vector<PriceLevel> bids = {},
              std::vector<PriceLevel> asks = {}) {
  return BookDiff{first, last, prev, std::move(bids), std::move(asks)};
}

BookSnapshot Snap(int64_t id) { return BookSnapshot{id, {{"100.0", "1"}, {"99.5", "2"}}, {{"101", "1"}, {"102.25", "3"}}}; }

std::vector<Kind> Kinds(const std::vector<BookRecord>& rs) {
  std::vector<Kind> k;
  for (const BookRecord& r : rs) k.push_back(r.kind);
  return k;
}

// ---- decimals ---------------------------------------------------------------

TEST(DecimalTest, CanonicalFormsAndOrderByValue) {
  EXPECT_EQ(CanonicalDecimal("00123.4500"), "123.45");
  EXPECT_EQ(CanonicalDecimal("0.000"), "0");
  EXPECT_EQ(CanonicalDecimal("5."), "5");
  EXPECT_EQ(CanonicalDecimal(".5"), "0.5");
  for (const char* bad : {"", ".", "-1", "1e5", "1.2.3", "12a", " 1"}) {
    EXPECT_FALSE(CanonicalDecimal(bad).has_value()) << bad;
  }
  EXPECT_TRUE(DecimalLess("0.5", "1"));
  EXPECT_TRUE(DecimalLess("0.51", "0.6"));
  EXPECT_TRUE(DecimalLess("0.5", "0.51"));
  EXPECT_TRUE(DecimalLess("99.99", "100"));
  EXPECT_FALSE(DecimalLess("100", "100"));
  EXPECT_FALSE(DecimalLess("100.01", "100"));
}

TEST(OrderBookTest, OnePriceWrittenTwoWaysIsOneLevel) {
  OrderBook b;
  std::string error;
  ASSERT_TRUE(b.Apply({{"0.10", "5"}, {"0.1", "6"}, {"0.09", "1"}}, {{"0.2", "1"}}, &error));
  ASSERT_EQ(b.bids().size(), 2u);
  EXPECT_EQ(b.bids().front(), (OrderBook::Level{"0.1", "6"}))
      << "as the exchange last wrote the level";
  EXPECT_EQ(b.bids()[1], (OrderBook::Level{"0.09", "1"}));
  ASSERT_TRUE(b.Apply({{"0.100", "0.000"}}, {}, &error));
  EXPECT_EQ(b.bids().front().first, "0.09") << "quantity 0 removes the level";
  EXPECT_FALSE(b.Apply({{"abc", "1"}}, {}, &error));
  EXPECT_THAT(error, HasSubstr("malformed bid level [\"abc\", \"1\"]"));
}

TEST(OrderBookTest, PricesBeyondNineteenDigitsStayExact) {
  OrderBook b;
  std::string error;
  const std::string tiny = "0.00000000000000000000001";  // 23 fraction digits: a wide key
  const std::string huge = "123456789012345678901234.5";
  ASSERT_TRUE(b.Apply(
      {{tiny, "1"}, {"0.000000000000000000000010", "2"}, {"0.0000000000000000000000105", "3"}},
      {{huge, "1"}, {"1.5", "2"}, {"0.10000000000000000000000", "4"}}, &error));
  ASSERT_EQ(b.bids().size(), 2u) << "a wide price written two ways is one level";
  EXPECT_EQ(b.bids()[0], (OrderBook::Level{"0.0000000000000000000000105", "3"}));
  EXPECT_EQ(b.bids()[1], (OrderBook::Level{"0.000000000000000000000010", "2"}));
  ASSERT_EQ(b.asks().size(), 3u);
  EXPECT_EQ(b.asks()[0].first, "0.10000000000000000000000")
      << "zeros past 19 digits make no wide key";
  EXPECT_EQ(b.asks()[2].first, huge);
  EXPECT_FALSE(b.Crossed());
  ASSERT_TRUE(b.Apply({{"0.1", "1"}}, {}, &error));
  EXPECT_TRUE(b.Crossed()) << "bid 0.1 >= ask 0.1000...";
}

// The book as it was kept before (a map by canonical price), for the
// property test below.
class MapBook {
 public:
  void Apply(const std::vector<PriceLevel>& levels, bool bids) {
    auto& side = bids ? bids_ : asks_;
    for (const PriceLevel& l : levels) {
      std::string key = *CanonicalDecimal(l.price);
      if (DecimalIsZero(*CanonicalDecimal(l.quantity))) {
        side.erase(key);
      } else {
        side[key] = {l.price, l.quantity};
      }
    }
  }
  std::vector<OrderBook::Level> Bids() const {
    std::vector<OrderBook::Level> out;
    for (auto it = bids_.rbegin(); it != bids_.rend(); ++it) out.push_back(it->second);
    return out;
  }
  std::vector<OrderBook::Level> Asks() const {
    std::vector<OrderBook::Level> out;
    for (const auto& [key, level] : asks_) out.push_back(level);
    return out;
  }

 private:
  struct Less {
    bool operator()(const std::string& a, const std::string& b) const { return DecimalLess(a, b); }
  };
  std::map<std::string, OrderBook::Level, Less> bids_, asks_;
};

std::vector<OrderBook::Level> Levels(const OrderBook::Side& side) {
  return {side.begin(), side.end()};
}

TEST(OrderBookPropertyTest, TheFlatBookKeepsTheMapBooksLevelsAndOrder) {
  std::mt19937_64 rng(7);
  auto draw = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  // Prices on a few ticks, written with and without zeros, some far too long for 64 bits.
  auto price = [&] {
    std::string whole = std::to_string(draw(0, 30));
    std::string frac = std::to_string(draw(0, 9));
    switch (draw(0, 5)) {
      case 0:
        return absl::StrCat("0", whole, ".", frac, "000");
      case 1:
        return absl::StrCat(whole, ".", frac, "00000000000000000000001");
      case 2:
        return absl::StrCat("99999999999999999999", whole, ".", frac);
      case 3:
        return absl::StrCat(whole);
      default:
        return absl::StrCat(whole, ".", frac);
    }
  };
  for (int round = 0; round < 100; ++round) {
    OrderBook book;
    MapBook ref;
    std::string error;
    for (int step = 0; step < 60; ++step) {
      std::vector<PriceLevel> bids, asks;
      for (int i = draw(0, step == 0 ? 40 : 6); i > 0; --i) {
        (draw(0, 1) ? bids : asks)
            .push_back({price(), draw(0, 3) == 0 ? "0.000" : std::to_string(draw(1, 9))});
      }
      if (step == 0 && draw(0, 1)) {
        std::sort(bids.begin(), bids.end(), [](const PriceLevel& a, const PriceLevel& b) {
          return DecimalLess(*CanonicalDecimal(b.price), *CanonicalDecimal(a.price));
        });  // a snapshot, best first
      }
      ASSERT_TRUE(book.Apply(bids, asks, &error)) << error;
      ref.Apply(bids, true);
      ref.Apply(asks, false);
      ASSERT_EQ(Levels(book.bids()), ref.Bids()) << "round " << round << " step " << step;
      ASSERT_EQ(Levels(book.asks()), ref.Asks()) << "round " << round << " step " << step;
    }
  }
}

TEST(DecimalKeyTest, AgreesWithTheCanonicalStrings) {
  std::mt19937_64 rng(3);
  auto draw = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  auto text = [&] {
    std::string s;
    auto digit = [&] { return static_cast<char>('0' + (draw(0, 2) ? draw(0, 9) : 0)); };
    for (int i = draw(0, 22); i > 0; --i) s.push_back(digit());
    if (draw(0, 3)) {
      s.push_back('.');
      for (int i = draw(0, 22); i > 0; --i) s.push_back(digit());
    }
    if (draw(0, 20) == 0) {  // not a decimal
      s.insert(static_cast<size_t>(draw(0, static_cast<int>(s.size()))), 1, "-e.x "[draw(0, 4)]);
    }
    return s;
  };
  for (int i = 0; i < 20000; ++i) {
    std::string a = text(), b = text();
    DecimalKey ka, kb;
    std::optional<std::string> ca = CanonicalDecimal(a), cb = CanonicalDecimal(b);
    ASSERT_EQ(ParseDecimalKey(a, &ka), ca.has_value()) << a;
    ASSERT_EQ(ParseDecimalKey(b, &kb), cb.has_value()) << b;
    if (!ca || !cb) continue;
    ASSERT_EQ(DecimalKeyLess(ka, kb), DecimalLess(*ca, *cb)) << a << " < " << b;
    ASSERT_EQ(DecimalKeyIsZero(ka), DecimalIsZero(*ca)) << a;
  }
}

// ---- Binance spot -----------------------------------------------------------

TEST(BookSyncBinanceSpotTest, BufferedDiffsJoinTheSnapshotByTheDocumentedRule) {
  BookSync s(BookProtocol::kBinanceSpot);
  EXPECT_TRUE(s.wants_snapshot());
  EXPECT_TRUE(s.OnDiff(Diff(95, 99, -1, {{"100.0", "9"}})).empty()) << "buffered until the snapshot";
  EXPECT_TRUE(s.OnDiff(Diff(100, 102, -1, {{"99.5", "0"}})).empty());
  EXPECT_TRUE(s.OnDiff(Diff(103, 105, -1, {}, {{"101", "4"}})).empty());
  std::vector<BookRecord> r = s.OnSnapshot(Snap(100));
  ASSERT_EQ(Kinds(r), (std::vector<Kind>{Kind::kSnapshot, Kind::kUpdate, Kind::kUpdate}));
  EXPECT_EQ(r[0].update.last_update_id(), 100);
  EXPECT_EQ(r[1].update.first_update_id(), 100) << "u <= 100 was dropped; U <= 101 <= u joins";
  EXPECT_TRUE(s.live());
  EXPECT_EQ(s.last_update_id(), 105);
  EXPECT_EQ(s.book().bids().size(), 1u) << "99.5 removed";
  EXPECT_EQ(s.book().bids().front().second, "1") << "the dropped diff (u 99) was not applied";
  EXPECT_EQ(s.book().asks().front().second, "4");
}

TEST(BookSyncBinanceSpotTest, ABookWaitingItsTurnKeepsOnlyItsNewestDiffsAndStillJoins) {
  BookSync s(BookProtocol::kBinanceSpot);
  for (int64_t i = 0; i < 100; ++i) s.OnDiff(Diff(101 + 10 * i, 110 + 10 * i, -1));
  s.KeepNewest(5);  // 1051..1060 up to 1091..1100 remain
  EXPECT_TRUE(s.OnSnapshot(Snap(900)).empty()) << "older than every diff kept: another is asked for";
  EXPECT_TRUE(s.wants_snapshot());
  EXPECT_TRUE(s.OnSnapshot(Snap(1045)).empty()) << "1041..1050 was trimmed: it cannot join";
  std::vector<BookRecord> r = s.OnSnapshot(Snap(1075));
  EXPECT_EQ(Kinds(r), (std::vector<Kind>{Kind::kSnapshot, Kind::kUpdate, Kind::kUpdate, Kind::kUpdate}))
      << "1071..1080 joins 1075; the kept diffs before it are dropped";
  EXPECT_EQ(s.last_update_id(), 1100);
  s.KeepNewest(0);  // live: nothing to trim
  EXPECT_TRUE(s.live());
}

TEST(BookSyncBinanceSpotTest, ASnapshotOlderThanTheStreamIsFetchedAgain) {
  BookSync s(BookProtocol::kBinanceSpot);
  s.OnDiff(Diff(110, 115, -1));
  EXPECT_TRUE(s.OnSnapshot(Snap(100)).empty());
  EXPECT_TRUE(s.wants_snapshot());
  EXPECT_EQ(s.stale_snapshots(), 1);
  std::vector<BookRecord> r = s.OnSnapshot(Snap(112));
  EXPECT_EQ(Kinds(r), (std::vector<Kind>{Kind::kSnapshot, Kind::kUpdate})) << "110..115 contains 113";
  EXPECT_EQ(s.gaps(), 0) << "never live before: nothing was missed";
}

TEST(BookSyncBinanceSpotTest, AMissingUpdateIsOneGapThenAResync) {
  BookSync s(BookProtocol::kBinanceSpot);
  s.OnSnapshot(Snap(100));
  ASSERT_EQ(s.OnDiff(Diff(101, 103, -1)).size(), 2u);
  EXPECT_TRUE(s.OnDiff(Diff(105, 106, -1)).empty()) << "104 is missing";
  EXPECT_TRUE(s.wants_snapshot());
  EXPECT_TRUE(s.book().bids().empty()) << "a broken book is not served";
  EXPECT_TRUE(s.OnDiff(Diff(107, 108, -1)).empty());
  std::vector<BookRecord> r = s.OnSnapshot(Snap(106));
  ASSERT_EQ(Kinds(r), (std::vector<Kind>{Kind::kGap, Kind::kSnapshot, Kind::kUpdate}));
  EXPECT_EQ(r[0].gap.after_update_id(), 103);
  EXPECT_EQ(r[0].gap.resumed_update_id(), 106);
  EXPECT_THAT(r[0].gap.reason(), HasSubstr("sequence break"));
  EXPECT_EQ(s.gaps(), 1);
}

TEST(BookSyncBinanceSpotTest, ACrossedBookIsAGap) {
  BookSync s(BookProtocol::kBinanceSpot);
  s.OnSnapshot(Snap(100));
  s.OnDiff(Diff(101, 101, -1, {{"100.5", "1"}}));
  EXPECT_TRUE(s.live());
  EXPECT_TRUE(s.OnDiff(Diff(102, 102, -1, {{"101.5", "1"}})).empty()) << "bid 101.5 >= ask 101";
  EXPECT_TRUE(s.wants_snapshot());
  std::vector<BookRecord> r = s.OnSnapshot(Snap(102));
  s.OnDiff(Diff(103, 103, -1));
  r = s.OnDiff(Diff(104, 104, -1));
  EXPECT_EQ(s.gaps(), 1);
}

TEST(BookSyncBinanceSpotTest, AMalformedLevelIsAGapNamingIt) {
  BookSync s(BookProtocol::kBinanceSpot);
  s.OnSnapshot(Snap(100));
  s.OnDiff(Diff(101, 101, -1, {{"1e3", "1"}}));
  EXPECT_TRUE(s.wants_snapshot());
  s.OnSnapshot(Snap(101));
  std::vector<BookRecord> r = s.OnDiff(Diff(102, 102, -1));
  ASSERT_FALSE(r.empty());
  EXPECT_EQ(r[0].kind, Kind::kGap);
  EXPECT_THAT(r[0].gap.reason(), HasSubstr("malformed bid level [\"1e3\""));
}

TEST(BookSyncBinanceSpotTest, AReconnectResynchronises) {
  BookSync s(BookProtocol::kBinanceSpot);
  s.OnSnapshot(Snap(100));
  s.OnDiff(Diff(101, 101, -1));
  s.OnStreamRestart("reconnected");
  EXPECT_TRUE(s.wants_snapshot());
  s.OnSnapshot(Snap(200));
  std::vector<BookRecord> r = s.OnDiff(Diff(199, 201, -1));
  ASSERT_EQ(Kinds(r), (std::vector<Kind>{Kind::kGap, Kind::kSnapshot, Kind::kUpdate}));
  EXPECT_EQ(r[0].gap.reason(), "reconnected");
  EXPECT_EQ(r[0].gap.after_update_id(), 101);
}

TEST(BookSyncBinanceSpotTest, TheBufferIsBounded) {
  BookSync s(BookProtocol::kBinanceSpot, /*max_buffered=*/2);
  s.OnDiff(Diff(101, 101, -1));
  s.OnDiff(Diff(102, 102, -1));
  s.OnDiff(Diff(103, 103, -1));
  EXPECT_TRUE(s.OnSnapshot(Snap(100)).empty()) << "101 was dropped from the full buffer: 100 cannot join";
  EXPECT_EQ(Kinds(s.OnSnapshot(Snap(101))), (std::vector<Kind>{Kind::kSnapshot, Kind::kUpdate, Kind::kUpdate}));
}

// ---- Binance USD-M ----------------------------------------------------------

TEST(BookSyncBinanceUsdmTest, JoinsWhereUIsAtTheSnapshotAndChainsOnPu) {
  BookSync s(BookProtocol::kBinanceUsdm);
  s.OnDiff(Diff(90, 99, 89));
  s.OnDiff(Diff(100, 104, 99));  // u == 100 would be dropped on spot; here U <= 100 <= u joins
  std::vector<BookRecord> r = s.OnSnapshot(Snap(100));
  ASSERT_EQ(Kinds(r), (std::vector<Kind>{Kind::kSnapshot, Kind::kUpdate}));
  EXPECT_EQ(r[1].update.previous_update_id(), 99);
  EXPECT_EQ(s.OnDiff(Diff(105, 109, 104)).size(), 1u) << "pu == previous u";
  EXPECT_TRUE(s.OnDiff(Diff(111, 112, 110)).empty()) << "pu 110 != 109";
  EXPECT_TRUE(s.wants_snapshot());
}

// ---- OKX --------------------------------------------------------------------

TEST(BookSyncOkxTest, JoinsWherePrevSeqIdIsAtOrBelowTheSnapshot) {
  BookSync s(BookProtocol::kOkx);
  s.OnDiff(Diff(11, 20, 10));
  s.OnDiff(Diff(21, 30, 20));
  std::vector<BookRecord> r = s.OnSnapshot(Snap(25));
  ASSERT_EQ(Kinds(r), (std::vector<Kind>{Kind::kSnapshot, Kind::kUpdate})) << "prevSeqId 20 <= 25 < seqId 30";
  EXPECT_EQ(s.OnDiff(Diff(31, 30, 30)).size(), 1u) << "no change: seqId == prevSeqId still follows";
  EXPECT_EQ(s.OnDiff(Diff(31, 35, 30)).size(), 1u);
  EXPECT_TRUE(s.OnDiff(Diff(4, 3, 35)).empty()) << "a reset at maintenance (seqId < prevSeqId) breaks the chain";
  EXPECT_TRUE(s.wants_snapshot());
  r = s.OnSnapshot(Snap(3));
  EXPECT_TRUE(r.empty()) << "the reset message (seqId 3) is not after the snapshot";
  r = s.OnDiff(Diff(4, 7, 3));
  ASSERT_EQ(Kinds(r), (std::vector<Kind>{Kind::kGap, Kind::kSnapshot, Kind::kUpdate}));
  EXPECT_EQ(r[0].gap.after_update_id(), 35);
}

// ---- Deribit ----------------------------------------------------------------

TEST(BookSyncDeribitTest, TheSubscriptionsSnapshotIsLiveAtOnceThenChangeIdsChain) {
  BookSync s(BookProtocol::kDeribit);
  std::vector<BookRecord> r = s.OnSnapshot(Snap(500));
  ASSERT_EQ(Kinds(r), (std::vector<Kind>{Kind::kSnapshot}));
  EXPECT_TRUE(s.live());
  EXPECT_EQ(s.OnDiff(Diff(501, 502, 500)).size(), 1u);
  EXPECT_TRUE(s.OnDiff(Diff(504, 505, 503)).empty()) << "prev_change_id 503 != 502";
  EXPECT_TRUE(s.wants_snapshot()) << "the runner resubscribes";
  r = s.OnSnapshot(Snap(600));
  ASSERT_EQ(Kinds(r), (std::vector<Kind>{Kind::kGap, Kind::kSnapshot}));
  EXPECT_EQ(r[0].gap.after_update_id(), 502);
  EXPECT_EQ(r[0].gap.resumed_update_id(), 600);
  EXPECT_EQ(s.OnDiff(Diff(601, 601, 600)).size(), 1u);
}

// ---- generated sequences ------------------------------------------------------

// An exchange's book and its diff stream, for the property test.
class GeneratedBook {
 public:
  explicit GeneratedBook(uint64_t seed) : rng_(seed) {}
  BookDiff Next() {
    int64_t first = id_ + 1;
    int n = Draw(1, 4);
    BookDiff d;
    for (int i = 0; i < n; ++i) {
      bool bid = Draw(0, 1) == 0;
      int tick = bid ? Draw(900, 999) : Draw(1001, 1100);  // never crossed
      std::string price = std::to_string(tick / 10) + "." + std::to_string(tick % 10);
      std::string qty = Draw(0, 3) == 0 ? "0" : std::to_string(Draw(1, 50)) + ".5";
      auto& side = bid ? bids_ : asks_;
      if (qty == "0") {
        side.erase(*CanonicalDecimal(price));
      } else {
        side[*CanonicalDecimal(price)] = qty;
      }
      (bid ? d.bids : d.asks).push_back({price, qty});
    }
    id_ += Draw(1, 3);
    d.first = first;
    d.last = id_;
    return d;
  }
  BookSnapshot Snapshot() const {
    BookSnapshot s;
    s.update_id = id_;
    for (auto& [p, q] : bids_) s.bids.push_back({p, q});
    for (auto& [p, q] : asks_) s.asks.push_back({p, q});
    return s;
  }
  const std::map<std::string, std::string>& bids() const { return bids_; }
  const std::map<std::string, std::string>& asks() const { return asks_; }
  int Draw(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

 private:
  std::mt19937_64 rng_;
  int64_t id_ = 1000;
  std::map<std::string, std::string> bids_, asks_;
};

std::map<std::string, std::string> AsMap(const OrderBook::Side& side) {
  std::map<std::string, std::string> out;
  for (const auto& [price, qty] : side) out[*CanonicalDecimal(price)] = qty;
  return out;
}

TEST(BookSyncPropertyTest, TheBookEqualsTheExchangesAndEachLossIsOneGap) {
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    GeneratedBook ex(seed);
    BookSync s(BookProtocol::kBinanceSpot);
    for (int i = 0; i < 20; ++i) ex.Next();
    int snapshot_at = ex.Draw(0, 10), lose_at = ex.Draw(30, 150), losses = 0;
    int64_t gaps_seen = 0;
    std::vector<BookSnapshot> pending;
    for (int i = 0; i < 200; ++i) {
      BookDiff d = ex.Next();
      if (i == lose_at) {
        ++losses;
        continue;  // lost on the wire
      }
      // The snapshot is taken a little before the stream catches up to it,
      // and answered a few messages later.
      if (i == snapshot_at) pending.push_back(ex.Snapshot());
      for (const BookRecord& r : s.OnDiff(std::move(d))) gaps_seen += r.kind == Kind::kGap;
      if (s.wants_snapshot() && pending.empty()) pending.push_back(ex.Snapshot());
      if (!pending.empty() && ex.Draw(0, 2) == 0) {
        for (const BookRecord& r : s.OnSnapshot(pending.back())) gaps_seen += r.kind == Kind::kGap;
        pending.clear();
      }
    }
    // Let it settle: a few more diffs and any snapshot it still wants.
    for (int i = 0; i < 5 || !s.live(); ++i) {
      if (s.wants_snapshot()) {
        for (const BookRecord& r : s.OnSnapshot(ex.Snapshot())) gaps_seen += r.kind == Kind::kGap;
      }
      for (const BookRecord& r : s.OnDiff(ex.Next())) gaps_seen += r.kind == Kind::kGap;
      ASSERT_LT(i, 50) << "seed " << seed << ": never resynchronised";
    }
    ASSERT_TRUE(s.live()) << "seed " << seed;
    EXPECT_EQ(AsMap(s.book().bids()), ex.bids()) << "seed " << seed;
    EXPECT_EQ(AsMap(s.book().asks()), ex.asks()) << "seed " << seed;
    EXPECT_EQ(gaps_seen, losses) << "seed " << seed << ": one lost message, one gap";
  }
}

}  // namespace
}  // namespace marketprism::common
