// File: common/signals.h
//
// Clean shutdown on SIGINT/SIGTERM without doing anything in a signal
// handler: block the signals at the top of main (before any thread starts,
// so every thread inherits the mask), then wait for one with sigwait.
#pragma once

namespace marketprism::common {

void BlockTerminationSignals();
// Blocks until SIGINT or SIGTERM arrives; returns the signal.
int AwaitTerminationSignal();

}  // namespace marketprism::common
