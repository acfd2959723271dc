#include "node/collector.h"

#include <algorithm>
#include <deque>
#include <functional>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/retry_after.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_ws_client.h"

namespace marketprism::node {
namespace {

using ::testing::HasSubstr;

using testing::FakeWsClient;

std::string Trade(int64_t id) {
  return absl::StrCat(R"({"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":)", id,
                      R"(,"p":"100.10","q":"0.5","T":2,"m":true,"M":true}})");
}

std::string Depth(int64_t first, int64_t last, const char* bid = "100.0") {
  return absl::StrCat(R"({"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":)", first,
                      R"(,"u":)", last, R"(,"b":[[")", bid, R"(","2"]],"a":[["101","1"]]}})");
}

class CollectorTest : public ::testing::Test {
 protected:
  CollectorTest()
      : collector_(CollectorOptions{.node_id = "node-1",
                                    .egress_ip = "127.0.0.11",
                                    // Binance cuts at 24 h; here at 1 min: rotated 15 s before.
                                    .max_lifetime = {{"binance_spot", absl::Minutes(1)}},
                                    .ws_proxy = [](const std::string& exchange, const std::string& url) {
                                      return exchange == "okx" ? absl::StrCat("http://proxy:3128/#", url)
                                                               : std::string();
                                    }},
                   clock_, ws_,
                   [](const std::string&) { return std::string("ws://sim:1"); },
                   [this](const std::string& exchange, const std::string& path, const common::QueryParams& q,
                          std::function<void(absl::StatusOr<std::string>)> done) {
                     fetches_.push_back({absl::StrCat(exchange, " ", path, "?", q[0].second, "&", q[1].second),
                                         std::move(done)});
                   },
                   [this](std::vector<v1::MarketEvent> events) {
                     for (auto& e : events) records_.push_back(std::move(e));
                   },
                   [this](const std::string& exchange, const std::string& path) -> absl::StatusOr<absl::Duration> {
                     if (spend_wait_ == absl::ZeroDuration()) spent_.push_back(absl::StrCat(exchange, " ", path));
                     return spend_wait_;
                   }) {
    collector_.Start();
  }
  void Assign(std::vector<std::pair<std::string, std::string>> units) {
    v1::Units msg;
    for (const auto& [channel, symbol] : units) {
      v1::UnitAssignment* a = msg.add_units();
      a->set_key(absl::StrCat("binance_spot/", channel, "/", symbol));
      a->set_exchange("binance_spot");
      a->set_channel(channel);
      a->set_symbol(symbol);
      a->set_depth(1000);
    }
    collector_.SetUnits(msg);
    clock_.RunDue();
  }
  FakeWsClient::Conn& Last() { return *ws_.conns.back(); }
  // Adds a unit as the leader names it ("okx/kline_1m/BTC-USDT").
  static void AddUnit(v1::Units& msg, const std::string& exchange, const std::string& channel,
                      const std::string& symbol, int connection = 0) {
    v1::UnitAssignment* a = msg.add_units();
    a->set_exchange(exchange);
    a->set_channel(channel);
    a->set_symbol(symbol);
    a->set_connection(connection);
    if (channel == "kline") a->set_interval("1m");
    a->set_key(absl::StrCat(exchange, "/", channel, channel == "kline" ? "_1m" : "", "/", symbol));
  }

