// File: common/timer_queue.h
//
// The bookkeeping behind a Clock's timers (RealClock's thread, FakeClock's
// AdvanceBy): callbacks by due time, cancellable by id. Not thread-safe; the
// clock serialises.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <utility>

#include "absl/time/time.h"

namespace marketprism::common {

class TimerQueue {
 public:
  using Id = uint64_t;

  Id Add(absl::Time at, std::function<void()> fn) {
    Id id = ++next_id_;
    due_.emplace(std::make_pair(at, id), std::move(fn));
    ids_[id] = at;
    return id;
  }

  // True if it was pending.
  bool Cancel(Id id) {
    auto it = ids_.find(id);
    if (it == ids_.end()) return false;
    due_.erase(std::make_pair(it->second, id));
    ids_.erase(it);
    return true;
  }

  // The earliest due time; InfiniteFuture when empty.
  absl::Time next() const { return due_.empty() ? absl::InfiniteFuture() : due_.begin()->first.first; }
  bool empty() const { return due_.empty(); }
  size_t size() const { return due_.size(); }

  // Removes and returns the earliest callback if it is due by `now`.
  std::optional<std::pair<absl::Time, std::function<void()>>> PopDue(absl::Time now) {
    if (due_.empty() || due_.begin()->first.first > now) return std::nullopt;
    auto it = due_.begin();
    std::pair<absl::Time, std::function<void()>> out(it->first.first, std::move(it->second));
    ids_.erase(it->first.second);
    due_.erase(it);
    return out;
  }

 private:
  Id next_id_ = 0;
  std::map<std::pair<absl::Time, Id>, std::function<void()>> due_;
  std::map<Id, absl::Time> ids_;
};

}  // namespace marketprism::common
