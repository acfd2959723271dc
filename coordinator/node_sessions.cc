#include "coordinator/node_sessions.h"

#include <deque>

#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "common/flags.h"

namespace marketprism::coordinator {

// One node's session. Reads run one at a time on gRPC threads; writes are
// queued (mu_) and go out one at a time; Finish waits for the queue.
class NodeSessions::Reactor final : public grpc::ServerBidiReactor<v1::NodeMessage, v1::CoordinatorMessage> {
 public:
  Reactor(NodeSessions& owner, grpc::CallbackServerContext* ctx) : owner_(owner), ctx_(ctx) {
    StartRead(&in_);
  }

  void Send(const v1::CoordinatorMessage& m) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (finishing_) return;
    out_.push_back(m);
    if (!writing_) {
      writing_ = true;
      StartWrite(&out_.front());
    }
  }

  void Cancel() { ctx_->TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      End(grpc::Status::OK);
      return;
    }
    if (node_id_.empty()) {
      First();
      return;
    }
    if (in_.has_report() && owner_.hooks_.on_report) owner_.hooks_.on_report(node_id_, in_.report());
    if (in_.has_records() && owner_.hooks_.on_records) owner_.hooks_.on_records(node_id_, in_.records());
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    out_.pop_front();
    if (ok && !out_.empty()) {
      StartWrite(&out_.front());
      return;
    }
    writing_ = false;
    if (!ok) {
      out_.clear();
      finishing_ = true;
      status_ = grpc::Status::OK;  // the node went away
    }
    if (finishing_ && !finished_) {
      finished_ = true;
      Finish(status_);
    }
  }

  void OnDone() override {
    owner_.Done(this, node_id_);
    delete this;
  }

 private:
  void First() {
    if (!in_.has_register_()) {
      End(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the first message must be register"));
      return;
    }
    const v1::Register& r = in_.register_();
    std::string problem = Invalid(r);
    if (!problem.empty()) {
      v1::CoordinatorMessage no;
      no.mutable_registered()->set_accepted(false);
      no.mutable_registered()->set_reason(problem);
      Send(no);
      End(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, problem));
      return;
    }
    Leadership l = owner_.hooks_.admit(r.highest_term());
    if (!l.leading) {
      v1::CoordinatorMessage no;
      v1::Registered* reg = no.mutable_registered();
      reg->set_accepted(false);
      reg->set_term(l.term);
      reg->set_coordinator_id(l.leader);
      reg->set_leader_address(l.leader_grpc);
      std::string why = l.leader.empty()
                            ? absl::StrCat(owner_.name_, " does not lead and knows no leader yet")
                            : absl::StrCat(owner_.name_, " does not lead; the leader is ", l.leader, " at ",
                                           l.leader_grpc, " (term ", l.term, ")");
      reg->set_reason(why);
      Send(no);
      End(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, why));
      return;
    }
    v1::CoordinatorMessage welcome;
    *welcome.mutable_registered() = owner_.hooks_.on_register(r);
    Send(welcome);  // the first message the node reads, before any lease or limit
    node_id_ = r.node_id();
    owner_.Registered(this, node_id_);
    if (owner_.hooks_.after_register) owner_.hooks_.after_register(node_id_);
    StartRead(&in_);
  }

  void End(grpc::Status status) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (finishing_) return;
    finishing_ = true;
    status_ = std::move(status);
    if (!writing_ && !finished_) {
      finished_ = true;
      Finish(status_);
    }
  }

  NodeSessions& owner_;
  grpc::CallbackServerContext* const ctx_;
  v1::NodeMessage in_;       // the read path's own
  std::string node_id_;      // set once registered; the read path's own until then
  absl::Mutex mu_;
  std::deque<v1::CoordinatorMessage> out_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

NodeSessions::NodeSessions(std::string name, Hooks hooks) : name_(std::move(name)), hooks_(std::move(hooks)) {}

NodeSessions::~NodeSessions() = default;

grpc::ServerBidiReactor<v1::NodeMessage, v1::CoordinatorMessage>* NodeSessions::Session(
    grpc::CallbackServerContext* ctx) {
  auto* r = new Reactor(*this, ctx);
  absl::MutexLock lock(&mu_);
  all_.insert(r);
  return r;
}

std::string NodeSessions::Invalid(const v1::Register& r) {
  if (r.node_id().empty()) return "register.node_id: required";
  if (!common::IsIpLiteral(r.egress_ip())) {
    return absl::StrCat("register.egress_ip: \"", r.egress_ip(), "\" is not an IP address");
  }
  if (!common::ParseHostPort(r.grpc_address(), "register.grpc_address").ok()) {
    return absl::StrCat("register.grpc_address: \"", r.grpc_address(), "\" is not ADDR:PORT");
  }
  return "";
}

void NodeSessions::Registered(Reactor* r, const std::string& node_id) {
  Reactor* old = nullptr;
  absl::MutexLock lock(&mu_);
  auto it = current_.find(node_id);
  if (it != current_.end()) old = it->second;
  current_[node_id] = r;
  if (old != nullptr && old != r) old->Cancel();  // a node that reconnected: its old session is over
}

void NodeSessions::Done(Reactor* r, const std::string& node_id) {
  bool was_current = false;
  {
    absl::MutexLock lock(&mu_);
    all_.erase(r);
    auto it = current_.find(node_id);
    if (!node_id.empty() && it != current_.end() && it->second == r) {
      current_.erase(it);
      was_current = true;
    }
  }
  if (was_current && hooks_.on_end) hooks_.on_end(node_id);
}

bool NodeSessions::Send(const std::string& node_id, const v1::CoordinatorMessage& m) {
  absl::MutexLock lock(&mu_);
  auto it = current_.find(node_id);
  if (it == current_.end()) return false;
  it->second->Send(m);
  return true;
}

void NodeSessions::SendAll(const v1::CoordinatorMessage& m) {
  absl::MutexLock lock(&mu_);
  for (auto& [id, r] : current_) r->Send(m);
}

void NodeSessions::End(const std::string& node_id) {
  absl::MutexLock lock(&mu_);
  auto it = current_.find(node_id);
  if (it != current_.end()) it->second->Cancel();
}

void NodeSessions::EndAll() {
  absl::MutexLock lock(&mu_);
  for (Reactor* r : all_) r->Cancel();
}

std::set<std::string> NodeSessions::Connected() {
  absl::MutexLock lock(&mu_);
  std::set<std::string> out;
  for (const auto& [id, r] : current_) out.insert(id);
  return out;
}

}  // namespace marketprism::coordinator