  testing::FakeClock clock_;
  FakeWsClient ws_;
  struct Fetch {
    std::string what;
    std::function<void(absl::StatusOr<std::string>)> done;
  };
  std::vector<Fetch> fetches_;
  std::vector<v1::MarketEvent> records_;
  absl::Duration spend_wait_ = absl::ZeroDuration();  // what the IP's budget answers
  std::vector<std::string> spent_;
  Collector collector_;
};

TEST_F(CollectorTest, OneConnectionFromTheEgressIpCarriesEveryStreamOfIt) {
  Assign({{"trades", "BTCUSDT"}, {"book", "BTCUSDT"}});
  ASSERT_EQ(ws_.conns.size(), 1u);
  EXPECT_EQ(Last().spec.url, "ws://sim:1/stream?streams=btcusdt@depth@100ms/btcusdt@trade");
  EXPECT_EQ(Last().spec.source_ip, "127.0.0.11");
  EXPECT_EQ(Last().spec.proxy, "") << "no proxy for binance_spot here";
}

TEST_F(CollectorTest, StreamsBeyondWhatAUrlCarriesAreSubscribedOnceOpenInPacedBatches) {
  std::vector<std::pair<std::string, std::string>> units;
  for (int i = 1; i <= 500; ++i) units.push_back({"trades", absl::StrFormat("X%04dUSDT", i)});
  Assign(units);
  ASSERT_EQ(ws_.conns.size(), 1u);
  const std::string& url = Last().spec.url;
  EXPECT_LE(url.size(), 2000u);
  size_t in_url = static_cast<size_t>(std::count(url.begin(), url.end(), '@'));
  EXPECT_GT(in_url, 50u);
  EXPECT_LT(in_url, 500u);
  Last().cb.on_open();  // the first batch at once
  ASSERT_EQ(Last().sent.size(), 1u);
  size_t subscribed = in_url, counted = 0;
  for (int round = 0; round < 10 && subscribed < 500; ++round) {
    if (round > 0) clock_.AdvanceBy(absl::Milliseconds(250));
    ASSERT_LE(Last().sent.size(), counted + 1) << "one message per 250 ms";
    for (size_t i = counted; i < Last().sent.size(); ++i, ++counted) {
      EXPECT_THAT(Last().sent[i], HasSubstr(R"("method":"SUBSCRIBE")"));
      size_t n = static_cast<size_t>(std::count(Last().sent[i].begin(), Last().sent[i].end(), '@'));
      EXPECT_LE(n, 200u);
      subscribed += n;
    }
  }
  EXPECT_EQ(subscribed, 500u) << "every stream, once";
}

TEST_F(CollectorTest, TradesBecomeRecordsAndAHoleInTheIdsIsAGap) {
  Assign({{"trades", "BTCUSDT"}});
  Last().cb.on_open();
  Last().cb.on_text(Trade(7));
  Last().cb.on_text(Trade(8));
  Last().cb.on_text(Trade(8));  // a repeat is not a record twice
  Last().cb.on_text(Trade(11));
  ASSERT_EQ(records_.size(), 4u);
  EXPECT_EQ(records_[0].key(), "binance_spot/trades/BTCUSDT/7");
  EXPECT_EQ(records_[0].trade().price(), "100.10") << "the exchange's decimal string, exactly";
  EXPECT_EQ(records_[0].trade().side(), v1::SIDE_SELL) << "buyer is maker: the taker sold";
  EXPECT_EQ(records_[0].node_id(), "node-1");
  ASSERT_TRUE(records_[2].has_gap());
  EXPECT_EQ(records_[2].gap().after_update_id(), 8);
  EXPECT_EQ(records_[2].gap().resumed_update_id(), 11);
  EXPECT_THAT(records_[2].gap().reason(), HasSubstr("9..10 missed"));
}

TEST_F(CollectorTest, ABookFetchesItsSnapshotAndJoinsTheBufferedDiffs) {
  Assign({{"book", "BTCUSDT"}});
  Last().cb.on_open();
  Last().cb.on_text(Depth(91, 100));
  Last().cb.on_text(Depth(101, 110));
  ASSERT_EQ(fetches_.size(), 1u) << "one snapshot, not one per diff";
  EXPECT_EQ(fetches_[0].what, "binance_spot /api/v3/depth?BTCUSDT&1000");
  EXPECT_TRUE(records_.empty());
  fetches_[0].done(std::string(R"({"lastUpdateId":105,"bids":[["99","1"]],"asks":[["102","1"]]})"));
  ASSERT_EQ(records_.size(), 2u);
  EXPECT_TRUE(records_[0].book().snapshot());
  EXPECT_EQ(records_[0].key(), "binance_spot/book/BTCUSDT/snapshot/105-105");
  EXPECT_EQ(records_[1].book().first_update_id(), 101);
  Last().cb.on_text(Depth(111, 120));
  EXPECT_EQ(records_.size(), 3u);
}

TEST_F(CollectorTest, ASnapshotRefusedForWantOfBudgetIsAskedForAgainWhenTheCoordinatorSays) {
  Assign({{"book", "BTCUSDT"}});
  Last().cb.on_open();
  Last().cb.on_text(Depth(101, 110));
  ASSERT_EQ(fetches_.size(), 1u);
  fetches_[0].done(common::WithRetryAfter(absl::UnavailableError("snapshot: no binance_spot budget"), absl::Seconds(20)));
  for (int i = 0; i < 19; ++i) {
    clock_.AdvanceBy(absl::Seconds(1));
    Last().cb.on_text(Depth(111 + 10 * i, 120 + 10 * i));  // keep the stream from going silent
  }
  EXPECT_EQ(fetches_.size(), 1u) << "not every second while the budget has no room";
  clock_.AdvanceBy(absl::Seconds(1) + absl::Milliseconds(100));
  EXPECT_EQ(fetches_.size(), 2u);
  // Without a retry-after: a second later.
  fetches_[1].done(absl::UnavailableError("snapshot: HTTP 503"));
  clock_.AdvanceBy(absl::Milliseconds(1100));
  EXPECT_EQ(fetches_.size(), 3u);
}

// An exchange's 4xx (an unknown symbol, a depth it does not allow) or a
// snapshot it garbled is not mended by asking again at once, and each ask
// spends weight: 1 s, then 2 s, then 4 s... (at most 5 min).
TEST_F(CollectorTest, BooksAskForSnapshotsAFewAtATimeAndEachGetsItsTurn) {
  std::vector<std::pair<std::string, std::string>> units;
  for (int i = 0; i < 10; ++i) units.push_back({"book", absl::StrFormat("S%02dUSDT", i)});
  Assign(units);
  Last().cb.on_open();
  auto diffs = [&](int64_t first) {
    for (int i = 0; i < 10; ++i) {
      Last().cb.on_text(absl::StrCat(R"({"stream":"s)", absl::StrFormat("%02d", i),
                                     R"(usdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"S)",
                                     absl::StrFormat("%02d", i), R"(USDT","U":)", first,
                                     R"(,"u":)", first + 9, R"(,"b":[["100","2"]],"a":[["101","1"]]}})"));
    }
  };
  diffs(91);
  ASSERT_EQ(fetches_.size(), 4u) << "snapshots_in_flight, not one per book at once";
  clock_.AdvanceBy(absl::Seconds(1));
  EXPECT_EQ(fetches_.size(), 4u) << "the others wait for an answer, not for a tick";
  fetches_[0].done(std::string(R"({"lastUpdateId":95,"bids":[],"asks":[]})"));
  ASSERT_EQ(fetches_.size(), 5u) << "an answer gives the next book its turn at once";
  fetches_[1].done(absl::DeadlineExceededError("snapshot: Deadline Exceeded"));
  ASSERT_EQ(fetches_.size(), 6u) << "so does a failure";
  std::set<std::string> asked;
  bool retried = false;
  for (size_t i = 0; i < 100 && (asked.size() < 10 || !retried); ++i) {
    if (i >= fetches_.size()) {
      clock_.AdvanceBy(absl::Seconds(1));
      diffs(101 + 10 * static_cast<int64_t>(i));
      ASSERT_LT(i, fetches_.size()) << "a book is left waiting";
    }
    asked.insert(fetches_[i].what);
    retried |= i >= 2 && fetches_[i].what == fetches_[1].what;
    if (i >= 2) fetches_[i].done(absl::StrCat(R"({"lastUpdateId":)", 95 + 10 * i, R"(,"bids":[],"asks":[]})"));
  }
  EXPECT_EQ(asked.size(), 10u) << "every book had its turn";
  EXPECT_TRUE(retried) << "the book whose snapshot failed is asked for again";
}

TEST_F(CollectorTest, ASnapshotTheExchangeRefusesIsAskedForLessAndLessOften) {
  Assign({{"book", "BTCUSDT"}});
  Last().cb.on_open();
  Last().cb.on_text(Depth(101, 110));
  ASSERT_EQ(fetches_.size(), 1u);
  int64_t next = 111;
  // Seconds until the next ask, after failing the pending one with `why`.
  auto seconds_to_next_ask = [&](absl::Status why) {
    size_t asked = fetches_.size();
    fetches_.back().done(std::move(why));
    for (int s = 1; s <= 60; ++s) {
      clock_.AdvanceBy(absl::Seconds(1));
      Last().cb.on_text(Depth(next, next + 9));  // the stream goes on meanwhile
      next += 10;
      if (fetches_.size() > asked) return s;
    }
    return -1;
  };
  EXPECT_EQ(seconds_to_next_ask(absl::FailedPreconditionError("snapshot: HTTP 400: Invalid symbol")), 1);
  EXPECT_EQ(seconds_to_next_ask(absl::FailedPreconditionError("snapshot: HTTP 400: Invalid symbol")), 2);
  EXPECT_EQ(seconds_to_next_ask(absl::FailedPreconditionError("snapshot: HTTP 400: Invalid symbol")), 4);
  fetches_.back().done(std::string("{not json"));  // unreadable: the same
  for (int s = 1; s <= 8; ++s) {
    clock_.AdvanceBy(absl::Seconds(1));
    Last().cb.on_text(Depth(next, next + 9));
    next += 10;
    EXPECT_EQ(fetches_.size(), s < 8 ? 4u : 5u) << "after " << s << " s";
  }
  // A transient failure (the coordinator's, or a 5xx) is asked again a
  // second later and starts the count over.
  EXPECT_EQ(seconds_to_next_ask(absl::UnavailableError("snapshot: HTTP 503")), 1);
  EXPECT_EQ(seconds_to_next_ask(absl::FailedPreconditionError("snapshot: HTTP 400")), 1);
}

