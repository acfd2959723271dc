// File: common/gossip/broadcast_queue.h
//
// The queue of gossip messages waiting to be piggybacked on outgoing packets,
// each sent a limited number of times (memberlist's TransmitLimitedQueue).
// A newer message about the same thing replaces the queued older one, so a
// member whose usage summary changes every second never has more than one of
// its summaries in flight. Membership news goes before records, which keep
// a third of each packet; least-sent messages first.
//
// Not thread-safe; owned by the gossip Core.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "marketprism/v1/gossip.pb.h"

namespace marketprism::common::gossip {

class BroadcastQueue {
 public:
  // What a message is about, for replacement. Membership messages about a
  // subject replace each other (suspicions only those of the same accuser);
  // records replace the same (owner, key).
  struct Key {
    uint64_t subject = 0;
    std::string record_key;  // empty: a membership message
    uint64_t accuser = 0;    // suspicions: who accuses
    bool suspicion = false;
  };

  // Queues `message`, to be sent at most `limit` times.
  void Push(Key key, v1::GossipMessage message, int limit);

  // Takes messages that together fit in `budget` serialized bytes (each
  // message costs its size plus two bytes of framing), in send order, and
  // counts a transmission for each; drops those at their limit.
  std::vector<v1::GossipMessage> Take(size_t budget);

  // Drops every queued message about `subject` (it was reaped).
  void Forget(uint64_t subject);

  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }

 private:
  struct Item {
    Key key;
    v1::GossipMessage message;
    size_t bytes = 0;
    int transmits = 0;
    int limit = 0;
  };
  // Send order: membership news before records, so a refutation does not
  // wait behind a thousand usage summaries (but records keep a third of each
  // packet, see Take); within each, least sent first, then newest first. An
  // item's id is its push order, so ~id sorts newest first.
  using Rank = std::tuple<int, int, uint64_t>;
  static Rank RankOf(uint64_t id, const Item& it) {
    return {it.key.record_key.empty() ? 0 : 1, it.transmits, ~id};
  }
  static bool Replaces(const Key& newer, const Key& older);
  void Erase(uint64_t id);

  absl::node_hash_map<uint64_t, Item> items_;  // by id
  std::set<Rank> order_;
  // Ids of the queued items about each subject, for replacement.
  absl::flat_hash_map<uint64_t, std::vector<uint64_t>> by_subject_;
  uint64_t next_id_ = 0;
};

}  // namespace marketprism::common::gossip
