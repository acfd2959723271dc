// File: common/retry_after.h
//
// When to try again, carried on an absl::Status as a payload: the scheduler
// attaches it to kResourceExhausted (no budget before the deadline), the
// front door to kUnavailable (no leader yet), and gRPC carries it across as
// the trailing metadata kRetryAfterMsKey (metadata_keys.h).
#pragma once

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace marketprism::common {

inline constexpr char kRetryAfterPayload[] = "type.marketprism.dev/retry-after-ms";

// The retry-after `status` carries, if any.
inline std::optional<absl::Duration> RetryAfterOf(const absl::Status& status) {
  auto payload = status.GetPayload(kRetryAfterPayload);
  int64_t ms = 0;
  if (!payload || !absl::SimpleAtoi(std::string(*payload), &ms)) return std::nullopt;
  return absl::Milliseconds(ms);
}

// `status` with `retry` attached (RetryAfterOf reads it back).
inline absl::Status WithRetryAfter(absl::Status status, absl::Duration retry) {
  status.SetPayload(kRetryAfterPayload,
                    absl::Cord(absl::StrCat(absl::ToInt64Milliseconds(absl::Ceil(retry, absl::Milliseconds(1))))));
  return status;
}

}  // namespace marketprism::common
