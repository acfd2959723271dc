#include "common/gossip/broadcast_queue.h"

#include <algorithm>

namespace marketprism::common::gossip {

bool BroadcastQueue::Replaces(const Key& newer, const Key& older) {
  if (newer.subject != older.subject) return false;
  if (!newer.record_key.empty() || !older.record_key.empty()) {
    return newer.record_key == older.record_key;
  }
  // Membership: a verdict (alive, dead, left) replaces everything about the
  // subject; a suspicion replaces only the same accuser's.
  if (!newer.suspicion) return true;
  return older.suspicion && older.accuser == newer.accuser;
}

void BroadcastQueue::Push(Key key, v1::GossipMessage message, int limit) {
  items_.erase(std::remove_if(items_.begin(), items_.end(),
                              [&](const Item& it) { return Replaces(key, it.key); }),
               items_.end());
  Item item;
  item.bytes = message.ByteSizeLong() + 2;
  item.key = std::move(key);
  item.message = std::move(message);
  item.limit = std::max(1, limit);
  item.order = next_order_++;
  items_.push_back(std::move(item));
}

std::vector<v1::GossipMessage> BroadcastQueue::Take(size_t budget) {
  std::vector<v1::GossipMessage> out;
  if (items_.empty()) return out;
  std::vector<size_t> idx(items_.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
    if (items_[a].transmits != items_[b].transmits) return items_[a].transmits < items_[b].transmits;
    return items_[a].order > items_[b].order;
  });
  size_t used = 0;
  bool dropped = false;
  for (size_t i : idx) {
    Item& it = items_[i];
    if (used + it.bytes > budget) continue;
    used += it.bytes;
    out.push_back(it.message);
    if (++it.transmits >= it.limit) dropped = true;
  }
  if (dropped) {
    items_.erase(std::remove_if(items_.begin(), items_.end(),
                                [](const Item& it) { return it.transmits >= it.limit; }),
                 items_.end());
  }
  return out;
}

void BroadcastQueue::Forget(uint64_t subject) {
  items_.erase(std::remove_if(items_.begin(), items_.end(),
                              [&](const Item& it) { return it.key.subject == subject; }),
               items_.end());
}

}  // namespace marketprism::common::gossip