TEST_F(CollectorTest, AClosedConnectionReopensAndTheBookReportsItsGap) {
  Assign({{"book", "BTCUSDT"}});
  Last().cb.on_open();
  Last().cb.on_text(Depth(101, 110));
  fetches_[0].done(std::string(R"({"lastUpdateId":105,"bids":[],"asks":[]})"));
  Last().cb.on_closed(-1, "dropped");
  EXPECT_EQ(ws_.conns.size(), 1u) << "not at once: after a back-off";
  clock_.AdvanceBy(absl::Milliseconds(200));
  ASSERT_EQ(ws_.conns.size(), 2u);
  Last().cb.on_open();
  Last().cb.on_text(Depth(201, 210));
  ASSERT_EQ(fetches_.size(), 2u);
  fetches_[1].done(std::string(R"({"lastUpdateId":205,"bids":[],"asks":[]})"));
  ASSERT_GE(records_.size(), 4u);
  const v1::MarketEvent& gap = records_[records_.size() - 3];
  ASSERT_TRUE(gap.has_gap());
  EXPECT_EQ(gap.gap().after_update_id(), 110);
  EXPECT_EQ(gap.gap().resumed_update_id(), 205);
  EXPECT_THAT(gap.gap().reason(), HasSubstr("dropped"));
}

// Feeds `c` one message a second (through `feed`) until the collector opens
// connection number `n`; how long that took.
absl::Duration UntilConnection(testing::FakeClock& clock, FakeWsClient& ws, size_t n,
                               const std::function<void()>& feed) {
  absl::Duration waited;
  while (ws.conns.size() < n && waited < absl::Minutes(2)) {
    feed();
    clock.AdvanceBy(absl::Seconds(1));
    waited += absl::Seconds(1);
  }
  return waited;
}

TEST_F(CollectorTest, AConnectionIsRotatedBeforeTheExchangesCutAndLosesNothing) {
  Assign({{"trades", "BTCUSDT"}, {"book", "BTCUSDT"}});
  FakeWsClient::Conn& first = *ws_.conns[0];
  first.cb.on_open();
  first.cb.on_text(Depth(101, 110));
  fetches_[0].done(std::string(R"({"lastUpdateId":105,"bids":[],"asks":[]})"));
  int64_t trade = 1, update = 111;
  auto send = [](FakeWsClient::Conn& c, int64_t t, int64_t u) {
    c.cb.on_text(Trade(t));
    c.cb.on_text(Depth(u, u + 9));
  };
  auto both = [&](FakeWsClient::Conn& c) { send(c, trade, update); };
  auto next = [&] {
    ++trade;
    update += 10;
  };
  // The cut comes at 1 min: the successor opens 15 to 22.5 s before it
  // (the lead, and up to half of it again at random).
  absl::Duration first_age = UntilConnection(clock_, ws_, 2, [&] { both(first); next(); });
  EXPECT_GE(first_age, absl::Seconds(37));
  EXPECT_LE(first_age, absl::Seconds(46));
  FakeWsClient::Conn& second = *ws_.conns[1];
  EXPECT_EQ(second.spec.url, first.spec.url);
  EXPECT_EQ(second.spec.source_ip, "127.0.0.11");
  EXPECT_FALSE(first.closed);
  second.cb.on_open();
  // The successor runs two messages ahead of the primary: not taken from it.
  both(first);  // k
  send(second, trade + 2, update + 20);  // k+2: ahead, the primary brings it
  send(first, trade + 1, update + 10);   // k+1
  send(first, trade + 2, update + 20);   // k+2
  send(second, trade + 3, update + 30);  // k+3, the very next: the units move
  send(first, trade + 3, update + 30);   // ... and the primary's is not read
  trade += 3;
  update += 30;
  next();
  EXPECT_FALSE(first.closed) << "promoted at the next tick";
  clock_.AdvanceBy(absl::Milliseconds(100));
  EXPECT_TRUE(first.closed);
  both(first);  // what the old one still sends is not read
  both(second);
  next();
  both(second);
  // Every trade once, every update once and in order, no gap.
  int64_t last_trade = 0, last_update = 0;
  for (const v1::MarketEvent& r : records_) {
    ASSERT_FALSE(r.has_gap()) << r.gap().reason();
    if (r.has_trade()) {
      EXPECT_EQ(r.trade().sequence(), last_trade + 1);
      last_trade = r.trade().sequence();
    } else if (r.has_book() && !r.book().snapshot()) {
      if (last_update != 0) EXPECT_EQ(r.book().first_update_id(), last_update + 1);
      last_update = r.book().last_update_id();
    }
  }
  EXPECT_EQ(last_trade, trade);
  EXPECT_EQ(last_update, update + 9);
  // The successor is the connection now, and rotates in its turn.
  absl::Duration second_age = UntilConnection(clock_, ws_, 3, [&] { both(second); next(); });
  EXPECT_GE(second_age, absl::Seconds(37));
  EXPECT_LE(second_age, absl::Seconds(46));
}

