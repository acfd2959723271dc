// File: common/collect/book_sync.h
//
// An order book kept exactly as each exchange documents: a snapshot joined
// to the diff stream by the exchange's own sequence rules, every later diff
// checked against the one before. Sans-I/O: the node's stream runner feeds
// it parsed diffs and snapshots and emits the records it returns; it fetches
// a snapshot (a budgeted REST request, or a resubscription on Deribit)
// whenever wants_snapshot() says so.
//
//  * Binance spot: drop diffs with u <= lastUpdateId; the first kept has
//    U <= lastUpdateId + 1 <= u; then each U == previous u + 1.
//  * Binance USD-M: drop u < lastUpdateId; the first has
//    U <= lastUpdateId <= u; then each pu == previous u.
//  * OKX (no WebSocket snapshot since 2026; REST /api/v5/market/books): drop
//    seqId <= the snapshot's seqId; join where prevSeqId <= seqId(snapshot)
//    < seqId; then prevSeqId == previous seqId (a reset at maintenance
//    breaks that: a gap).
//  * Deribit: the subscription's first message is the snapshot (change_id);
//    then prev_change_id == previous change_id.
//
// Diffs are buffered while the snapshot is awaited (bounded: the oldest go
// first, which only makes the join stricter). A break in the sequence, a
// crossed book or a malformed level is a gap: the book is dropped and
// resynchronised, and when it joins again the unit emits one Gap record
// (after_update_id: the last update applied before the break;
// resumed_update_id: the new snapshot's) followed by the new snapshot.
//
// Thread-compatible: one unit's runner owns it.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/collect/decimal.h"
#include "marketprism/v1/collector.pb.h"

namespace marketprism::common {

enum class BookProtocol { kBinanceSpot, kBinanceUsdm, kOkx, kDeribit };

// The protocol of `exchange`'s books ("binance_spot", "binance_usdm", "okx",
// "deribit"); Binance spot's for any other name.
BookProtocol BookProtocolFor(absl::string_view exchange);

struct PriceLevel {
  std::string price;
  std::string quantity;  // "0" removes the level
};

// One diff from the stream, in the exchange's own ids: Binance U/u (and pu
// on USD-M), OKX prevSeqId/seqId, Deribit prev_change_id/change_id.
struct BookDiff {
  int64_t first = 0;   // Binance U; others: prev + 1
  int64_t last = 0;    // Binance u, OKX seqId, Deribit change_id
  int64_t prev = -1;   // Binance USD-M pu, OKX prevSeqId, Deribit prev_change_id (-1: none)
  std::vector<PriceLevel> bids, asks;
};

struct BookSnapshot {
  int64_t update_id = 0;  // Binance lastUpdateId, OKX seqId, Deribit change_id
  std::vector<PriceLevel> bids, asks;
};

// Price levels at canonical decimal prices.
class OrderBook {
 public:
  struct Less {
    bool operator()(const std::string& a, const std::string& b) const { return DecimalLess(a, b); }
  };
  struct Greater {
    bool operator()(const std::string& a, const std::string& b) const { return DecimalLess(b, a); }
  };
  // Keyed by canonical price; each level keeps the price and quantity as the
  // exchange last wrote them.
  using Level = std::pair<std::string, std::string>;    // (price, quantity)
  using Bids = std::map<std::string, Level, Greater>;  // best (highest) first
  using Asks = std::map<std::string, Level, Less>;     // best (lowest) first

  // Applies levels; fails (leaving the book partly changed) with the first
  // malformed price or quantity.
  bool Apply(const std::vector<PriceLevel>& bids, const std::vector<PriceLevel>& asks, std::string* error);
  void Clear();
  bool Crossed() const;
  const Bids& bids() const { return bids_; }
  const Asks& asks() const { return asks_; }
  // The top `n` levels of each side (0: all), as the exchange would show them.
  void Top(size_t n, v1::BookUpdate* out) const;

 private:
  Bids bids_;
  Asks asks_;
};

// What the sync asks its unit to emit, in order.
struct BookRecord {
  enum class Kind { kUpdate, kSnapshot, kGap } kind = Kind::kUpdate;
  v1::BookUpdate update;  // kUpdate, kSnapshot
  v1::Gap gap;            // kGap
};

class BookSync {
 public:
  explicit BookSync(BookProtocol protocol, size_t max_buffered = 4096);

  std::vector<BookRecord> OnDiff(BookDiff diff);
  std::vector<BookRecord> OnSnapshot(BookSnapshot snapshot);

  // The stream broke (a reconnect): what arrives next does not follow what
  // came before, so the book resynchronises and the next join emits a gap.
  void OnStreamRestart(absl::string_view reason);

  // No usable snapshot is held: the runner should fetch one.
  bool wants_snapshot() const { return state_ == State::kAwaitSnapshot; }
  bool live() const { return state_ == State::kLive; }
  BookProtocol protocol() const { return protocol_; }
  int64_t last_update_id() const { return last_; }
  const OrderBook& book() const { return book_; }
  // Snapshots that came too late to join the buffered diffs (each asks for
  // another): a runner backs off when these grow.
  int64_t stale_snapshots() const { return stale_snapshots_; }
  int64_t gaps() const { return gaps_; }

 private:
  enum class State { kAwaitSnapshot, kJoining, kLive };
  enum class Join { kDrop, kJoin, kStale };

  Join JoinsSnapshot(const BookDiff& d, int64_t snapshot) const;
  bool Follows(const BookDiff& d) const;
  // Applies a diff in the live state; false after starting a resync.
  bool ApplyLive(BookDiff d, std::vector<BookRecord>& out);
  void Break(std::string reason, BookDiff* keep);
  void Drain(std::vector<BookRecord>& out);
  // Emits the pending gap, if any, as resumed at `resumed`.
  void ReportGap(int64_t resumed, std::vector<BookRecord>& out);

  BookProtocol protocol_;
  size_t max_buffered_;
  State state_ = State::kAwaitSnapshot;
  OrderBook book_;
  std::deque<BookDiff> buffer_;
  int64_t snapshot_id_ = 0;     // kJoining: the id of the snapshot in book_, waiting for its first diff
  int64_t last_ = 0;            // the last update applied
  bool gap_pending_ = false;    // a break not yet reported
  int64_t gap_after_ = 0;
  std::string gap_reason_;
  int64_t stale_snapshots_ = 0;
  int64_t gaps_ = 0;
};

}  // namespace marketprism::common
