#include "tests/bench/workload.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/net/curl_http_client.h"

namespace marketprism::bench {

const std::vector<MixItem>& BinanceMix() {
  static const auto* mix = new std::vector<MixItem>{
      {"binance_spot", "/api/v3/ping", {}, 1, 0.20},
      {"binance_spot", "/api/v3/avgPrice", {{"symbol", "ETHUSDT"}}, 2, 0.15},
      {"binance_spot", "/api/v3/klines", {{"symbol", "BTCUSDT"}, {"interval", "1m"}, {"limit", "60"}}, 2, 0.20},
      {"binance_spot", "/api/v3/ticker/24hr", {{"symbol", "BNBUSDT"}}, 2, 0.15},
      {"binance_spot", "/api/v3/depth", {{"symbol", "BTCUSDT"}, {"limit", "100"}}, 5, 0.20},
      {"binance_spot", "/api/v3/depth", {{"symbol", "ETHUSDT"}, {"limit", "500"}}, 25, 0.05},
      {"binance_spot", "/api/v3/trades", {{"symbol", "SOLUSDT"}, {"limit", "100"}}, 25, 0.05},
  };
  return *mix;
}

const std::vector<MixItem>& OkxMix() {
  static const auto* mix = new std::vector<MixItem>{
      {"okx", "/api/v5/market/books", {{"instId", "BTC-USDT"}, {"sz", "20"}}, 1, 0.4},
      {"okx", "/api/v5/market/ticker", {{"instId", "ETH-USDT"}}, 1, 0.3},
      {"okx", "/api/v5/market/candles", {{"instId", "BTC-USDT-SWAP"}, {"bar", "1m"}}, 1, 0.3},
  };
  return *mix;
}

const std::vector<MixItem>& DeribitMix() {
  static const auto* mix = new std::vector<MixItem>{
      {"deribit", "/api/v2/public/ticker", {{"instrument_name", "BTC-PERPETUAL"}}, 1, 0.5},
      {"deribit", "/api/v2/public/get_order_book", {{"instrument_name", "ETH-PERPETUAL"}, {"depth", "20"}}, 1, 0.5},
  };
  return *mix;
}

const MixItem& Pick(const std::vector<MixItem>& mix, std::mt19937_64& rng) {
  double total = 0;
  for (const MixItem& m : mix) total += m.share;
  double x = std::uniform_real_distribution<double>(0, total)(rng);
  for (const MixItem& m : mix) {
    if (x < m.share) return m;
    x -= m.share;
  }
  return mix.back();
}

// ---- through the cluster --------------------------------------------------------

ClusterDriver::ClusterDriver(const std::string& coordinator, Demand demand, absl::Duration deadline,
                             uint64_t seed, int priority)
    : stub_(v1::Coordinator::NewStub(grpc::CreateChannel(coordinator, grpc::InsecureChannelCredentials()))),
      demand_(demand),
      deadline_(deadline),
      rng_(seed),
      priority_(priority) {}

void ClusterDriver::Issue(const MixItem& item) {
  struct Call {
    grpc::ClientContext ctx;
    v1::ExecuteRequest req;
    v1::ExecuteResponse resp;
    absl::Time issued;
    int64_t weight;
  };
  auto* c = new Call;
  c->issued = absl::Now();
  c->weight = item.weight;
  c->ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(deadline_));
  c->req.set_exchange(item.exchange);
  c->req.set_method("GET");
  c->req.set_path(item.path);
  c->req.set_priority(priority_);
  for (const auto& [k, v] : item.query) {
    v1::QueryParam* q = c->req.add_query();
    q->set_key(k);
    q->set_value(v);
  }
  ++stats_.sent;
  ++stats_.in_flight;
  stub_->async()->Execute(&c->ctx, &c->req, &c->resp, [this, c](grpc::Status s) {
    if (s.ok()) {
      ++stats_.ok;
      absl::MutexLock lock(&stats_.mu);
      ++stats_.http[c->resp.http_status()];
      if (record_) {
        answers_.push_back(Answer{c->issued, absl::Now(), c->resp.egress_ip(), c->weight, c->resp.queued_us(),
                                  c->resp.attempts(), c->resp.http_status()});
      }
    } else if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED ||
               s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      ++stats_.exhausted;
    } else {
      ++stats_.other_errors;
    }
    --stats_.in_flight;
    delete c;
  });
}

std::vector<Answer> ClusterDriver::TakeAnswers() {
  absl::MutexLock lock(&stats_.mu);
  return std::move(answers_);
}

