// File: tests/testing/wait.h
//
// Waiting for a condition instead of sleeping a fixed time: an integration
// test that waits for something to happen (a member to be seen, a file to be
// re-read, a slot to be freed) polls for it, so it goes on as soon as it has
// happened and still fails, after `timeout`, when it never does.
#pragma once

#include <functional>

#include "absl/time/time.h"

namespace marketprism::testing {

// Calls `cond` every `poll` until it returns true or `timeout` has passed;
// returns whether it held. `cond` is asked once more at the deadline, so a
// condition that came true during the last poll is not missed. Runs `cond` on
// the calling thread; it must not block for long.
bool WaitUntil(const std::function<bool()>& cond, absl::Duration timeout,
               absl::Duration poll = absl::Milliseconds(20));

}  // namespace marketprism::testing