TEST_F(CollectorTest, ARotationWhoseStreamsNeverMeetTakesOverAtItsDeadlineAndTheBookResyncs) {
  Assign({{"book", "BTCUSDT"}});
  FakeWsClient::Conn& first = *ws_.conns[0];
  first.cb.on_open();
  first.cb.on_text(Depth(101, 110));
  fetches_[0].done(std::string(R"({"lastUpdateId":105,"bids":[],"asks":[]})"));
  int s = 0;
  UntilConnection(clock_, ws_, 2, [&] { first.cb.on_text(Depth(111 + 10 * s, 120 + 10 * s)); ++s; });
  FakeWsClient::Conn& second = *ws_.conns[1];
  second.cb.on_open();
  second.cb.on_text(Depth(10'001, 10'010));  // far ahead: never meets
  clock_.AdvanceBy(absl::Seconds(6));
  EXPECT_FALSE(first.closed);
  clock_.AdvanceBy(absl::Seconds(2));  // 7.5 s after it began (half the lead): the deadline
  EXPECT_TRUE(first.closed);
  second.cb.on_text(Depth(10'011, 10'020));
  ASSERT_EQ(fetches_.size(), 2u) << "the book resyncs from a snapshot";
  fetches_[1].done(std::string(R"({"lastUpdateId":10015,"bids":[],"asks":[]})"));
  bool gap = false;
  for (const v1::MarketEvent& r : records_) gap = gap || r.has_gap();
  EXPECT_TRUE(gap) << "what was missed is reported";
}

TEST_F(CollectorTest, ASuccessorThatClosesAfterTakingUnitsHandsThemBackWithTheirGap) {
  Assign({{"book", "BTCUSDT"}});
  FakeWsClient::Conn& first = *ws_.conns[0];
  first.cb.on_open();
  first.cb.on_text(Depth(101, 110));
  fetches_[0].done(std::string(R"({"lastUpdateId":105,"bids":[],"asks":[]})"));
  int64_t u = 111;
  UntilConnection(clock_, ws_, 2, [&] { first.cb.on_text(Depth(u, u + 9)); u += 10; });
  FakeWsClient::Conn& second = *ws_.conns[1];
  second.cb.on_open();
  second.cb.on_text(Depth(u, u + 9));  // the very next: the book moves to it
  u += 10;
  first.cb.on_text(Depth(u, u + 9));   // not read: the book reads the successor
  second.cb.on_closed(-1, "dropped");  // ... which goes before taking over
  EXPECT_FALSE(first.closed) << "the primary runs on";
  first.cb.on_text(Depth(u + 10, u + 19));
  ASSERT_EQ(fetches_.size(), 2u) << "the book lost the primary's update: it resyncs";
  fetches_[1].done(absl::StrCat(R"({"lastUpdateId":)", u + 15, R"(,"bids":[],"asks":[]})"));
  first.cb.on_text(Depth(u + 20, u + 29));
  bool gap = false;
  for (const v1::MarketEvent& r : records_) gap = gap || r.has_gap();
  EXPECT_TRUE(gap);
  // It tries again 5 s later.
  size_t before = ws_.conns.size();
  clock_.AdvanceBy(absl::Seconds(5) + absl::Milliseconds(100));
  EXPECT_EQ(ws_.conns.size(), before + 1);
}

TEST_F(CollectorTest, ASuccessorThatNeverOpensIsDroppedAtTheDeadlineAndTheUnitsStay) {
  Assign({{"trades", "BTCUSDT"}});
  FakeWsClient::Conn& first = *ws_.conns[0];
  first.cb.on_open();
  int64_t t = 1;
  UntilConnection(clock_, ws_, 2, [&] { first.cb.on_text(Trade(t++)); });
  FakeWsClient::Conn& second = *ws_.conns[1];  // never opens
  for (int i = 0; i < 8; ++i) {
    first.cb.on_text(Trade(t++));
    clock_.AdvanceBy(absl::Seconds(1));
  }
  EXPECT_TRUE(second.closed) << "given up at the deadline";
  EXPECT_FALSE(first.closed) << "the primary keeps its units";
  first.cb.on_text(Trade(t));
  EXPECT_EQ(records_.back().trade().sequence(), t);
  for (const v1::MarketEvent& r : records_) EXPECT_FALSE(r.has_gap());
}

TEST_F(CollectorTest, ASilentStreamIsReopened) {
  Assign({{"trades", "BTCUSDT"}});
  Last().cb.on_open();
  clock_.AdvanceBy(absl::Seconds(11));
  EXPECT_TRUE(ws_.conns[0]->closed);
  clock_.AdvanceBy(absl::Seconds(1));
  EXPECT_EQ(ws_.conns.size(), 2u);
}

TEST_F(CollectorTest, NewUnitsOnAnOpenConnectionAreSubscribedPaced) {
  Assign({{"trades", "BTCUSDT"}});
  Last().cb.on_open();
  Assign({{"trades", "BTCUSDT"}, {"trades", "ETHUSDT"}});
  ASSERT_EQ(ws_.conns.size(), 1u) << "the open connection takes it";
  ASSERT_EQ(Last().sent.size(), 1u);
  EXPECT_THAT(Last().sent[0], HasSubstr(R"("method":"SUBSCRIBE","params":["ethusdt@trade"])"));
  Assign({{"trades", "ETHUSDT"}});
  EXPECT_EQ(Last().sent.size(), 1u) << "at most one message per 250 ms";
  clock_.AdvanceBy(absl::Milliseconds(300));
  ASSERT_EQ(Last().sent.size(), 2u);
  EXPECT_THAT(Last().sent[1], HasSubstr(R"("method":"UNSUBSCRIBE","params":["btcusdt@trade"])"));
}

