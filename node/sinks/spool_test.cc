#include "node/sinks/spool.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace marketprism::node {
namespace {

v1::MarketEvent Trade(int64_t seq) {
  v1::MarketEvent e;
  e.set_exchange("binance_spot");
  e.set_symbol("BTCUSDT");
  e.set_channel("trades");
  e.set_received_time_us(1'700'000'000'000'000 + seq);
  e.set_key(absl::StrCat("binance_spot/trades/BTCUSDT/", seq));
  e.mutable_trade()->set_sequence(seq);
  e.mutable_trade()->set_price("100.5");
  return e;
}

std::vector<v1::MarketEvent> Trades(int64_t from, int64_t to) {
  std::vector<v1::MarketEvent> out;
  for (int64_t i = from; i <= to; ++i) out.push_back(Trade(i));
  return out;
}

std::string FreshDir(const std::string& name) {
  std::string dir = absl::StrCat(::testing::TempDir(), "/spool_", name);
  std::filesystem::remove_all(dir);
  return dir;
}

size_t Files(const std::string& dir) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++n;
  return n;
}

TEST(SpoolTest, RecordsComeBackInOrderAcrossSegmentsAndReadSegmentsAreDeleted) {
  std::string dir = FreshDir("order");
  auto spool = Spool::Open(dir, 1 << 20, /*segment_bytes=*/500);
  ASSERT_TRUE(spool.ok()) << spool.status();
  for (int64_t i = 1; i <= 100; i += 10) ASSERT_TRUE((*spool)->Append(Trades(i, i + 9)).ok());
  EXPECT_EQ((*spool)->records(), 100);
  EXPECT_GT(Files(dir), 3u);
  EXPECT_EQ((*spool)->oldest_received_us(), Trade(1).received_time_us());
  int64_t next = 1;
  while (!(*spool)->empty()) {
    std::vector<v1::MarketEvent> got = (*spool)->Peek(7);
    ASSERT_FALSE(got.empty());
    for (const auto& e : got) EXPECT_EQ(e.trade().sequence(), next++);
    (*spool)->Pop(got.size());
  }
  EXPECT_EQ(next, 101);
  EXPECT_EQ((*spool)->bytes(), 0);
  EXPECT_EQ(Files(dir), 0u);
  // It goes on after being emptied.
  ASSERT_TRUE((*spool)->Append(Trades(101, 102)).ok());
  EXPECT_EQ((*spool)->Peek(5).size(), 2u);
}

TEST(SpoolTest, WhatAnEarlierRunLeftIsReadFirstIncludingRecordsTakenButNotPopped) {
  std::string dir = FreshDir("reopen");
  {
    auto spool = Spool::Open(dir, 1 << 20, 300);
    ASSERT_TRUE(spool.ok());
    ASSERT_TRUE((*spool)->Append(Trades(1, 20)).ok());
    (*spool)->Pop((*spool)->Peek(5).size());  // 1..5 written out
    (void)(*spool)->Peek(3);                  // 6..8 taken, not confirmed
  }
  auto again = Spool::Open(dir, 1 << 20, 300);
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE((*again)->Append(Trades(21, 22)).ok());
  std::vector<v1::MarketEvent> got = (*again)->Peek(100);
  ASSERT_FALSE(got.empty());
  // Whole segments are deleted only once read: the oldest kept may repeat
  // some of 1..5, never skip 6.
  EXPECT_LE(got.front().trade().sequence(), 6);
  EXPECT_EQ(got.back().trade().sequence(), 22);
  for (size_t i = 1; i < got.size(); ++i) EXPECT_EQ(got[i].trade().sequence(), got[i - 1].trade().sequence() + 1);
}

TEST(SpoolTest, AFullSpoolRefusesTheWholeAppend) {
  std::string dir = FreshDir("full");
  int64_t ten = 0;
  for (const auto& e : Trades(1, 10)) ten += static_cast<int64_t>(e.ByteSizeLong()) + 4;
  auto spool = Spool::Open(dir, ten);
  ASSERT_TRUE(spool.ok());
  ASSERT_TRUE((*spool)->Append(Trades(1, 8)).ok());
  absl::Status full = (*spool)->Append(Trades(9, 11));
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  EXPECT_NE(full.message().find(dir), std::string::npos) << full;
  EXPECT_EQ((*spool)->records(), 8);
  EXPECT_TRUE((*spool)->Append(Trades(9, 10)).ok());
}

TEST(SpoolTest, ARecordCutShortByACrashEndsItsSegment) {
  std::string dir = FreshDir("torn");
  {
    auto spool = Spool::Open(dir, 1 << 20);
    ASSERT_TRUE(spool.ok());
    ASSERT_TRUE((*spool)->Append(Trades(1, 3)).ok());
  }
  std::string file;
  for (const auto& e : std::filesystem::directory_iterator(dir)) file = e.path();
  std::ofstream(file, std::ios::app | std::ios::binary) << std::string("\x50\x00\x00\x00half", 8);
  auto spool = Spool::Open(dir, 1 << 20);
  ASSERT_TRUE(spool.ok());
  EXPECT_EQ((*spool)->records(), 3);
  std::vector<v1::MarketEvent> got = (*spool)->Peek(10);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[2].trade().sequence(), 3);
}

TEST(SpoolTest, AFolderThatCannotBeMadeIsNamed) {
  std::string file = FreshDir("blocker");
  std::ofstream(file) << "x";
  auto spool = Spool::Open(file + "/sub", 100);
  ASSERT_FALSE(spool.ok());
  EXPECT_EQ(spool.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(spool.status().message().find(file), std::string::npos);
}

}  // namespace
}  // namespace marketprism::node
