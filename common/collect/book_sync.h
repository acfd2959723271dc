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

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "marketprism/v1/collector.pb.h"

#include "common/collect/decimal.h"

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

// Price levels, one per decimal value ("0.10" and "0.1" are one level), each
// kept as the exchange last wrote it. A side is a flat vector of fixed-point
// keys (DecimalKey) sorted worst first, so that the levels near the top of
// the book, where most changes are, move the least; the strings sit in a
// pool the keys index.
class OrderBook {
 public:
  using Level = std::pair<std::string, std::string>;  // (price, quantity) as written

  // One side's levels, best first.
  class Side {
   public:
    class const_iterator {
     public:
      using iterator_category = std::forward_iterator_tag;
      using value_type = Level;
      using difference_type = std::ptrdiff_t;
      using pointer = const Level*;
      using reference = const Level&;
      const Level& operator*() const { return (*side_)[i_]; }
      const Level* operator->() const { return &(*side_)[i_]; }
      const_iterator& operator++() {
        ++i_;
        return *this;
      }
      const_iterator operator++(int) { return const_iterator(side_, i_++); }
      bool operator==(const const_iterator& o) const { return i_ == o.i_; }
      bool operator!=(const const_iterator& o) const { return i_ != o.i_; }

     private:
      friend class Side;
      const_iterator(const Side* side, size_t i) : side_(side), i_(i) {}
      const Side* side_;
      size_t i_;
    };

    size_t size() const { return entries_.size(); }
    bool empty() const { return entries_.empty(); }
    // The i-th best level (0: the best); i < size().
    const Level& operator[](size_t i) const {
      return slots_[entries_[entries_.size() - 1 - i].slot].level;
    }
    const Level& front() const { return (*this)[0]; }
    const_iterator begin() const { return const_iterator(this, 0); }
    const_iterator end() const { return const_iterator(this, size()); }

   private:
    friend class OrderBook;
    // A narrow price as one integer, inverted on the ask side, so that on
    // either side a worse price has the smaller rank.
    using Rank = unsigned __int128;
    struct Entry {
      Rank rank;  // 0 when wide
      uint32_t slot;
      bool wide;
    };
    struct Slot {
      Level level;
      std::string canonical;  // a wide key's (DecimalKey::canonical)
    };
    // A price looked for.
    struct Probe {
      Rank rank;
      bool wide;
      const DecimalKey* key;
    };

    explicit Side(bool ask) : ask_(ask) {}
    Probe ProbeOf(const DecimalKey& key) const {
      Rank v = (static_cast<Rank>(key.whole) << 64) | key.frac;
      return Probe{key.wide ? 0 : ask_ ? ~v : v, key.wide, &key};
    }
    DecimalKey KeyOf(const Entry& e) const;
    // Whether `a` sorts before `b` here: it is the worse price.
    bool Worse(const Entry& a, const Probe& b) const {
      return !a.wide && !b.wide ? a.rank < b.rank : WorseKey(KeyOf(a), *b.key);
    }
    bool Worse(const Probe& a, const Entry& b) const {
      return !a.wide && !b.wide ? a.rank < b.rank : WorseKey(*a.key, KeyOf(b));
    }
    bool WorseKey(const DecimalKey& a, const DecimalKey& b) const {
      return ask_ ? DecimalKeyLess(b, a) : DecimalKeyLess(a, b);
    }
    // The level at `key` becomes (price, quantity), or goes when `remove`.
    void Set(const DecimalKey& key, absl::string_view price, absl::string_view quantity,
             bool remove);
    // Appends a level worse than every level held; false (nothing done)
    // when it is not.
    bool Append(const DecimalKey& key, absl::string_view price, absl::string_view quantity);
    uint32_t NewSlot(const DecimalKey& key, absl::string_view price, absl::string_view quantity);
    void Clear();

    bool ask_;
    std::vector<Entry> entries_;  // worst first
    std::vector<Slot> slots_;
    std::vector<uint32_t> free_;  // slots not in use
    size_t wide_ = 0;             // entries with a wide key
  };

  OrderBook() : bids_(false), asks_(true) {}

  // Applies levels; fails (leaving the book partly changed) with the first
  // malformed price or quantity.
  bool Apply(const std::vector<PriceLevel>& bids, const std::vector<PriceLevel>& asks, std::string* error);
  void Clear();
  bool Crossed() const;
  const Side& bids() const { return bids_; }  // best (highest) first
  const Side& asks() const { return asks_; }  // best (lowest) first
  // The top `n` levels of each side (0: all), as the exchange would show them.
  void Top(size_t n, v1::BookUpdate* out) const;

 private:
  static bool ApplySide(const std::vector<PriceLevel>& levels, Side& side, absl::string_view name,
                        std::string* error);

  Side bids_;
  Side asks_;
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

  // Awaiting a snapshot not yet asked for (it waits for budget): only the
  // newest `n` diffs are worth keeping, since the snapshot, taken later,
  // supersedes the rest (a few are kept for a REST book that lags the stream).
  void KeepNewest(size_t n) {
    if (state_ != State::kAwaitSnapshot) return;
    while (buffer_.size() > n) buffer_.pop_front();
  }

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
