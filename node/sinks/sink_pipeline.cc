// File: node/sinks/sink_pipeline.cc
#include "node/sinks/sink_pipeline.h"

#include <algorithm>
#include <iterator>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"

#include "common/log.h"

namespace marketprism::node {

std::string RecordUnit(const v1::MarketEvent& e) {
  if (e.has_kline()) return absl::StrCat(e.exchange(), "/", e.channel(), "_", e.kline().interval(), "/", e.symbol());
  return absl::StrCat(e.exchange(), "/", e.channel(), "/", e.symbol());
}

int64_t RecordSequence(const v1::MarketEvent& e) {
  switch (e.body_case()) {
    case v1::MarketEvent::kTrade:
      return e.trade().sequence();
    case v1::MarketEvent::kBook:
      return e.book().last_update_id();
    case v1::MarketEvent::kBookTicker:
      return e.book_ticker().update_id();
    case v1::MarketEvent::kKline:
      return e.kline().open_time_us();
    case v1::MarketEvent::kPoll:
      return e.poll().slot_us();
    case v1::MarketEvent::kGap:
      return e.gap().resumed_update_id();
    default:
      return e.exchange_time_us();
  }
}

absl::StatusOr<std::unique_ptr<SinkPipeline>> SinkPipeline::Create(SinkPipelineOptions options,
                                                                    std::unique_ptr<RecordWriter> writer,
                                                                    common::Clock& clock) {
  auto spool = Spool::Open(options.spool_dir, options.spool_max_bytes);
  if (!spool.ok()) return spool.status();
  return std::unique_ptr<SinkPipeline>(
      new SinkPipeline(std::move(options), std::move(writer), clock, std::move(*spool)));
}

SinkPipeline::SinkPipeline(SinkPipelineOptions options, std::unique_ptr<RecordWriter> writer,
                           common::Clock& clock, std::unique_ptr<Spool> spool)
    : options_(std::move(options)), writer_(std::move(writer)), clock_(clock), spool_(std::move(spool)) {
  status_.name = writer_->name();
}

SinkPipeline::~SinkPipeline() { Stop(); }

void SinkPipeline::Offer(const std::vector<v1::MarketEvent>& records) {
  if (records.empty()) return;
  absl::MutexLock lock(&mu_);
  std::vector<v1::MarketEvent> out;
  out.reserve(records.size());
  std::set<std::string> gapped;  // units whose gap record is in `out`
  for (const v1::MarketEvent& r : records) {
    auto lost = lost_.empty() ? lost_.end() : lost_.find(RecordUnit(r));
    if (lost != lost_.end() && gapped.insert(lost->first).second) {
      // The unit's first record after a loss: the gap goes before it.
      const Lost& l = lost->second;
      v1::MarketEvent g;
      g.set_exchange(l.like.exchange());
      g.set_symbol(l.like.symbol());
      g.set_channel(l.like.channel());
      g.set_exchange_time_us(r.exchange_time_us());
      g.set_received_time_us(r.received_time_us());
      g.set_node_id(r.node_id());
      int64_t resumed = RecordSequence(r);
      g.set_key(absl::StrCat(lost->first, "/gap/spool/", r.node_id(), "/", l.after, "-", resumed));
      g.mutable_gap()->set_after_update_id(l.after);
      g.mutable_gap()->set_resumed_update_id(resumed);
      g.mutable_gap()->set_reason(
          absl::StrCat("spool full: ", l.count, " records dropped by the ", status_.name, " sink"));
      out.push_back(std::move(g));
    }
    out.push_back(r);
  }
  AcceptLocked(std::move(out));
  offered_ = true;
}

void SinkPipeline::AcceptLocked(std::vector<v1::MarketEvent> records) {
  bool kept = false;
  if (spool_->empty() && memory_.size() + records.size() <= options_.memory_records) {
    kept = true;
  } else {
    absl::Status spooled = spool_->Append(records);
    kept = spooled.ok();
    if (!kept && status_.last_error != spooled.message()) {
      common::Log(common::LogLevel::kWarning, "sink", absl::StrCat(status_.name, " sink: ", spooled.message(), ": records are dropped, ",
                                      "each unit's loss is a gap record"));
      status_.last_error = std::string(spooled.message());
    }
  }
  for (const v1::MarketEvent& r : records) {
    std::string unit = RecordUnit(r);
    if (kept) {
      if (r.has_gap() && r.gap().reason().starts_with("spool full")) {
        lost_.erase(unit);
        continue;
      }
      last_kept_[unit] = RecordSequence(r);
      continue;
    }
    if (r.has_gap() && r.gap().reason().starts_with("spool full")) continue;  // made again next time
    auto [it, fresh] = lost_.try_emplace(unit);
    if (fresh) {
      auto last = last_kept_.find(unit);
      it->second.after = last == last_kept_.end() ? 0 : last->second;
      it->second.like = r;
      it->second.like.clear_body();
    }
    ++it->second.count;
    ++status_.dropped_total;
  }
  if (kept && spool_->empty()) {
    for (v1::MarketEvent& r : records) memory_.push_back(std::move(r));
  }
}

absl::Duration SinkPipeline::RunOnce() {
  absl::MutexLock write_lock(&write_mu_);
  std::vector<v1::MarketEvent> batch;
  bool from_memory = false;
  absl::Time now;
  {
    absl::MutexLock lock(&mu_);
    now = clock_.SteadyNow();
    if (now < retry_at_) return retry_at_ - now;
    if (!memory_.empty()) {
      if (memory_.size() < options_.batch_records && now < last_write_ + options_.linger) {
        return last_write_ + options_.linger - now;
      }
      size_t n = std::min(memory_.size(), options_.batch_records);
      batch.assign(std::make_move_iterator(memory_.begin()), std::make_move_iterator(memory_.begin() + n));
      memory_.erase(memory_.begin(), memory_.begin() + n);
      from_memory = true;
    } else if (!spool_->empty()) {
      batch = spool_->Peek(options_.batch_records);
      if (batch.empty()) return absl::InfiniteDuration();  // what is left does not read
    } else {
      return absl::InfiniteDuration();
    }
  }
  absl::Status written = writer_->Write(batch);
  absl::MutexLock lock(&mu_);
  last_write_ = now;
  if (written.ok()) {
    if (!from_memory) spool_->Pop(batch.size());
    status_.written_total += static_cast<int64_t>(batch.size());
    if (!status_.healthy) common::Log(common::LogLevel::kInfo, "sink", absl::StrCat(status_.name, " sink: writing again"));
    status_.healthy = true;
    backoff_ = absl::ZeroDuration();
    return memory_.empty() && spool_->empty() ? absl::InfiniteDuration() : absl::ZeroDuration();
  }
  if (from_memory) {
    memory_.insert(memory_.begin(), std::make_move_iterator(batch.begin()), std::make_move_iterator(batch.end()));
  }
  ++status_.failures_total;
  if (status_.healthy || status_.last_error != written.message()) {
    common::Log(common::LogLevel::kWarning, "sink", absl::StrCat(status_.name, " sink: ", written.message(), "; records wait (",
                                    memory_.size(), " queued, ", spool_->records(), " spooled)"));
  }
  status_.healthy = false;
  status_.last_error = std::string(written.message());
  backoff_ = backoff_ == absl::ZeroDuration() ? options_.retry_min : std::min(backoff_ * 2, options_.retry_max);
  retry_at_ = now + backoff_;
  return backoff_;
}

SinkStatus SinkPipeline::Status() {
  absl::MutexLock lock(&mu_);
  SinkStatus s = status_;
  s.queued = static_cast<int64_t>(memory_.size());
  s.spool_records = spool_->records();
  s.spool_bytes = spool_->bytes();
  int64_t oldest = spool_->oldest_received_us();
  s.spool_age = oldest == 0 ? absl::ZeroDuration()
                            : std::max(absl::ZeroDuration(), clock_.Now() - absl::FromUnixMicros(oldest));
  return s;
}

void SinkPipeline::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void SinkPipeline::Loop() {
  while (true) {
    absl::Duration wait = RunOnce();
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    if (wait == absl::InfiniteDuration()) {
      mu_.Await(absl::Condition(+[](SinkPipeline* p) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return p->offered_ || p->stopping_;
      }, this));
    } else if (wait > absl::ZeroDuration()) {
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), wait);
    }
    offered_ = false;
  }
}

void SinkPipeline::Stop(absl::Duration drain) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  // What memory holds goes out now if the destination takes it, else to the
  // spool for the next run (after what the spool holds already: a sink that
  // was down at shutdown may see those records out of order, never lose them).
  absl::Time deadline = absl::Now() + drain;
  while (absl::Now() < deadline) {
    {
      absl::MutexLock lock(&mu_);
      if (memory_.empty() || !status_.healthy) break;
      last_write_ = absl::InfinitePast();  // no lingering now
    }
    RunOnce();
  }
  absl::MutexLock lock(&mu_);
  if (!memory_.empty()) {
    std::vector<v1::MarketEvent> left(std::make_move_iterator(memory_.begin()), std::make_move_iterator(memory_.end()));
    memory_.clear();
    absl::Status spooled = spool_->Append(left);
    if (!spooled.ok()) {
      common::Log(common::LogLevel::kError, "sink", absl::StrCat(status_.name, " sink: ", left.size(), " records lost at shutdown: ",
                                    spooled.message()));
    }
  }
  writer_->Close();
}

}  // namespace marketprism::node