TEST_F(CollectorTest, BookTickersTickersAndKlinesAreRecordsReadWhole) {
  v1::Units msg;
  for (const char* channel : {"book_ticker", "ticker", "kline"}) AddUnit(msg, "binance_spot", channel, "BTCUSDT");
  collector_.SetUnits(msg);
  clock_.RunDue();
  ASSERT_EQ(ws_.conns.size(), 1u);
  EXPECT_EQ(Last().spec.url, "ws://sim:1/stream?streams=btcusdt@bookTicker/btcusdt@kline_1m/btcusdt@ticker");
  Last().cb.on_open();
  auto top = [](int u, const char* bid) {
    return absl::StrCat(R"({"stream":"btcusdt@bookTicker","data":{"u":)", u, R"(,"s":"BTCUSDT","b":")", bid,
                        R"(","B":"1.50000000","a":"101.00000000","A":"0.25"}})");
  };
  Last().cb.on_text(top(400, "100.00000000"));
  Last().cb.on_text(top(400, "100.00000000"));  // the same again
  Last().cb.on_text(top(390, "99.00000000"));   // older than the last
  Last().cb.on_text(top(410, "100.10000000"));
  Last().cb.on_text(
      R"({"stream":"btcusdt@ticker","data":{"e":"24hrTicker","E":1700000000000,"s":"BTCUSDT","p":"1","P":"1.0",)"
      R"("w":"100","x":"99","c":"100.5","Q":"0.1","b":"100.4","B":"2","a":"100.6","A":"3","o":"99.5","h":"101",)"
      R"("l":"98","v":"1234.5","q":"123450.0","O":1,"C":2,"F":1,"L":9,"n":9}})");
  auto kline = [](int64_t e, bool closed, const char* close) {
    return absl::StrCat(R"({"stream":"btcusdt@kline_1m","data":{"e":"kline","E":)", e,
                        R"(,"s":"BTCUSDT","k":{"t":1700000040000,"T":1700000099999,"s":"BTCUSDT","i":"1m","f":1,"L":2,)",
                        R"("o":"100","c":")", close, R"(","h":"101","l":"99","v":"5","n":2,"x":)",
                        closed ? "true" : "false", R"(,"q":"500","V":"2","Q":"200","B":"0"}}})");
  };
  Last().cb.on_text(kline(1700000098000, false, "100.2"));
  Last().cb.on_text(kline(1700000100001, true, "100.3"));
  ASSERT_EQ(records_.size(), 5u);
  EXPECT_EQ(records_[0].key(), "binance_spot/book_ticker/BTCUSDT/400");
  EXPECT_EQ(records_[0].book_ticker().bid().quantity(), "1.50000000") << "exactly as sent";
  EXPECT_EQ(records_[1].book_ticker().update_id(), 410);
  EXPECT_EQ(records_[1].book_ticker().bid().price(), "100.10000000");
  EXPECT_EQ(records_[2].key(), "binance_spot/ticker/BTCUSDT/1700000000000");
  EXPECT_EQ(records_[2].exchange_time_us(), 1'700'000'000'000'000);
  EXPECT_EQ(records_[2].ticker().last_price(), "100.5");
  EXPECT_EQ(records_[2].ticker().quote_volume(), "123450.0");
  EXPECT_EQ(records_[2].ticker().best_ask().quantity(), "3");
  EXPECT_EQ(records_[3].key(), "binance_spot/kline_1m/BTCUSDT/1700000040000/1700000098000");
  EXPECT_FALSE(records_[3].kline().closed());
  EXPECT_EQ(records_[4].key(), "binance_spot/kline_1m/BTCUSDT/1700000040000/closed")
      << "a closed candle's key is the same on every copy";
  EXPECT_EQ(records_[4].kline().close(), "100.3");
  EXPECT_EQ(records_[4].kline().open_time_us(), 1'700'000'040'000'000);
  EXPECT_EQ(common::UnitKeyOf(records_[4]), "binance_spot/kline_1m/BTCUSDT");
  EXPECT_EQ(records_[4].channel(), "kline");

  // A malformed event is an error naming what is missing, and no record.
  std::vector<FeedEvent> events;
  absl::Status bad = FeedFor("binance_spot")->Parse(
      R"({"stream":"btcusdt@kline_1m","data":{"e":"kline","E":1,"s":"BTCUSDT","k":{"t":1,"T":2}}})", events);
  EXPECT_THAT(bad.message(), HasSubstr("a kline needs"));
  bad = FeedFor("binance_spot")->Parse(R"({"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1"}})", events);
  EXPECT_THAT(bad.message(), HasSubstr("a book ticker needs"));
  EXPECT_TRUE(events.empty());
}

TEST_F(CollectorTest, UnitsOfExchangesItCannotStreamYetAreRefusedNotRun) {
  v1::Units msg;
  v1::UnitAssignment* a = msg.add_units();  // every exchange in the rules streams: one that is not
  a->set_key("kraken/trades/BTCUSDT");
  a->set_exchange("kraken");
  a->set_channel("trades");
  a->set_symbol("BTCUSDT");
  collector_.SetUnits(msg);
  clock_.RunDue();
  EXPECT_TRUE(ws_.conns.empty());
  EXPECT_TRUE(collector_.Status().empty());
}

TEST_F(CollectorTest, OkxSubscribesOnceOpenJoinsItsRestBookAndKeepsTheConnectionAlive) {
  v1::Units msg;
  for (const char* channel : {"trades", "book"}) {
    v1::UnitAssignment* a = msg.add_units();
    a->set_key(absl::StrCat("okx/", channel, "/BTC-USDT"));
    a->set_exchange("okx");
    a->set_channel(channel);
    a->set_symbol("BTC-USDT");
  }
  collector_.SetUnits(msg);
  clock_.RunDue();
  ASSERT_EQ(ws_.conns.size(), 1u);
  EXPECT_EQ(Last().spec.url, "ws://sim:1/ws/v5/public");
  Last().cb.on_open();
  ASSERT_EQ(Last().sent.size(), 1u);
  EXPECT_THAT(Last().sent[0], HasSubstr(R"("args":[{"channel":"books","instId":"BTC-USDT"},{"channel":"trades","instId":"BTC-USDT"}])"));
  EXPECT_THAT(Last().sent[0], HasSubstr(R"("op":"subscribe")"));
  Last().cb.on_text(R"({"event":"subscribe","arg":{"channel":"trades","instId":"BTC-USDT"},"connId":"a"})");
  Last().cb.on_text(R"({"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[
      {"instId":"BTC-USDT","tradeId":"41","px":"43000.1","sz":"0.01","side":"sell","ts":"1700000000001","count":"1"},
      {"instId":"BTC-USDT","tradeId":"42","px":"43000.2","sz":"0.02","side":"buy","ts":"1700000000002","count":"1"}]})");
  ASSERT_EQ(records_.size(), 2u);
  EXPECT_EQ(records_[0].key(), "okx/trades/BTC-USDT/41");
  EXPECT_EQ(records_[0].trade().side(), v1::SIDE_SELL);
  EXPECT_EQ(records_[1].trade().price(), "43000.2");
  // No WebSocket snapshot (OKX since 2026): the book joins the REST one by seqId.
  Last().cb.on_text(R"({"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[
      {"asks":[["43001","1","0","1"]],"bids":[],"ts":"1700000000100","checksum":0,"prevSeqId":100,"seqId":110}]})");
  ASSERT_EQ(fetches_.size(), 1u);
  EXPECT_EQ(fetches_[0].what, "okx /api/v5/market/books?BTC-USDT&400");
  fetches_[0].done(std::string(R"({"code":"0","msg":"","data":[{"asks":[["43002","1","0","1"]],"bids":[["42999","2","0","1"]],
      "ts":"1700000000050","seqId":105}]})"));
  ASSERT_EQ(records_.size(), 4u) << "prevSeqId 100 <= 105 < seqId 110: the buffered update joins";
  EXPECT_TRUE(records_[2].book().snapshot());
  EXPECT_EQ(records_[3].book().previous_update_id(), 100);
  size_t sent = Last().sent.size();
  clock_.AdvanceBy(absl::Seconds(4));
  EXPECT_EQ(Last().sent.size(), sent) << "not while messages come";
  clock_.AdvanceBy(absl::Seconds(2));
  ASSERT_EQ(Last().sent.size(), sent + 1);
  EXPECT_EQ(Last().sent.back(), "ping") << "OKX closes a connection quiet for 30 s";
  Last().cb.on_text("pong");
  clock_.AdvanceBy(absl::Seconds(8));
  EXPECT_EQ(ws_.conns.size(), 1u) << "the pongs keep the watchdog quiet";
}

