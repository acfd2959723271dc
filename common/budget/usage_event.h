// File: common/budget/usage_event.h
//
// One request an IP sent, as a ledger needs to replay it elsewhere: what it
// cost, when it was sent and answered (exchange-clock estimates), and the
// exchange's usage header if the reply carried one. Nodes report these to
// the coordinator (requests they sent on their own, and on registering the
// rolling windows' recent sends).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "absl/time/time.h"
#include "common/rules/rules.h"

namespace marketprism::common {

struct UsageEvent {
  Cost cost;
  absl::Time sent_ex;
  absl::Time replied_ex;
  std::optional<std::pair<std::string, int64_t>> observed;  // (pool, used) from the usage header
};

// A node's estimate of one exchange's clock.
struct ExchangeClock {
  std::string exchange;
  absl::Duration offset;       // exchange clock minus node clock
  absl::Duration uncertainty;
};

// An exchange holding one IP back (429, 418, a WAF or busy reply).
struct ExchangeBan {
  std::string exchange;
  std::string kind;  // "rate_limited", "banned", "waf", "busy"
  absl::Time until;  // local clock
  int http_status = 0;
};

}  // namespace marketprism::common
