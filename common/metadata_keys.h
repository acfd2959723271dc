// File: common/metadata_keys.h
//
// The gRPC metadata keys our services set and read, named once.
#pragma once

namespace marketprism::common {

// Trailing metadata: the coordinator's name, on every answer a coordinator
// gave (as against a broken connection, which a forwarder may retry).
inline constexpr char kAnsweredByKey[] = "mp-answered-by";
// Trailing metadata on RESOURCE_EXHAUSTED / UNAVAILABLE: when to try again.
inline constexpr char kRetryAfterMsKey[] = "retry-after-ms";

}  // namespace marketprism::common