// A push of many trades with one bad among them loses only that one: the
// trades before and after it are records, and its hole is a gap.
TEST_F(CollectorTest, ABadTradeInAPushCostsOnlyItselfAndItsHoleIsAGap) {
  v1::Units msg;
  AddUnit(msg, "okx", "trades", "BTC-USDT", 0);
  collector_.SetUnits(msg);
  clock_.RunDue();
  ASSERT_EQ(ws_.conns.size(), 1u);
  Last().cb.on_open();
  Last().cb.on_text(R"({"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[
      {"instId":"BTC-USDT","tradeId":"41","px":"43000.1","sz":"0.01","side":"sell","ts":"1700000000001"},
      {"instId":"BTC-USDT","tradeId":"42","px":"43000.2","side":"buy","ts":"1700000000002"},
      {"instId":"BTC-USDT","tradeId":"43","px":"43000.3","sz":"0.03","side":"buy","ts":"1700000000003"}]})");
  std::vector<std::string> keys;
  for (const v1::MarketEvent& e : records_) keys.push_back(e.key());
  EXPECT_THAT(keys, ::testing::ElementsAre("okx/trades/BTC-USDT/41", "okx/trades/BTC-USDT/gap/41-43",
                                           "okx/trades/BTC-USDT/43"));
}

