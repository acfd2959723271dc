#include "tests/testing/ws_probe.h"

namespace marketprism::testing {

absl::StatusOr<std::unique_ptr<WsProbe>> WsProbe::Connect(common::WsClient& client,
                                                          const std::string& url,
                                                          const std::string& source_ip,
                                                          const std::string& proxy) {
  auto probe = std::unique_ptr<WsProbe>(new WsProbe());
  auto state = std::make_shared<State>();
  probe->state_ = state;
  common::WsCallbacks cb;
  // The callbacks hold the state, not the probe: they may outlive it.
  cb.on_open = [state] {
    absl::MutexLock lock(&state->mu);
    state->open = true;
  };
  cb.on_text = [state](std::string text) {
    absl::MutexLock lock(&state->mu);
    state->messages.push_back(std::move(text));
  };
  cb.on_closed = [state](int code, std::string reason) {
    absl::MutexLock lock(&state->mu);
    state->closed = true;
    state->close_code = code;
    state->close_reason = std::move(reason);
  };
  auto conn = client.Connect({url, source_ip, proxy}, std::move(cb));
  if (!conn.ok()) return conn.status();
  probe->conn_ = std::move(*conn);
  return probe;
}

WsProbe::~WsProbe() {
  if (conn_) conn_->Close();
}

bool WsProbe::WaitOpen(absl::Duration timeout) {
  absl::MutexLock lock(&state_->mu);
  State* s = state_.get();
  state_->mu.AwaitWithTimeout(
      absl::Condition(+[](State* st) ABSL_NO_THREAD_SAFETY_ANALYSIS { return st->open || st->closed; }, s),
      timeout);
  return state_->open;
}

bool WsProbe::WaitMessages(size_t n, absl::Duration timeout) {
  absl::MutexLock lock(&state_->mu);
  struct Arg {
    State* s;
    size_t n;
  } arg{state_.get(), n};
  return state_->mu.AwaitWithTimeout(
      absl::Condition(+[](Arg* a) ABSL_NO_THREAD_SAFETY_ANALYSIS { return a->s->messages.size() >= a->n; },
                      &arg),
      timeout);
}

std::optional<int> WsProbe::WaitClosed(absl::Duration timeout) {
  absl::MutexLock lock(&state_->mu);
  State* s = state_.get();
  if (!state_->mu.AwaitWithTimeout(
          absl::Condition(+[](State* st) ABSL_NO_THREAD_SAFETY_ANALYSIS { return st->closed; }, s),
          timeout)) {
    return std::nullopt;
  }
  return state_->close_code;
}

std::vector<std::string> WsProbe::Messages() {
  absl::MutexLock lock(&state_->mu);
  return state_->messages;
}

bool WsProbe::closed() {
  absl::MutexLock lock(&state_->mu);
  return state_->closed;
}

std::string WsProbe::close_reason() {
  absl::MutexLock lock(&state_->mu);
  return state_->close_reason;
}

}  // namespace marketprism::testing
