#include "node/sinks/sink_pipeline.h"

#include <filesystem>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

#include "tests/testing/fake_clock.h"

namespace marketprism::node {
namespace {

// Records what it is given; fails while `down`.
class FakeWriter final : public RecordWriter {
 public:
  struct State {
    bool down = false;
    std::vector<v1::MarketEvent> written;
    std::vector<size_t> batches;
    bool closed = false;
  };
  explicit FakeWriter(State* state) : state_(state) {}
  std::string name() const override { return "fake"; }
  absl::Status Write(const std::vector<v1::MarketEvent>& batch) override {
    if (state_->down) return absl::UnavailableError("fake is down");
    state_->written.insert(state_->written.end(), batch.begin(), batch.end());
    state_->batches.push_back(batch.size());
    return absl::OkStatus();
  }
  void Close() override { state_->closed = true; }

 private:
  State* state_;
};

v1::MarketEvent Trade(const std::string& symbol, int64_t seq) {
  v1::MarketEvent e;
  e.set_exchange("binance_spot");
  e.set_symbol(symbol);
  e.set_channel("trades");
  e.set_node_id("node-a");
  e.set_received_time_us(1'700'000'000'000'000);
  e.set_key(absl::StrCat("binance_spot/trades/", symbol, "/", seq));
  e.mutable_trade()->set_sequence(seq);
  return e;
}

std::vector<v1::MarketEvent> Trades(const std::string& symbol, int64_t from, int64_t to) {
  std::vector<v1::MarketEvent> out;
  for (int64_t i = from; i <= to; ++i) out.push_back(Trade(symbol, i));
  return out;
}

class SinkPipelineTest : public ::testing::Test {
 protected:
  std::unique_ptr<SinkPipeline> Make(SinkPipelineOptions o = {}) {
    if (o.spool_dir.empty()) {
      o.spool_dir = absl::StrCat(::testing::TempDir(), "/pipeline_",
                                 ::testing::UnitTest::GetInstance()->current_test_info()->name());
      if (fresh_) std::filesystem::remove_all(o.spool_dir);
      fresh_ = false;
    }
    o.linger = absl::ZeroDuration();
    auto p = SinkPipeline::Create(std::move(o), std::make_unique<FakeWriter>(&state_), clock_);
    EXPECT_TRUE(p.ok()) << p.status();
    return std::move(*p);
  }
  // Runs the pipeline until it has nothing it can do now.
  void Drain(SinkPipeline& p) {
    for (int i = 0; i < 1000 && p.RunOnce() == absl::ZeroDuration(); ++i) {
    }
  }
  std::vector<int64_t> Sequences(const std::string& symbol) {
    std::vector<int64_t> out;
    for (const auto& e : state_.written) {
      if (e.symbol() == symbol && e.has_trade()) out.push_back(e.trade().sequence());
    }
    return out;
  }
  static std::vector<int64_t> Range(int64_t from, int64_t to) {
    std::vector<int64_t> out;
    for (int64_t i = from; i <= to; ++i) out.push_back(i);
    return out;
  }

  testing::FakeClock clock_;
  FakeWriter::State state_;
  bool fresh_ = true;
};

TEST_F(SinkPipelineTest, RecordsGoOutInOrderInBatches) {
  SinkPipelineOptions o;
  o.batch_records = 4;
  auto p = Make(o);
  p->Offer(Trades("BTCUSDT", 1, 10));
  Drain(*p);
  EXPECT_EQ(Sequences("BTCUSDT"), Range(1, 10));
  EXPECT_EQ(state_.batches, (std::vector<size_t>{4, 4, 2}));
  EXPECT_EQ(p->RunOnce(), absl::InfiniteDuration());
  EXPECT_EQ(p->Status().written_total, 10);
}

TEST_F(SinkPipelineTest, ADownSinkSpoolsAndEverythingGoesOutInOrderWhenItIsBack) {
  SinkPipelineOptions o;
  o.memory_records = 5;
  o.batch_records = 3;
  auto p = Make(o);
  state_.down = true;
  for (int64_t i = 1; i <= 50; i += 5) {
    p->Offer(Trades("BTCUSDT", i, i + 4));
    EXPECT_GT(p->RunOnce(), absl::ZeroDuration());  // fails, backs off
  }
  SinkStatus s = p->Status();
  EXPECT_FALSE(s.healthy);
  EXPECT_EQ(s.last_error, "fake is down");
  EXPECT_EQ(s.queued + s.spool_records, 50);
  EXPECT_GT(s.spool_records, 0);
  EXPECT_GT(s.spool_bytes, 0);
  // Back-off: not before its time.
  state_.down = false;
  EXPECT_GT(p->RunOnce(), absl::ZeroDuration());
  EXPECT_TRUE(state_.written.empty());
  clock_.AdvanceBy(absl::Seconds(90));
  EXPECT_EQ(p->Status().spool_age, absl::Seconds(90));
  p->Offer(Trades("BTCUSDT", 51, 52));
  Drain(*p);
  EXPECT_EQ(Sequences("BTCUSDT"), Range(1, 52));
  s = p->Status();
  EXPECT_TRUE(s.healthy);
  EXPECT_EQ(s.spool_records, 0);
  EXPECT_EQ(s.dropped_total, 0);
}

TEST_F(SinkPipelineTest, AFullSpoolDropsRecordsAndTheUnitsNextRecordFollowsAGapRecord) {
  SinkPipelineOptions o;
  o.memory_records = 4;
  o.spool_max_bytes = 0;
  for (const auto& e : Trades("BTCUSDT", 5, 10)) o.spool_max_bytes += static_cast<int64_t>(e.ByteSizeLong()) + 4;
  auto p = Make(o);
  state_.down = true;
  p->Offer(Trades("BTCUSDT", 1, 4));    // memory
  p->Offer(Trades("BTCUSDT", 5, 10));   // spool, now full
  p->Offer(Trades("BTCUSDT", 11, 13));  // dropped
  p->Offer(Trades("ETHUSDT", 1, 1));    // dropped
  EXPECT_EQ(p->Status().dropped_total, 4);
  state_.down = false;
  Drain(*p);
  p->Offer(Trades("BTCUSDT", 14, 15));
  p->Offer(Trades("ETHUSDT", 2, 2));
  Drain(*p);
  EXPECT_EQ(Sequences("BTCUSDT"), (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 15}));
  // The gap is written just before the record the unit resumed with.
  std::vector<const v1::MarketEvent*> gaps;
  for (size_t i = 0; i < state_.written.size(); ++i) {
    if (state_.written[i].has_gap()) {
      gaps.push_back(&state_.written[i]);
      ASSERT_LT(i + 1, state_.written.size());
      EXPECT_EQ(state_.written[i + 1].symbol(), state_.written[i].symbol());
    }
  }
  ASSERT_EQ(gaps.size(), 2u);
  EXPECT_EQ(gaps[0]->symbol(), "BTCUSDT");
  EXPECT_EQ(gaps[0]->channel(), "trades");
  EXPECT_EQ(gaps[0]->gap().after_update_id(), 10);
  EXPECT_EQ(gaps[0]->gap().resumed_update_id(), 14);
  EXPECT_EQ(gaps[0]->gap().reason(), "spool full: 3 records dropped by the fake sink");
  EXPECT_EQ(gaps[0]->key(), "binance_spot/trades/BTCUSDT/gap/spool/node-a/10-14");
  EXPECT_EQ(gaps[1]->symbol(), "ETHUSDT");
  EXPECT_EQ(gaps[1]->gap().after_update_id(), 0);  // nothing of it was kept before
  EXPECT_EQ(gaps[1]->gap().resumed_update_id(), 2);
}

TEST_F(SinkPipelineTest, StopKeepsWhatASinkThatIsDownDidNotTakeForTheNextRun) {
  SinkPipelineOptions o;
  o.memory_records = 100;
  auto p = Make(o);
  state_.down = true;
  p->Offer(Trades("BTCUSDT", 1, 7));
  p->Stop(absl::ZeroDuration());
  EXPECT_TRUE(state_.closed);
  p.reset();
  state_ = {};
  auto again = Make(o);
  EXPECT_EQ(again->Status().spool_records, 7);
  Drain(*again);
  EXPECT_EQ(Sequences("BTCUSDT"), Range(1, 7));
}

TEST_F(SinkPipelineTest, ASmallBatchWaitsForMoreUntilTheLingerIsOver) {
  SinkPipelineOptions o;
  o.batch_records = 100;
  o.spool_dir = absl::StrCat(::testing::TempDir(), "/pipeline_linger");
  std::filesystem::remove_all(o.spool_dir);
  auto made = SinkPipeline::Create(o, std::make_unique<FakeWriter>(&state_), clock_);  // linger 100 ms
  ASSERT_TRUE(made.ok());
  auto& p = *made;
  p->Offer(Trades("BTCUSDT", 1, 1));
  EXPECT_EQ(p->RunOnce(), absl::InfiniteDuration());  // the first goes at once
  p->Offer(Trades("BTCUSDT", 2, 3));
  EXPECT_EQ(p->RunOnce(), absl::Milliseconds(100));
  clock_.AdvanceBy(absl::Milliseconds(60));
  p->Offer(Trades("BTCUSDT", 4, 4));
  EXPECT_EQ(p->RunOnce(), absl::Milliseconds(40));
  clock_.AdvanceBy(absl::Milliseconds(40));
  EXPECT_EQ(p->RunOnce(), absl::InfiniteDuration());
  EXPECT_EQ(state_.batches, (std::vector<size_t>{1, 3}));
}

TEST(RecordSequenceTest, EachKindIsCheckedByItsOwnNumber) {
  v1::MarketEvent e;
  e.mutable_book()->set_last_update_id(77);
  EXPECT_EQ(RecordSequence(e), 77);
  e.mutable_kline()->set_open_time_us(60'000'000);
  e.mutable_kline()->set_interval("1m");
  e.set_exchange("okx");
  e.set_channel("kline");
  e.set_symbol("BTC-USDT");
  EXPECT_EQ(RecordSequence(e), 60'000'000);
  EXPECT_EQ(RecordUnit(e), "okx/kline_1m/BTC-USDT");
}

}  // namespace
}  // namespace marketprism::node
