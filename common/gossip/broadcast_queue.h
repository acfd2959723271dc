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
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "marketprism/v1/gossip.pb.h"

namespace marketprism::common::gossip {

// Messages are immutable once queued and shared, not copied, between the
// queue, the packets that carry them and (in a simulation) the members that
// receive them: a record received is queued again as the very same message.
using SharedMessage = std::shared_ptr<const v1::GossipMessage>;

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
  void Push(Key key, SharedMessage message, int limit);
  void Push(Key key, v1::GossipMessage message, int limit) {
    Push(std::move(key), std::make_shared<const v1::GossipMessage>(std::move(message)), limit);
  }

  // Takes messages that together fit in `budget` serialized bytes, in send
  // order, and counts a transmission for each; drops those at their limit.
  // A message costs its size plus its framing in the packet (a tag byte and
  // its length as a varint).
  std::vector<SharedMessage> Take(size_t budget);

  // Drops every queued message about `subject` (it was reaped).
  void Forget(uint64_t subject);

  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }

 private:
  struct Item {
    Key key;
    SharedMessage message;
    size_t bytes = 0;
    int transmits = 0;
    int limit = 0;
    uint64_t taken_by = 0;  // the Take call that last took it
  };
  // Send order: membership news before records, so a refutation does not
  // wait behind a thousand usage summaries (but records keep a third of each
  // packet, see Take); within each, least sent first, then newest first. An
  // item's id is its push order, so ~id sorts newest first (and ids are
  // unique: the item's address, last, never decides the order).
  using Rank = std::tuple<int, int, uint64_t, Item*>;
  static Rank RankOf(uint64_t id, Item& it) {
    return {it.key.record_key.empty() ? 0 : 1, it.transmits, ~id, &it};
  }
  static bool Replaces(const Key& newer, const Key& older);
  static size_t FramedSize(const v1::GossipMessage& m);
  void Erase(uint64_t id);

  absl::node_hash_map<uint64_t, Item> items_;  // by id
  std::set<Rank> order_;
  // Ids of the queued items about each subject, for replacement.
  absl::flat_hash_map<uint64_t, std::vector<uint64_t>> by_subject_;
  uint64_t next_id_ = 0;
  uint64_t takes_ = 0;
};

}  // namespace marketprism::common::gossip