TEST_F(CollectorTest, OkxTopsAndTickersArePublicCandlesGoToTheBusinessEndpoint) {
  v1::Units msg;
  AddUnit(msg, "okx", "book_ticker", "BTC-USDT", 0);
  AddUnit(msg, "okx", "ticker", "BTC-USDT", 0);
  AddUnit(msg, "okx", "kline", "BTC-USDT", 1);
  collector_.SetUnits(msg);
  clock_.RunDue();
  ASSERT_EQ(ws_.conns.size(), 2u);
  FakeWsClient::Conn& pub = *ws_.conns[0];
  FakeWsClient::Conn& business = *ws_.conns[1];
  EXPECT_EQ(pub.spec.url, "ws://sim:1/ws/v5/public");
  EXPECT_EQ(business.spec.url, "ws://sim:1/ws/v5/business");
  EXPECT_EQ(pub.spec.proxy, "http://proxy:3128/#ws://sim:1/ws/v5/public") << "the exchange's proxy, for its URL";
  pub.cb.on_open();
  business.cb.on_open();
  EXPECT_THAT(business.sent.at(0), HasSubstr(R"({"channel":"candle1m","instId":"BTC-USDT"})"));
  pub.cb.on_text(R"({"arg":{"channel":"bbo-tbt","instId":"BTC-USDT"},"data":[
      {"asks":[["43001.5","0.75","0","3"]],"bids":[["43001.4","1.2","0","2"]],"ts":"1700000000100","seqId":17}]})");
  pub.cb.on_text(R"({"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[{"instType":"SPOT","instId":"BTC-USDT",
      "last":"43001.5","lastSz":"0.1","askPx":"43001.5","askSz":"0.75","bidPx":"43001.4","bidSz":"1.2",
      "open24h":"42000","high24h":"43500","low24h":"41900","volCcy24h":"123456.7","vol24h":"2.9",
      "sodUtc0":"1","sodUtc8":"1","ts":"1700000000150"}]})");
  auto candle = [](const char* vol, const char* confirm) {
    return absl::StrCat(R"({"arg":{"channel":"candle1m","instId":"BTC-USDT"},"data":[["1700000040000","43000","43010",)",
                        R"("42990","43001",")", vol, R"(","100","100",")", confirm, R"("]]})");
  };
  business.cb.on_text(candle("1.5", "0"));
  business.cb.on_text(candle("1.5", "0"));  // no trade since: the same update
  business.cb.on_text(candle("1.7", "1"));
  ASSERT_EQ(records_.size(), 4u);
  EXPECT_EQ(records_[0].key(), "okx/book_ticker/BTC-USDT/17");
  EXPECT_EQ(records_[0].book_ticker().ask().quantity(), "0.75");
  EXPECT_EQ(records_[0].exchange_time_us(), 1'700'000'000'100'000);
  EXPECT_EQ(records_[1].ticker().quote_volume(), "123456.7");
  EXPECT_EQ(records_[1].ticker().open_price(), "42000");
  EXPECT_EQ(records_[2].key(), "okx/kline_1m/BTC-USDT/1700000040000/1.5");
  EXPECT_EQ(records_[2].kline().close_time_us(), 1'700'000'099'999'000);
  EXPECT_EQ(records_[3].key(), "okx/kline_1m/BTC-USDT/1700000040000/closed");
  EXPECT_TRUE(records_[3].kline().closed());
  EXPECT_EQ(common::UnitKeyOf(records_[3]), "okx/kline_1m/BTC-USDT");

  std::vector<FeedEvent> events;
  EXPECT_THAT(FeedFor("okx")->Parse(R"({"arg":{"channel":"candle1m","instId":"X"},"data":[["1","2"]]})", events).message(),
              HasSubstr("a candle must be"));
  EXPECT_THAT(FeedFor("okx")->Parse(R"({"arg":{"channel":"candle7m","instId":"X"},"data":[]})", events).message(),
              HasSubstr("not a candle bar"));
  EXPECT_THAT(FeedFor("okx")->Parse(R"({"arg":{"channel":"bbo-tbt","instId":"X"},"data":[{"seqId":1,"ts":"1","asks":[],"bids":[]}]})",
                                    events).message(),
              HasSubstr("needs a bid and an ask"));
  EXPECT_THAT(FeedFor("okx")->StreamName(common::Channel::kKline, "BTC-USDT", "1d").value(), "candle1Dutc:BTC-USDT");
}

TEST_F(CollectorTest, DeribitQuotesTickersAndChartsKeepTheExchangesNumbersAndCloseACandleWhenTheNextBegins) {
  v1::Units msg;
  AddUnit(msg, "deribit", "book_ticker", "BTC-PERPETUAL");
  AddUnit(msg, "deribit", "ticker", "BTC-PERPETUAL");
  AddUnit(msg, "deribit", "kline", "BTC-PERPETUAL");
  collector_.SetUnits(msg);
  clock_.RunDue();
  ASSERT_EQ(ws_.conns.size(), 1u);
  Last().cb.on_open();
  EXPECT_THAT(Last().sent.back(), HasSubstr(R"(["chart.trades.BTC-PERPETUAL.1","quote.BTC-PERPETUAL","ticker.BTC-PERPETUAL.100ms"])"));
  auto note = [&](const char* channel, const std::string& data) {
    Last().cb.on_text(absl::StrCat(R"({"jsonrpc":"2.0","method":"subscription","params":{"channel":")", channel,
                                   R"(","data":)", data, "}}"));
  };
  note("quote.BTC-PERPETUAL", R"({"timestamp":1700000000100,"instrument_name":"BTC-PERPETUAL","best_bid_price":43000.0,
      "best_bid_amount":2500,"best_ask_price":43000.5,"best_ask_amount":1.5e3})");
  note("ticker.BTC-PERPETUAL.100ms", R"({"timestamp":1700000000200,"instrument_name":"BTC-PERPETUAL",
      "stats":{"volume":1234.50,"volume_usd":53000000,"price_change":0.5,"low":42000.0,"high":43500.5},
      "last_price":43000.5,"best_bid_price":43000.0,"best_bid_amount":2500,"best_ask_price":43000.5,"best_ask_amount":1500})");
  auto chart = [&](int64_t tick, const char* close, const char* volume) {
    note("chart.trades.BTC-PERPETUAL.1", absl::StrCat(R"({"tick":)", tick, R"(,"open":43000.0,"high":43010.0,"low":42990.0,"close":)",
                                                      close, R"(,"volume":)", volume, R"(,"cost":1000.0})"));
  };
  chart(1700000040000, "43001.0", "0.02");
  chart(1700000040000, "43001.0", "0.02");  // the same update again
  chart(1700000040000, "43002.0", "0.03");
  chart(1700000100000, "43002.0", "0.0");   // the next candle: the one before is final
  ASSERT_EQ(records_.size(), 6u);
  EXPECT_EQ(records_[0].key(), "deribit/book_ticker/BTC-PERPETUAL/1700000000100");
  EXPECT_EQ(records_[0].book_ticker().bid().price(), "43000.0") << "as the exchange wrote it";
  EXPECT_EQ(records_[0].book_ticker().ask().quantity(), "1500");
  EXPECT_EQ(records_[1].ticker().volume(), "1234.50");
  EXPECT_EQ(records_[1].ticker().quote_volume(), "53000000");
  EXPECT_EQ(records_[1].ticker().high_price(), "43500.5");
  EXPECT_EQ(records_[1].ticker().open_price(), "") << "Deribit gives no 24 h open";
  EXPECT_EQ(records_[2].key(), "deribit/kline_1m/BTC-PERPETUAL/1700000040000/0.02/43001.0");
  EXPECT_FALSE(records_[2].kline().closed());
  EXPECT_EQ(records_[3].kline().close(), "43002.0");
  EXPECT_EQ(records_[4].key(), "deribit/kline_1m/BTC-PERPETUAL/1700000040000/closed");
  EXPECT_TRUE(records_[4].kline().closed());
  EXPECT_EQ(records_[4].kline().close(), "43002.0") << "the last update is the final value";
  EXPECT_EQ(records_[4].kline().volume(), "0.03");
  EXPECT_EQ(records_[5].kline().open_time_us(), 1'700'000'100'000'000);
  EXPECT_EQ(common::UnitKeyOf(records_[4]), "deribit/kline_1m/BTC-PERPETUAL");

  // After a lost connection the last update seen need not be the final one:
  // no closed record is made from it.
  Last().cb.on_closed(1006, "gone");
  clock_.AdvanceBy(absl::Seconds(60));
  clock_.RunDue();
  Last().cb.on_open();
  chart(1700000160000, "43003.0", "0.01");
  ASSERT_EQ(records_.size(), 7u);
  EXPECT_FALSE(records_[6].kline().closed());

  std::vector<FeedEvent> events;
  const Feed* feed = FeedFor("deribit");
  EXPECT_THAT(feed->Parse(R"({"jsonrpc":"2.0","method":"subscription","params":{"channel":"quote.X","data":{"timestamp":1}}})",
                          events).message(),
              HasSubstr("a quote needs"));
  EXPECT_THAT(feed->Parse(R"({"jsonrpc":"2.0","method":"subscription","params":{"channel":"ticker.X.100ms","data":{
      "timestamp":1,"instrument_name":"X","last_price":1,"best_bid_price":1,"best_bid_amount":1,"best_ask_price":1,
      "best_ask_amount":1}}})", events).message(),
              HasSubstr("\"stats\""));
  EXPECT_THAT(feed->Parse(R"({"jsonrpc":"2.0","method":"subscription","params":{"channel":"chart.trades.X.7","data":{}}})",
                          events).message(),
              HasSubstr("not a resolution"));
  EXPECT_THAT(feed->Parse(R"({"jsonrpc":"2.0","method":"subscription","params":{"channel":"chart.trades.X.1","data":{"tick":1}}})",
                          events).message(),
              HasSubstr("a candle needs"));
  EXPECT_EQ(feed->StreamName(common::Channel::kKline, "ETH-PERPETUAL", "1d").value(), "chart.trades.ETH-PERPETUAL.1D");
  EXPECT_FALSE(feed->StreamName(common::Channel::kKline, "ETH-PERPETUAL", "4h").ok());
}

