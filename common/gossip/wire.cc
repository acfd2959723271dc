// File: common/gossip/wire.cc
#include "common/gossip/wire.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace marketprism::common::gossip {
namespace {

constexpr uint8_t kVersion = 1;
constexpr size_t kNonceBytes = 12;

void PutBig(uint8_t* out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) {
    out[i] = static_cast<uint8_t>(v & 0xff);
    v >>= 8;
  }
}

uint64_t GetBig(const uint8_t* in, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | in[i];
  return v;
}

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

// Additional data: the header, then the cluster name.
std::string Aad(const uint8_t* header, const std::string& cluster) {
  std::string aad(reinterpret_cast<const char*>(header), kFrameHeaderBytes);
  aad += cluster;
  return aad;
}

}  // namespace

// ---- Keyring ------------------------------------------------------------------------

KeyId Keyring::IdOf(const Key& key) {
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(key.data(), key.size(), digest);
  return static_cast<KeyId>(GetBig(digest, 4));
}

Keyring Keyring::Unkeyed(absl::string_view cluster) {
  std::string seed = absl::StrCat("marketprism-gossip-unkeyed:", cluster);
  Key k;
  SHA256(reinterpret_cast<const uint8_t*>(seed.data()), seed.size(), k.data());
  Keyring r;
  r.keys_.push_back(k);
  r.keyed_ = false;
  return r;
}

absl::StatusOr<Key> Keyring::ParseKey(absl::string_view text) {
  text = absl::StripAsciiWhitespace(text);
  std::string bytes;
  if (text.size() == 64 && std::all_of(text.begin(), text.end(), [](char c) { return absl::ascii_isxdigit(c); })) {
    for (size_t i = 0; i < 64; i += 2) {
      bytes.push_back(static_cast<char>(std::stoi(std::string(text.substr(i, 2)), nullptr, 16)));
    }
  } else if (!absl::Base64Unescape(text, &bytes)) {
    return absl::InvalidArgumentError("gossip key is neither 64 hex digits nor base64");
  }
  if (bytes.size() != 32) {
    return absl::InvalidArgumentError(
        absl::StrCat("gossip key must be 32 bytes (AES-256), got ", bytes.size()));
  }
  Key k;
  std::memcpy(k.data(), bytes.data(), 32);
  return k;
}

absl::StatusOr<Keyring> Keyring::FromStrings(const std::vector<std::string>& keys) {
  if (keys.empty()) return absl::InvalidArgumentError("gossip keyring is empty");
  Keyring r;
  for (size_t i = 0; i < keys.size(); ++i) {
    absl::StatusOr<Key> k = ParseKey(keys[i]);
    if (!k.ok()) return absl::InvalidArgumentError(absl::StrCat("key ", i + 1, ": ", k.status().message()));
    for (const Key& have : r.keys_) {
      if (have == *k) return absl::InvalidArgumentError(absl::StrCat("key ", i + 1, " is listed twice"));
    }
    r.keys_.push_back(*k);
  }
  return r;
}

absl::StatusOr<Keyring> Keyring::FromFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read gossip key file ", path));
  std::vector<std::string> keys;
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view l = absl::StripAsciiWhitespace(line);
    if (l.empty() || l.front() == '#') continue;
    keys.emplace_back(l);
  }
  absl::StatusOr<Keyring> r = FromStrings(keys);
  if (!r.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", r.status().message()));
  return r;
}

const Key* Keyring::Find(KeyId id) const {
  for (const Key& k : keys_) {
    if (IdOf(k) == id) return &k;
  }
  return nullptr;
}

std::vector<KeyId> Keyring::ids() const {
  std::vector<KeyId> out;
  for (const Key& k : keys_) out.push_back(IdOf(k));
  return out;
}

// ---- Sealer ---------------------------------------------------------------------------

Sealer::Sealer(std::string cluster, uint32_t salt) : cluster_(std::move(cluster)), salt_(salt) {}

absl::StatusOr<std::string> Sealer::Seal(const Keyring& ring, FrameKind kind, absl::string_view payload,
                                         absl::Time now) {
  std::string out(kFrameHeaderBytes + payload.size() + kFrameTagBytes, '\0');
  auto* h = reinterpret_cast<uint8_t*>(out.data());
  h[0] = 'M';
  h[1] = 'G';
  h[2] = kVersion;
  h[3] = static_cast<uint8_t>(kind);
  PutBig(h + 4, ring.primary_id(), 4);
  PutBig(h + 8, salt_, 4);
  PutBig(h + 12, ++counter_, 8);
  PutBig(h + 20, static_cast<uint64_t>(absl::ToUnixMillis(now)), 8);
  std::string aad = Aad(h, cluster_);

  Ctx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  auto* ct = h + kFrameHeaderBytes;
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes, nullptr) != 1 ||
      EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, ring.primary().data(), h + 8) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const uint8_t*>(aad.data()),
                        static_cast<int>(aad.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), ct, &len, reinterpret_cast<const uint8_t*>(payload.data()),
                        static_cast<int>(payload.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), ct + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kFrameTagBytes, ct + payload.size()) != 1) {
    return absl::InternalError("AES-256-GCM sealing failed (OpenSSL)");
  }
  return out;
}

