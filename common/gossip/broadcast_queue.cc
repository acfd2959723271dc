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

void BroadcastQueue::Erase(uint64_t id) {
  auto it = items_.find(id);
  if (it == items_.end()) return;
  order_.erase(RankOf(id, it->second));
  auto subject = by_subject_.find(it->second.key.subject);
  if (subject != by_subject_.end()) {
    std::vector<uint64_t>& ids = subject->second;
    ids.erase(std::remove(ids.begin(), ids.end(), id), ids.end());
    if (ids.empty()) by_subject_.erase(subject);
  }
  items_.erase(it);
}

void BroadcastQueue::Push(Key key, v1::GossipMessage message, int limit) {
  if (auto subject = by_subject_.find(key.subject); subject != by_subject_.end()) {
    std::vector<uint64_t> replaced;
    for (uint64_t id : subject->second) {
      if (Replaces(key, items_.at(id).key)) replaced.push_back(id);
    }
    for (uint64_t id : replaced) Erase(id);
  }
  uint64_t id = next_id_++;
  Item item;
  item.bytes = message.ByteSizeLong() + 2;
  item.key = std::move(key);
  item.message = std::move(message);
  item.limit = std::max(1, limit);
  by_subject_[item.key.subject].push_back(id);
  order_.insert(RankOf(id, item));
  items_.emplace(id, std::move(item));
}

std::vector<v1::GossipMessage> BroadcastQueue::Take(size_t budget) {
  std::vector<v1::GossipMessage> out;
  std::vector<uint64_t> taken;
  size_t used = 0;
  // Fills up to `cap` bytes from [from, to), least sent first; stops once
  // nearly full or after a few items that did not fit.
  auto fill = [&](std::set<Rank>::iterator from, std::set<Rank>::iterator to, size_t cap) {
    int misfits = 0;
    for (auto r = from; r != to && cap - std::min(cap, used) >= 16 && misfits < 8; ++r) {
      uint64_t id = ~std::get<2>(*r);
      if (std::find(taken.begin(), taken.end(), id) != taken.end()) continue;
      const Item& it = items_.at(id);
      if (used + it.bytes > cap) {
        ++misfits;
        continue;
      }
      used += it.bytes;
      out.push_back(it.message);
      taken.push_back(id);
    }
  };
  auto records = order_.lower_bound(Rank{1, 0, 0});
  fill(order_.begin(), records, budget * 2 / 3);  // membership news
  fill(records, order_.end(), budget);            // records
  fill(order_.begin(), records, budget);          // membership again, in what is left
  for (uint64_t id : taken) {
    Item& it = items_.at(id);
    if (it.transmits + 1 >= it.limit) {
      Erase(id);
      continue;
    }
    order_.erase(RankOf(id, it));
    ++it.transmits;
    order_.insert(RankOf(id, it));
  }
  return out;
}

void BroadcastQueue::Forget(uint64_t subject) {
  auto it = by_subject_.find(subject);
  if (it == by_subject_.end()) return;
  std::vector<uint64_t> ids = it->second;
  for (uint64_t id : ids) Erase(id);
}

}  // namespace marketprism::common::gossip
