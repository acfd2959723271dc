#include "coordinator/record_hub.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <thread>

#include "absl/strings/str_cat.h"

namespace marketprism::coordinator {
namespace {

using ::testing::HasSubstr;

class QueueSink final : public RecordSink {
 public:
  explicit QueueSink(size_t max = 1000) : max_(max) {}
  bool Offer(const v1::MarketEvent& e) override {
    if (events.size() >= max_) return false;
    events.push_back(e);
    return true;
  }
  void Cut(const absl::Status& why) override { cut = why; }
  void Kick() override {
    kicked_with.push_back(events.size());
    if (on_kick) on_kick();
  }
  std::vector<v1::MarketEvent> events;
  absl::Status cut;
  std::vector<size_t> kicked_with;  // records queued at each Kick
  std::function<void()> on_kick;

 private:
  size_t max_;
};

v1::MarketEvent Trade(int64_t id, const std::string& node) {
  v1::MarketEvent e;
  e.set_exchange("binance_spot");
  e.set_channel("trades");
  e.set_symbol("BTCUSDT");
  e.set_node_id(node);
  e.set_key(absl::StrCat("binance_spot/trades/BTCUSDT/", id));
  e.mutable_trade()->set_trade_id(absl::StrCat(id));
  e.mutable_trade()->set_price("100");
  return e;
}

v1::MarketEvent Book(int64_t first, int64_t last, bool snapshot, const std::string& node) {
  v1::MarketEvent e;
  e.set_exchange("binance_spot");
  e.set_channel("book");
  e.set_symbol("BTCUSDT");
  e.set_node_id(node);
  e.set_key(absl::StrCat("binance_spot/book/BTCUSDT/", snapshot ? "snapshot/" : "", first, "-", last));
  v1::BookUpdate* b = e.mutable_book();
  b->set_snapshot(snapshot);
  b->set_first_update_id(first);
  b->set_last_update_id(last);
  v1::Level* bid = b->add_bids();
  bid->set_price(absl::StrCat(90 + last % 5));
  bid->set_quantity("1");
  v1::Level* ask = b->add_asks();
  ask->set_price("200");
  ask->set_quantity("1");
  return e;
}

const absl::Time T0 = absl::FromUnixSeconds(1'700'000'000);

v1::RecordBatch Batch(std::vector<v1::MarketEvent> events) {
  v1::RecordBatch b;
  for (auto& e : events) *b.add_events() = std::move(e);
  return b;
}

std::vector<std::string> Keys(const QueueSink& s) {
  std::vector<std::string> k;
  for (const auto& e : s.events) k.push_back(e.key());
  return k;
}

TEST(RecordHubTest, TwoCopiesOfTradesArriveOnceAndAGapOnlyWhenBothLost) {
  RecordHub hub;
  QueueSink sink;
  hub.Subscribe({}, &sink);
  hub.Publish(Batch({Trade(1, "a"), Trade(2, "a")}), T0);
  hub.Publish(Batch({Trade(1, "b"), Trade(2, "b"), Trade(3, "b")}), T0);  // a misses 3
  hub.Publish(Batch({Trade(4, "a"), Trade(4, "b"), Trade(7, "a")}), T0);  // both miss 5 and 6
  EXPECT_EQ(sink.events.size(), 4u) << "7 is held for a copy that may have 5 and 6";
  hub.Flush(T0 + absl::Milliseconds(100));
  EXPECT_EQ(sink.events.size(), 4u);
  hub.Flush(T0 + absl::Milliseconds(300));
  std::vector<std::string> keys = Keys(sink);
  ASSERT_EQ(keys.size(), 6u);
  EXPECT_EQ(keys[2], "binance_spot/trades/BTCUSDT/3");
  ASSERT_TRUE(sink.events[4].has_gap());
  EXPECT_THAT(sink.events[4].gap().reason(), HasSubstr("5..6 missed by every copy"));
  EXPECT_EQ(hub.counts().duplicates, 3);
}

// A subscriber's writes start once per batch, after the whole batch is
// merged and the hub's lock is released (a slow write holds up no other
// record), and only for subscribers that were offered something.
TEST(RecordHubTest, SinksAreKickedOncePerBatchOutsideTheHubsLock) {
  RecordHub hub;
  QueueSink trades, books;
  v1::SubscribeRequest only_books;
  only_books.set_channel("book");
  hub.Subscribe({}, &trades);
  hub.Subscribe(only_books, &books);
  trades.kicked_with.clear();
  books.kicked_with.clear();
  int64_t seen_in_kick = -1;
  // Another thread takes the hub's lock meanwhile (were it held, this would
  // hang, and ctest's timeout would fail the test). Kick itself must not call
  // the hub.
  trades.on_kick = [&] { std::thread([&] { seen_in_kick = hub.counts().received; }).join(); };
  hub.Publish(Batch({Trade(1, "a"), Trade(2, "a"), Trade(3, "a")}), T0);
  EXPECT_THAT(trades.kicked_with, ::testing::ElementsAre(3u));
  EXPECT_EQ(seen_in_kick, 3);
  EXPECT_TRUE(books.kicked_with.empty()) << "offered nothing, so not kicked";
  hub.Publish(Batch({Trade(5, "a")}), T0);  // held for 4
  EXPECT_THAT(trades.kicked_with, ::testing::ElementsAre(3u));
  hub.Flush(T0 + absl::Seconds(1));  // released as overdue: a gap, then 5
  EXPECT_THAT(trades.kicked_with, ::testing::ElementsAre(3u, 5u));
}

TEST(RecordHubTest, TradesMergeByTheirSequenceWhereTheIdsAreNotConsecutive) {
  RecordHub hub;
  QueueSink sink;
  hub.Subscribe({}, &sink);
  auto deribit = [](int64_t seq, int64_t id, const std::string& node) {
    v1::MarketEvent e = Trade(seq, node);
    e.mutable_trade()->set_trade_id(absl::StrCat(id));  // Deribit's ids jump between instruments' trades
    e.mutable_trade()->set_sequence(seq);
    return e;
  };
  hub.Publish(Batch({deribit(1, 1000, "a"), deribit(2, 1007, "a")}), T0);
  hub.Publish(Batch({deribit(1, 1000, "b"), deribit(2, 1007, "b"), deribit(3, 1012, "b")}), T0);
  hub.Flush(T0 + absl::Seconds(1));
  ASSERT_EQ(sink.events.size(), 3u);
  for (const auto& e : sink.events) EXPECT_FALSE(e.has_gap()) << "ids 1000, 1007, 1012 are one sequence 1, 2, 3";
  EXPECT_EQ(hub.counts().duplicates, 2);
}

TEST(RecordHubTest, ACopyAheadOfTheOtherIsReorderedNotAGap) {
  RecordHub hub;
  QueueSink sink;
  hub.Subscribe({}, &sink);
  hub.Publish(Batch({Trade(1, "a"), Trade(2, "a")}), T0);
  hub.Publish(Batch({Trade(4, "b")}), T0);  // b's batch overtook a's 3
  hub.Publish(Batch({Trade(3, "a"), Trade(4, "a")}), T0 + absl::Milliseconds(20));
  EXPECT_EQ(Keys(sink), (std::vector<std::string>{"binance_spot/trades/BTCUSDT/1", "binance_spot/trades/BTCUSDT/2",
                                                  "binance_spot/trades/BTCUSDT/3", "binance_spot/trades/BTCUSDT/4"}));
  hub.Publish(Batch({Book(100, 100, true, "a"), Book(101, 110, false, "a"), Book(121, 130, false, "b")}), T0);
  hub.Publish(Batch({Book(111, 120, false, "a"), Book(121, 130, false, "a")}), T0);
  EXPECT_EQ(hub.counts().gaps, 0);
  EXPECT_EQ(sink.events.back().key(), "binance_spot/book/BTCUSDT/121-130");
}

TEST(RecordHubTest, BooksFromTwoCopiesMergeIntoOneSequence) {
  RecordHub hub;
  QueueSink sink;
  hub.Subscribe({}, &sink);
  hub.Publish(Batch({Book(100, 100, true, "a"), Book(95, 110, false, "a")}), T0);
  hub.Publish(Batch({Book(105, 105, true, "b"), Book(101, 110, false, "b"), Book(111, 120, false, "b")}), T0);
  hub.Publish(Batch({Book(111, 120, false, "a"), Book(121, 130, false, "a")}), T0);
  std::vector<std::string> keys = Keys(sink);
  EXPECT_EQ(keys, (std::vector<std::string>{"binance_spot/book/BTCUSDT/snapshot/100-100", "binance_spot/book/BTCUSDT/95-110",
                                            "binance_spot/book/BTCUSDT/111-120", "binance_spot/book/BTCUSDT/121-130"}));
  EXPECT_EQ(hub.counts().gaps, 0);
}

TEST(RecordHubTest, AUnitThatMovedRejoinsOnItsNewSnapshotWithOneGap) {
  RecordHub hub;
  QueueSink sink;
  hub.Subscribe({}, &sink);
  hub.Publish(Batch({Book(100, 100, true, "a"), Book(101, 110, false, "a")}), T0);
  // node a died; b runs the unit from a newer snapshot
  hub.Publish(Batch({Book(150, 150, true, "b"), Book(141, 160, false, "b"), Book(161, 170, false, "b")}), T0);
  EXPECT_EQ(sink.events.size(), 2u) << "held: the other copy might have 111..140";
  hub.Flush(T0 + absl::Milliseconds(300));
  std::vector<std::string> keys = Keys(sink);
  ASSERT_EQ(keys.size(), 6u);
  ASSERT_TRUE(sink.events[2].has_gap());
  EXPECT_EQ(sink.events[2].gap().after_update_id(), 110);
  EXPECT_EQ(sink.events[2].gap().resumed_update_id(), 150);
  EXPECT_TRUE(sink.events[3].book().snapshot());
  EXPECT_EQ(sink.events[5].key(), "binance_spot/book/BTCUSDT/161-170");
}

TEST(RecordHubTest, ANewBookSubscriberStartsFromTheHubsBook) {
  RecordHub hub;
  hub.Publish(Batch({Book(100, 100, true, "a"), Book(101, 110, false, "a")}), T0);
  QueueSink sink;
  v1::SubscribeRequest f;
  f.set_exchange("binance_spot");
  f.set_channel("book");
  hub.Subscribe(f, &sink);
  ASSERT_EQ(sink.events.size(), 1u);
  EXPECT_TRUE(sink.events[0].book().snapshot());
  EXPECT_EQ(sink.events[0].book().last_update_id(), 110);
  hub.Publish(Batch({Book(111, 111, false, "a"), Trade(1, "a")}), T0);
  EXPECT_EQ(sink.events.size(), 2u) << "the trade does not match the filter";
}

TEST(RecordHubTest, ASlowSubscriberIsCutOffAndTheOthersGoOn) {
  RecordHub hub;
  QueueSink slow(2), fast;
  hub.Subscribe({}, &slow);
  hub.Subscribe({}, &fast);
  hub.Publish(Batch({Trade(1, "a"), Trade(2, "a"), Trade(3, "a"), Trade(4, "a")}), T0);
  EXPECT_EQ(slow.cut.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(slow.cut.message(), HasSubstr("too slow"));
  EXPECT_EQ(fast.events.size(), 4u);
  EXPECT_EQ(hub.counts().cut, 1);
}

TEST(RecordHubTest, CutAllEndsEverySubscriberAndNothingMoreIsOffered) {
  RecordHub hub;
  QueueSink a, b;
  hub.Subscribe({}, &a);
  hub.Subscribe({}, &b);
  hub.Publish(Batch({Trade(1, "a")}), T0);
  hub.CutAll(absl::UnavailableError("coord-a no longer leads"));
  EXPECT_EQ(a.cut.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(b.cut.code(), absl::StatusCode::kUnavailable);
  hub.Publish(Batch({Trade(2, "a")}), T0);
  EXPECT_EQ(a.events.size(), 1u);
  EXPECT_EQ(hub.counts().cut, 2);
}

}  // namespace
}  // namespace marketprism::coordinator