// ---- Opener ---------------------------------------------------------------------------

Opener::Opener(std::string cluster, Options options) : cluster_(std::move(cluster)), options_(options) {}

bool Opener::Fresh(Window& w, uint64_t counter) {
  constexpr uint64_t kWidth = 256;
  auto bit = [&](uint64_t back) -> bool { return (w.seen[back / 64] >> (back % 64)) & 1; };
  auto set = [&](uint64_t back) { w.seen[back / 64] |= uint64_t{1} << (back % 64); };
  if (counter > w.highest) {
    uint64_t shift = counter - w.highest;
    if (shift >= kWidth) {
      std::memset(w.seen, 0, sizeof(w.seen));
    } else {
      // Shift the bitmap by `shift` towards older.
      uint64_t next[4] = {};
      for (uint64_t back = 0; back + shift < kWidth; ++back) {
        if (bit(back)) next[(back + shift) / 64] |= uint64_t{1} << ((back + shift) % 64);
      }
      std::memcpy(w.seen, next, sizeof(next));
    }
    w.highest = counter;
    set(0);
    return true;
  }
  uint64_t back = w.highest - counter;
  if (back >= kWidth || bit(back)) return false;  // too far behind to tell, or seen
  set(back);
  return true;
}

void Opener::Expire(absl::Time now) {
  if (now < next_expiry_) return;
  next_expiry_ = now + absl::Seconds(1);
  for (auto it = windows_.begin(); it != windows_.end();) {
    if (now - it->second.last > options_.replay_horizon + options_.max_skew) {
      it = windows_.erase(it);
    } else {
      ++it;
    }
  }
}

absl::StatusOr<OpenedFrame> Opener::Open(const Keyring& ring, absl::string_view frame, absl::Time now) {
  if (frame.size() < kFrameOverhead) {
    return absl::InvalidArgumentError(absl::StrCat("gossip frame too short (", frame.size(), " bytes)"));
  }
  const auto* h = reinterpret_cast<const uint8_t*>(frame.data());
  if (h[0] != 'M' || h[1] != 'G') return absl::InvalidArgumentError("not a gossip frame (bad magic)");
  if (h[2] != kVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("gossip protocol version ", h[2], " is not ours (", kVersion, ")"));
  }
  if (h[3] > static_cast<uint8_t>(FrameKind::kStreamResponse)) {
    return absl::InvalidArgumentError(absl::StrCat("unknown gossip frame kind ", h[3]));
  }
  auto key_id = static_cast<KeyId>(GetBig(h + 4, 4));
  const Key* key = ring.Find(key_id);
  if (key == nullptr) {
    return absl::PermissionDeniedError(absl::StrFormat("gossip frame sealed with unknown key %08x", key_id));
  }
  absl::Time sent = absl::FromUnixMillis(static_cast<int64_t>(GetBig(h + 20, 8)));
  std::string aad = Aad(h, cluster_);
  size_t ct_len = frame.size() - kFrameOverhead;
  std::string payload(ct_len, '\0');
  Ctx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  const uint8_t* ct = h + kFrameHeaderBytes;
  std::array<uint8_t, kFrameTagBytes> tag;
  std::memcpy(tag.data(), ct + ct_len, kFrameTagBytes);
  bool ok = ctx && EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes, nullptr) == 1 &&
            EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, key->data(), h + 8) == 1 &&
            EVP_DecryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const uint8_t*>(aad.data()),
                              static_cast<int>(aad.size())) == 1 &&
            EVP_DecryptUpdate(ctx.get(), reinterpret_cast<uint8_t*>(payload.data()), &len, ct,
                              static_cast<int>(ct_len)) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kFrameTagBytes, tag.data()) == 1 &&
            EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<uint8_t*>(payload.data()) + len, &len) == 1;
  if (!ok) {
    return absl::UnauthenticatedError(
        "gossip frame failed authentication (another cluster name or key, or altered)");
  }
  // Only authenticated frames count towards replay state.
  Expire(now);
  if (sent < now - options_.replay_horizon) {
    ++replays_;
    return absl::FailedPreconditionError(absl::StrCat("gossip frame is too old (sent ",
                                                      absl::FormatDuration(now - sent), " ago)"));
  }
  if (sent > now + options_.max_skew) {
    return absl::FailedPreconditionError(
        absl::StrCat("gossip frame is from the future (", absl::FormatDuration(sent - now),
                     " ahead: clocks skewed?)"));
  }
  auto salt = static_cast<uint32_t>(GetBig(h + 8, 4));
  uint64_t counter = GetBig(h + 12, 8);
  Window& w = windows_[salt];
  if (!Fresh(w, counter)) {
    ++replays_;
    return absl::AlreadyExistsError("gossip frame replayed (or too far out of order)");
  }
  w.last = now;
  return OpenedFrame{static_cast<FrameKind>(h[3]), std::move(payload), key_id};
}

}  // namespace marketprism::common::gossip
