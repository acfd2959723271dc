// File: common/gossip/wire.h
//
// The sealed frame every gossip datagram and stream message travels in.
//
//   offset size
//   0      2    magic "MG"
//   2      1    protocol version (1)
//   3      1    kind: 0 datagram (GossipPacket), 1 stream request, 2 stream response
//   4      4    key id: the first 4 bytes of SHA-256 of the key that sealed it
//   8      12   nonce: 4-byte sender salt (random per process) + 8-byte counter
//   20     8    send time, Unix milliseconds (big-endian)
//   28     ...  AES-256-GCM ciphertext of the protobuf payload
//   end-16 16   GCM tag
//
// The header and the cluster name are authenticated (GCM additional data):
// a frame from another cluster, another protocol version, or with any bit
// changed does not open. Replays are dropped: a frame older than the replay
// horizon (or further in the future than the allowed skew) is refused, and
// within it each sender salt's counters are tracked in a sliding window.
//
// Keys come from a Keyring: the primary seals, every key (primary and
// secondaries) opens. Rotation while running: add the new key as a
// secondary everywhere, make it primary everywhere, remove the old one.
// Without a configured key the ring holds one derived from the cluster name
// — authenticated against accidents, not against anyone who knows the name —
// and the agent says so loudly at start.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace marketprism::common::gossip {

inline constexpr size_t kFrameHeaderBytes = 28;
inline constexpr size_t kFrameTagBytes = 16;
inline constexpr size_t kFrameOverhead = kFrameHeaderBytes + kFrameTagBytes;
// The largest datagram sent (frame included).
inline constexpr size_t kMaxDatagramBytes = 1200;
inline constexpr size_t kMaxDatagramPayload = kMaxDatagramBytes - kFrameOverhead;

enum class FrameKind : uint8_t { kDatagram = 0, kStreamRequest = 1, kStreamResponse = 2 };

using Key = std::array<uint8_t, 32>;
using KeyId = uint32_t;

class Keyring {
 public:
  // A ring with one key derived from the cluster name (no key configured).
  static Keyring Unkeyed(absl::string_view cluster);
  // Keys as 64 hex digits or 44 base64 characters (32 bytes), primary first.
  static absl::StatusOr<Keyring> FromStrings(const std::vector<std::string>& keys);
  // A key file: one key per line, the primary first; blank lines and
  // `#` comments ignored.
  static absl::StatusOr<Keyring> FromFile(const std::string& path);
  static absl::StatusOr<Key> ParseKey(absl::string_view text);
  static KeyId IdOf(const Key& key);

  bool keyed() const { return keyed_; }
  const Key& primary() const { return keys_.front(); }
  KeyId primary_id() const { return IdOf(keys_.front()); }
  const Key* Find(KeyId id) const;
  size_t size() const { return keys_.size(); }
  std::vector<KeyId> ids() const;

 private:
  std::vector<Key> keys_;
  bool keyed_ = true;
};

// Seals frames under a ring's primary key. One per process (its salt and
// counter make every nonce unique); not thread-safe.
class Sealer {
 public:
  // `salt`: random per process.
  Sealer(std::string cluster, uint32_t salt);
  absl::StatusOr<std::string> Seal(const Keyring& ring, FrameKind kind, absl::string_view payload,
                                   absl::Time now);

 private:
  std::string cluster_;
  uint32_t salt_;
  uint64_t counter_ = 0;
};

struct OpenedFrame {
  FrameKind kind;
  std::string payload;
  KeyId key_id;
};

// Opens frames and drops replays. Not thread-safe.
class Opener {
 public:
  struct Options {
    absl::Duration replay_horizon = absl::Seconds(60);  // older frames are refused
    absl::Duration max_skew = absl::Seconds(10);        // frames from further ahead too
  };
  explicit Opener(std::string cluster) : Opener(std::move(cluster), Options()) {}
  Opener(std::string cluster, Options options);
  // Errors name the problem: not a frame, wrong version, unknown key id,
  // failed authentication (wrong cluster or key, altered), too old, replay.
  absl::StatusOr<OpenedFrame> Open(const Keyring& ring, absl::string_view frame, absl::Time now);

  uint64_t replays_dropped() const { return replays_; }

 private:
  struct Window {
    uint64_t highest = 0;     // highest counter accepted
    uint64_t seen[4] = {};    // bit i: highest - i accepted (256 frames)
    absl::Time last;          // last accepted frame from this salt
  };
  bool Fresh(Window& w, uint64_t counter);
  void Expire(absl::Time now);

  std::string cluster_;
  Options options_;
  std::map<uint32_t, Window> windows_;
  absl::Time next_expiry_ = absl::InfinitePast();
  uint64_t replays_ = 0;
};

}  // namespace marketprism::common::gossip
