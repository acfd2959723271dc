#include "common/gossip/broadcast_queue.h"

#include <algorithm>

#include "google/protobuf/io/coded_stream.h"

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

size_t BroadcastQueue::FramedSize(const v1::GossipMessage& m) {
  size_t len = m.ByteSizeLong();
  return 1 + google::protobuf::io::CodedOutputStream::VarintSize64(len) + len;
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

void BroadcastQueue::Push(Key key, SharedMessage message, int limit) {
  if (auto subject = by_subject_.find(key.subject); subject != by_subject_.end()) {
    std::vector<uint64_t> replaced;
    for (uint64_t id : subject->second) {
      if (Replaces(key, items_.at(id).key)) replaced.push_back(id);
    }
    for (uint64_t id : replaced) Erase(id);
  }
  uint64_t id = next_id_++;
  Item& item = items_[id];
  item.bytes = FramedSize(*message);
  item.key = std::move(key);
  item.message = std::move(message);
  item.limit = std::max(1, limit);
  by_subject_[item.key.subject].push_back(id);
  order_.insert(RankOf(id, item));
}

std::vector<SharedMessage> BroadcastQueue::Take(size_t budget) {
  std::vector<SharedMessage> out;
  std::vector<std::pair<uint64_t, Item*>> taken;
  const uint64_t take = ++takes_;
  size_t used = 0;
  // Fills up to `cap` bytes from [from, to), least sent first; stops once
  // nearly full or after a few items that did not fit.
  auto fill = [&](std::set<Rank>::iterator from, std::set<Rank>::iterator to, size_t cap) {
    int misfits = 0;
    for (auto r = from; r != to && cap - std::min(cap, used) >= 16 && misfits < 8; ++r) {
      Item& it = *std::get<3>(*r);
      if (it.taken_by == take) continue;
      if (used + it.bytes > cap) {
        ++misfits;
        continue;
      }
      used += it.bytes;
      out.push_back(it.message);
      it.taken_by = take;
      taken.emplace_back(~std::get<2>(*r), &it);
    }
  };
  auto records = order_.lower_bound(Rank{1, 0, 0, nullptr});
  fill(order_.begin(), records, budget * 2 / 3);  // membership news
  fill(records, order_.end(), budget);            // records
  fill(order_.begin(), records, budget);          // membership again, in what is left
  for (auto [id, it] : taken) {
    if (it->transmits + 1 >= it->limit) {
      Erase(id);
      continue;
    }
    auto node = order_.extract(RankOf(id, *it));
    ++it->transmits;
    node.value() = RankOf(id, *it);
    order_.insert(std::move(node));
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
