// File: common/status_macros.h
//
// Early-return helpers for absl::Status / absl::StatusOr, shaped like the
// RETURN_IF_ERROR / ASSIGN_OR_RETURN that newer Abseil releases ship, so they
// can give way to Abseil's once Debian's Abseil has them.
#pragma once

#include <cstdio>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define MP_RETURN_IF_ERROR(expr)                  \
  do {                                            \
    ::absl::Status mp_status_ = (expr);           \
    if (!mp_status_.ok()) return mp_status_;      \
  } while (0)

#define MP_STATUS_CONCAT_INNER(a, b) a##b
#define MP_STATUS_CONCAT(a, b) MP_STATUS_CONCAT_INNER(a, b)

// MP_ASSIGN_OR_RETURN(auto x, Foo()); declares/assigns x or returns the error.
#define MP_ASSIGN_OR_RETURN(lhs, expr) \
  MP_ASSIGN_OR_RETURN_IMPL(MP_STATUS_CONCAT(mp_statusor_, __LINE__), lhs, expr)
#define MP_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()

// Invariant check: a failure means a bug in this program, so it aborts.
#define MP_CHECK(cond)                                                          \
  do {                                                                          \
    if (!(cond)) {                                                              \
      std::fprintf(stderr, "%s:%d: MP_CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                             \
    }                                                                           \
  } while (0)
