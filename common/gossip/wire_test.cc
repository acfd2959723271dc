#include "common/gossip/wire.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

namespace marketprism::common::gossip {
namespace {

using ::testing::HasSubstr;

const std::string kKeyA(64, 'a');  // 32 bytes of 0xaa, as hex
const std::string kKeyB = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";  // 0..31, base64

Keyring Ring(std::vector<std::string> keys) { return *Keyring::FromStrings(keys); }

class WireTest : public ::testing::Test {
 protected:
  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
  Keyring ring_ = Ring({kKeyA});
  Sealer sealer_{"prod", 7};
  Opener opener_{"prod"};

  std::string Seal(absl::string_view payload, const Keyring& ring) {
    return *sealer_.Seal(ring, FrameKind::kDatagram, payload, now_);
  }
};

TEST_F(WireTest, ARoundTripGivesThePayloadBackAndHidesIt) {
  std::string frame = Seal("hello members", ring_);
  EXPECT_EQ(frame.size(), 13 + kFrameOverhead);
  EXPECT_EQ(frame.find("hello"), std::string::npos);
  auto opened = opener_.Open(ring_, frame, now_);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->payload, "hello members");
  EXPECT_EQ(opened->kind, FrameKind::kDatagram);
  EXPECT_EQ(opened->key_id, ring_.primary_id());
}

TEST_F(WireTest, EveryAlteredByteIsRefused) {
  std::string frame = Seal("payload", ring_);
  for (size_t i = 0; i < frame.size(); ++i) {
    std::string bad = frame;
    bad[i] = static_cast<char>(bad[i] ^ 0x01);
    Opener fresh("prod");
    EXPECT_FALSE(fresh.Open(ring_, bad, now_).ok()) << "byte " << i;
  }
}

TEST_F(WireTest, AnotherClusterNameOrKeyDoesNotOpen) {
  std::string frame = Seal("payload", ring_);
  Opener other("staging");
  auto s = other.Open(ring_, frame, now_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(s.message(), HasSubstr("cluster name or key"));
  auto unknown = opener_.Open(Ring({kKeyB}), frame, now_).status();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(unknown.message(), HasSubstr("unknown key"));
}

TEST_F(WireTest, BadFramesNameTheirProblem) {
  EXPECT_THAT(opener_.Open(ring_, "short", now_).status().message(), HasSubstr("too short"));
  std::string frame = Seal("payload", ring_);
  std::string magic = frame;
  magic[0] = 'X';
  EXPECT_THAT(opener_.Open(ring_, magic, now_).status().message(), HasSubstr("magic"));
  std::string version = frame;
  version[2] = 9;
  EXPECT_THAT(opener_.Open(ring_, version, now_).status().message(), HasSubstr("version 9"));
}

TEST_F(WireTest, AReplayIsDroppedAndReorderingIsNot) {
  std::string f1 = Seal("1", ring_);
  std::string f2 = Seal("2", ring_);
  std::string f3 = Seal("3", ring_);
  ASSERT_TRUE(opener_.Open(ring_, f3, now_).ok());
  ASSERT_TRUE(opener_.Open(ring_, f1, now_).ok());  // late, not seen: fine
  auto again = opener_.Open(ring_, f1, now_).status();
  EXPECT_EQ(again.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(opener_.Open(ring_, f2, now_).ok());
  EXPECT_FALSE(opener_.Open(ring_, f3, now_).ok());
  EXPECT_EQ(opener_.replays_dropped(), 2u);
}

TEST_F(WireTest, FramesFarBehindTheWindowAreDropped) {
  std::string old = Seal("old", ring_);
  std::string newest;
  for (int i = 0; i < 300; ++i) newest = Seal("x", ring_);
  ASSERT_TRUE(opener_.Open(ring_, newest, now_).ok());
  EXPECT_FALSE(opener_.Open(ring_, old, now_).ok());
}

TEST_F(WireTest, OldAndFutureFramesAreRefusedEvenFromANewSender) {
  std::string frame = Seal("payload", ring_);
  Opener later("prod");
  auto s = later.Open(ring_, frame, now_ + absl::Seconds(61)).status();
  EXPECT_THAT(s.message(), HasSubstr("too old"));
  Opener earlier("prod");
  EXPECT_THAT(earlier.Open(ring_, frame, now_ - absl::Seconds(11)).status().message(), HasSubstr("future"));
  Opener in_time("prod");
  EXPECT_TRUE(in_time.Open(ring_, frame, now_ + absl::Seconds(59)).ok());
}

TEST_F(WireTest, AReplayAfterTheSendersWindowExpiredIsStillTooOld) {
  std::string frame = Seal("payload", ring_);
  ASSERT_TRUE(opener_.Open(ring_, frame, now_).ok());
  // The window for this salt expires after horizon + skew of silence; by
  // then the frame is past the horizon.
  EXPECT_FALSE(opener_.Open(ring_, frame, now_ + absl::Seconds(71)).ok());
}

TEST_F(WireTest, RotationSealsWithThePrimaryAndOpensWithAnyKey) {
  Keyring old_ring = Ring({kKeyA});
  Keyring both_old_primary = Ring({kKeyA, kKeyB});
  Keyring both_new_primary = Ring({kKeyB, kKeyA});
  Keyring new_ring = Ring({kKeyB});
  // Step 1: B added as secondary on the receiver; A-sealed frames still open.
  EXPECT_TRUE(opener_.Open(both_old_primary, Seal("a", old_ring), now_).ok());
  // Step 2: the sender makes B primary; a receiver still at step 1 opens it.
  std::string by_b = Seal("b", both_new_primary);
  auto opened = opener_.Open(both_old_primary, by_b, now_);
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(opened->key_id, Keyring::IdOf(*Keyring::ParseKey(kKeyB)));
  // Step 3: A removed; A-sealed frames no longer open.
  EXPECT_FALSE(opener_.Open(new_ring, Seal("late a", old_ring), now_).ok());
}

TEST(KeyringTest, KeysAreCheckedAndNamed) {
  EXPECT_THAT(Keyring::FromStrings({}).status().message(), HasSubstr("empty"));
  EXPECT_THAT(Keyring::FromStrings({"zz"}).status().message(), HasSubstr("key 1"));
  EXPECT_THAT(Keyring::FromStrings({kKeyA, "c2hvcnQ="}).status().message(), HasSubstr("32 bytes"));
  EXPECT_THAT(Keyring::FromStrings({kKeyA, kKeyA}).status().message(), HasSubstr("twice"));
  auto ring = Keyring::FromStrings({kKeyB, kKeyA});
  ASSERT_TRUE(ring.ok());
  EXPECT_TRUE(ring->keyed());
  EXPECT_EQ(ring->size(), 2u);
  EXPECT_NE(ring->ids()[0], ring->ids()[1]);
}

TEST(KeyringTest, AKeyFileListsThePrimaryFirst) {
  std::string path = ::testing::TempDir() + "/gossip.keys";
  {
    std::ofstream f(path);
    f << "# rotated 2026-11-21\n\n" << kKeyB << "\n" << kKeyA << "\n";
  }
  auto ring = Keyring::FromFile(path);
  ASSERT_TRUE(ring.ok()) << ring.status();
  EXPECT_EQ(ring->primary_id(), Keyring::IdOf(*Keyring::ParseKey(kKeyB)));
  EXPECT_EQ(ring->size(), 2u);
  std::remove(path.c_str());
  EXPECT_THAT(Keyring::FromFile(path).status().message(), HasSubstr("cannot read"));
}

TEST(KeyringTest, UnkeyedRingsDifferByClusterAndSayTheyAreUnkeyed) {
  Keyring a = Keyring::Unkeyed("prod");
  EXPECT_FALSE(a.keyed());
  EXPECT_NE(a.primary_id(), Keyring::Unkeyed("staging").primary_id());
  EXPECT_EQ(a.primary_id(), Keyring::Unkeyed("prod").primary_id());
}

}  // namespace
}  // namespace marketprism::common::gossip