void ClusterDriver::Run(absl::Time until) {
  struct Stream {
    const std::vector<MixItem>* mix;
    double rate;  // units per second
    bool by_weight;
    absl::Time next;
  };
  absl::Time now = absl::Now();
  std::vector<Stream> streams;
  if (demand_.binance_weight_per_second > 0) streams.push_back({&BinanceMix(), demand_.binance_weight_per_second, true, now});
  if (demand_.okx_per_second > 0) streams.push_back({&OkxMix(), demand_.okx_per_second, false, now});
  if (demand_.deribit_per_second > 0) streams.push_back({&DeribitMix(), demand_.deribit_per_second, false, now});
  while ((now = absl::Now()) < until) {
    absl::Time wake = until;
    for (Stream& s : streams) {
      while (s.next <= now) {
        const MixItem& item = Pick(*s.mix, rng_);
        Issue(item);
        s.next += absl::Seconds((s.by_weight ? static_cast<double>(item.weight) : 1.0) / s.rate);
      }
      wake = std::min(wake, s.next);
    }
    absl::SleepFor(std::min(wake - absl::Now(), absl::Milliseconds(20)));
  }
  absl::Time give_up = absl::Now() + deadline_ + absl::Seconds(2);
  while (stats_.in_flight.load() > 0 && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(10));
}

// ---- the baseline: static shares, a token bucket per IP ---------------------

BaselineDriver::BaselineDriver(const std::string& sim_url, std::vector<std::string> ips,
                               Demand demand, int64_t limit_per_minute, absl::Duration deadline,
                               uint64_t seed, std::vector<double> shares)
    : sim_url_(sim_url),
      ips_(std::move(ips)),
      shares_(std::move(shares)),
      demand_(demand),
      limit_per_minute_(limit_per_minute),
      deadline_(deadline),
      seed_(seed) {}

void BaselineDriver::Run(absl::Time until) {
  std::vector<std::thread> threads;
  if (shares_.empty()) shares_.assign(ips_.size(), 1.0 / static_cast<double>(ips_.size()));
  for (size_t i = 0; i < ips_.size(); ++i) {
    threads.emplace_back([this, i, until] {
      common::CurlHttpClient http(common::CurlHttpOptions{.source_ip = ips_[i]});
      std::mt19937_64 rng(seed_ * 1000 + i);
      // Its static share of the demand, throttled to its IP's limit.
      const double demand = demand_.binance_weight_per_second * shares_[i];
      const double refill = static_cast<double>(limit_per_minute_) / 60.0;
      int64_t capacity = 0;
      for (const MixItem& m : BinanceMix()) capacity = std::max(capacity, m.weight);
      double tokens = static_cast<double>(capacity);
      absl::Time last = absl::Now(), next_arrival = absl::Now(), paused_until = absl::InfinitePast();
      std::deque<std::pair<absl::Time, const MixItem*>> queue;
      while (true) {
        absl::Time now = absl::Now();
        if (now >= until) break;
        tokens = std::min<double>(static_cast<double>(capacity), tokens + refill * absl::ToDoubleSeconds(now - last));
        last = now;
        while (next_arrival <= now) {
          const MixItem* item = &Pick(BinanceMix(), rng);
          queue.emplace_back(next_arrival, item);
          next_arrival += absl::Seconds(static_cast<double>(item->weight) / demand);
        }
        while (!queue.empty() && queue.front().first + deadline_ < now) {
          queue.pop_front();
          ++stats_.exhausted;
        }
        if (queue.empty() || now < paused_until || tokens < static_cast<double>(queue.front().second->weight)) {
          absl::SleepFor(absl::Milliseconds(1));
          continue;
        }
        const MixItem* item = queue.front().second;
        queue.pop_front();
        tokens -= static_cast<double>(item->weight);
        common::HttpRequestSpec req;
        req.url = common::BuildUrl(sim_url_, item->path, item->query);
        ++stats_.sent;
        auto r = http.Send(req);
        if (!r.ok()) {
          ++stats_.other_errors;
          continue;
        }
        ++stats_.ok;
        {
          absl::MutexLock lock(&stats_.mu);
          ++stats_.http[r->status];
        }
        if (r->status == 429 || r->status == 418) {
          // A careful client honours Retry-After.
          int64_t seconds = 1;
          if (const std::string* ra = r->Header("Retry-After")) (void)absl::SimpleAtoi(*ra, &seconds);
          paused_until = absl::Now() + absl::Seconds(seconds);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
}

double Round2(double v) { return std::round(v * 100) / 100; }

double Pct(int64_t part, int64_t whole) {
  return whole == 0 ? 0 : Round2(100.0 * static_cast<double>(part) / static_cast<double>(whole));
}

}  // namespace marketprism::bench