TEST_F(CollectorTest, DeribitAsksForHeartbeatsAnswersThemAndResyncsABookBySubscribingAgain) {
  v1::Units msg;
  for (const char* channel : {"trades", "book"}) {
    v1::UnitAssignment* a = msg.add_units();
    a->set_key(absl::StrCat("deribit/", channel, "/BTC-PERPETUAL"));
    a->set_exchange("deribit");
    a->set_channel(channel);
    a->set_symbol("BTC-PERPETUAL");
  }
  collector_.SetUnits(msg);
  clock_.RunDue();
  ASSERT_EQ(ws_.conns.size(), 1u);
  EXPECT_EQ(Last().spec.url, "ws://sim:1/ws/api/v2");
  Last().cb.on_open();
  ASSERT_EQ(Last().sent.size(), 2u);
  EXPECT_THAT(Last().sent[0], HasSubstr(R"("method":"public/set_heartbeat","params":{"interval":10})"));
  EXPECT_THAT(Last().sent[1], HasSubstr(R"("method":"public/subscribe","params":{"channels":["book.BTC-PERPETUAL.100ms","trades.BTC-PERPETUAL.100ms"]})"));
  Last().cb.on_text(R"({"jsonrpc":"2.0","id":2,"result":["book.BTC-PERPETUAL.100ms","trades.BTC-PERPETUAL.100ms"]})");
  // Prices and amounts are JSON numbers: their text is kept, trailing zero and all.
  Last().cb.on_text(R"({"jsonrpc":"2.0","method":"subscription","params":{"channel":"trades.BTC-PERPETUAL.100ms","data":[
      {"trade_seq":7,"trade_id":"ETH-99","timestamp":1700000000001,"price":43000.50,"amount":10,"direction":"sell",
       "instrument_name":"BTC-PERPETUAL","tick_direction":0,"mark_price":43000.1,"index_price":43000.2}]}})");
  ASSERT_EQ(records_.size(), 1u);
  EXPECT_EQ(records_[0].trade().price(), "43000.50");
  EXPECT_EQ(records_[0].trade().quantity(), "10");
  EXPECT_EQ(records_[0].trade().trade_id(), "ETH-99") << "the exchange's own id";
  EXPECT_EQ(records_[0].trade().sequence(), 7) << "continuity is trade_seq's";
  EXPECT_EQ(records_[0].key(), "deribit/trades/BTC-PERPETUAL/7");
  // The subscription's first book message is the snapshot: no REST fetch.
  Last().cb.on_text(R"({"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.100ms","data":{
      "type":"snapshot","timestamp":1700000000100,"instrument_name":"BTC-PERPETUAL","change_id":100,
      "bids":[["new",42999.5,2500.0]],"asks":[["new",43000.5,10]]}}})");
  EXPECT_TRUE(fetches_.empty());
  ASSERT_EQ(records_.size(), 2u);
  EXPECT_TRUE(records_[1].book().snapshot());
  EXPECT_EQ(records_[1].book().bids(0).price(), "42999.5");
  EXPECT_EQ(records_[1].book().bids(0).quantity(), "2500.0");
  Last().cb.on_text(R"({"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.100ms","data":{
      "type":"change","timestamp":1700000000200,"instrument_name":"BTC-PERPETUAL","change_id":104,"prev_change_id":100,
      "bids":[["delete",42999.5,0]],"asks":[["change",43000.5,20]]}}})");
  ASSERT_EQ(records_.size(), 3u);
  EXPECT_EQ(records_[2].book().bids(0).quantity(), "0") << "a delete removes the level";
  // Deribit's heartbeat asks for an answer.
  size_t sent = Last().sent.size();
  Last().cb.on_text(R"({"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}})");
  ASSERT_EQ(Last().sent.size(), sent + 1);
  EXPECT_THAT(Last().sent.back(), HasSubstr(R"("method":"public/test")"));
  // A change that does not follow: the book resubscribes for a new snapshot.
  Last().cb.on_text(R"({"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.100ms","data":{
      "type":"change","timestamp":1700000000400,"instrument_name":"BTC-PERPETUAL","change_id":110,"prev_change_id":107,
      "bids":[],"asks":[["change",43000.5,21]]}}})");
  clock_.AdvanceBy(absl::Seconds(1));
  EXPECT_TRUE(fetches_.empty()) << "no REST snapshot on Deribit";
  ASSERT_GE(Last().sent.size(), sent + 3);
  EXPECT_THAT(Last().sent[sent + 1], HasSubstr(R"("method":"public/unsubscribe","params":{"channels":["book.BTC-PERPETUAL.100ms"]})"));
  EXPECT_THAT(Last().sent[sent + 2], HasSubstr(R"("method":"public/subscribe","params":{"channels":["book.BTC-PERPETUAL.100ms"]})"));
  sent = Last().sent.size();
  clock_.AdvanceBy(absl::Seconds(3));
  EXPECT_EQ(Last().sent.size(), sent) << "while its snapshot is on the way, no second resubscription";
  Last().cb.on_text(R"({"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.100ms","data":{
      "type":"snapshot","timestamp":1700000000500,"instrument_name":"BTC-PERPETUAL","change_id":120,
      "bids":[["new",42999,1]],"asks":[["new",43001,1]]}}})");
  ASSERT_GE(records_.size(), 5u);
  EXPECT_TRUE(records_[records_.size() - 2].has_gap());
  EXPECT_EQ(records_[records_.size() - 2].gap().after_update_id(), 104);
  EXPECT_TRUE(records_.back().book().snapshot());
  EXPECT_EQ(collector_.Status()[0].state, "live");
  // A malformed message is named and dropped.
  Last().cb.on_text(R"({"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.100ms","data":{
      "type":"change","timestamp":1,"instrument_name":"BTC-PERPETUAL","change_id":121,"prev_change_id":120,
      "bids":[["upsert",1,1]],"asks":[]}}})");
  EXPECT_EQ(collector_.Status()[0].state, "live");
}

TEST_F(CollectorTest, DeribitMessagesWaitForTheIpsCreditsAndGoInOrder) {
  v1::Units msg;
  v1::UnitAssignment* a = msg.add_units();
  a->set_key("deribit/trades/BTC-PERPETUAL");
  a->set_exchange("deribit");
  a->set_channel("trades");
  a->set_symbol("BTC-PERPETUAL");
  collector_.SetUnits(msg);
  clock_.RunDue();
  ASSERT_EQ(ws_.conns.size(), 1u);
  spend_wait_ = absl::Milliseconds(30);  // REST requests spent the bucket
  Last().cb.on_open();
  EXPECT_TRUE(Last().sent.empty()) << "Deribit charges each call like a request: none goes over";
  spend_wait_ = absl::ZeroDuration();
  clock_.AdvanceBy(absl::Milliseconds(100));
  ASSERT_EQ(Last().sent.size(), 2u);
  EXPECT_THAT(Last().sent[0], HasSubstr("public/set_heartbeat"));
  EXPECT_THAT(Last().sent[1], HasSubstr("public/subscribe"));
  EXPECT_THAT(spent_, ::testing::ElementsAre("deribit /api/v2/public/set_heartbeat", "deribit /api/v2/public/subscribe"));
  // Binance's messages are not charged to the IP's request pools.
  spent_.clear();
  Assign({{"trades", "BTCUSDT"}});
  ASSERT_EQ(ws_.conns.size(), 2u);
  Last().cb.on_open();
  EXPECT_TRUE(spent_.empty());
}

}  // namespace
}  // namespace marketprism::node
