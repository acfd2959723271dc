#include "node/sinks/jsonl_writer.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace marketprism::node {
namespace {

constexpr int64_t kHour = int64_t{3600} * 1000000;
constexpr int64_t kT0 = int64_t{1'700'000'000} / 3600 * 3600 * 1000000;  // 2023-11-14T22:00Z

v1::MarketEvent Trade(const std::string& symbol, int64_t seq, int64_t received_us) {
  v1::MarketEvent e;
  e.set_exchange("binance_spot");
  e.set_symbol(symbol);
  e.set_channel("trades");
  e.set_received_time_us(received_us);
  e.set_key(absl::StrCat("binance_spot/trades/", symbol, "/", seq));
  e.mutable_trade()->set_sequence(seq);
  return e;
}

std::vector<std::string> Lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

TEST(JsonlWriterTest, OneFilePerUnitAndHourNamedByTheNode) {
  std::string dir = absl::StrCat(::testing::TempDir(), "/jsonl_files");
  std::filesystem::remove_all(dir);
  auto w = JsonlWriter::Create(dir, "node-a");
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Write({Trade("BTCUSDT", 1, kT0 + 5), Trade("ETHUSDT", 1, kT0 + 6),
                           Trade("BTCUSDT", 2, kT0 + kHour - 1)})
                  .ok());
  ASSERT_TRUE((*w)->Write({Trade("BTCUSDT", 3, kT0 + kHour)}).ok());
  (*w)->Close();
  std::string first = absl::StrCat(dir, "/binance_spot/trades/BTCUSDT/20231114T22.node-a.jsonl");
  EXPECT_EQ((*w)->PathFor(Trade("BTCUSDT", 1, kT0)), first);
  std::vector<std::string> lines = Lines(first);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[0].find("\"key\":\"binance_spot/trades/BTCUSDT/1\""), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("BTCUSDT/2"), std::string::npos);
  EXPECT_EQ(Lines(absl::StrCat(dir, "/binance_spot/trades/BTCUSDT/20231114T23.node-a.jsonl")).size(), 1u);
  EXPECT_EQ(Lines(absl::StrCat(dir, "/binance_spot/trades/ETHUSDT/20231114T22.node-a.jsonl")).size(), 1u);
}

TEST(JsonlWriterTest, ReopeningAnHoursFileAppendsAndFewFilesStayOpen) {
  std::string dir = absl::StrCat(::testing::TempDir(), "/jsonl_lru");
  std::filesystem::remove_all(dir);
  auto w = JsonlWriter::Create(dir, "n", /*max_open=*/2);
  ASSERT_TRUE(w.ok());
  for (int round = 0; round < 3; ++round) {
    for (const char* s : {"A", "B", "C", "D"}) ASSERT_TRUE((*w)->Write({Trade(s, round, kT0)}).ok());
  }
  (*w)->Close();
  for (const char* s : {"A", "B", "C", "D"}) {
    EXPECT_EQ(Lines(absl::StrCat(dir, "/binance_spot/trades/", s, "/20231114T22.n.jsonl")).size(), 3u) << s;
  }
}

TEST(JsonlWriterTest, NamesFromTheExchangeCannotLeaveTheFolder) {
  auto w = JsonlWriter::Create(absl::StrCat(::testing::TempDir(), "/jsonl_names"), "../n");
  ASSERT_TRUE(w.ok());
  v1::MarketEvent e = Trade("../../etc", 1, kT0);
  std::string path = (*w)->PathFor(e);
  EXPECT_EQ(path.find("/../"), std::string::npos) << path;
}

}  // namespace
}  // namespace marketprism::node
