#include "exchange_sim/ws_session.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/budget/exchange_window.h"
#include "exchange_sim/api_json.h"
#include "exchange_sim/api_util.h"

namespace marketprism::sim {

using Json = nlohmann::ordered_json;

void WsSession::Violation(const char* limit) { ++sim_.Account(exchange_, peer_ip_).ws_violations[limit]; }

namespace {

constexpr int64_t kBinanceIdsPerTick = 10;  // matches binance_api.cc's lastUpdateId
constexpr int kOkxBookDepth = 400;
constexpr int kDeribitBookDepth = 200;
constexpr int kPolicyViolation = 1008;

int64_t Ms(absl::Time t) { return absl::ToUnixMillis(t); }

const common::PoolRule* PoolOf(const common::ExchangeRules& rules, int index) {
  return index >= 0 ? &rules.pools()[index] : nullptr;
}

// ---------------------------------------------------------------------------
// Binance market streams

class BinanceSession final : public WsSession {
 public:
  BinanceSession(Simulator& sim, std::string exchange, std::string ip, bool combined,
                 absl::Time now)
      : WsSession(sim, std::move(exchange), std::move(ip)),
        rules_(*sim.rules().Find(exchange_)),
        futures_(exchange_ == "binance_usdm"),
        combined_(combined),
        opened_(now),
        last_ping_(now) {
    if (const common::PoolRule* p = PoolOf(rules_, rules_.websocket().message_pool)) {
      messages_.emplace(*p);
    }
    const SimOptions& o = sim.options();
    ping_interval_ = o.binance_ping_interval.value_or(
        absl::Seconds(std::max(1, rules_.websocket().server_ping_seconds)));
    pong_timeout_ = o.binance_pong_timeout.value_or(
        absl::Seconds(std::max(1, rules_.websocket().pong_timeout_seconds)));
  }

  // Subscribes `names` (already validated). Returns an error text or "".
  std::string Subscribe(const std::vector<std::string>& names, absl::Time now) {
    std::vector<Stream> added;
    for (const std::string& name : names) {
      if (streams_.count(name)) continue;
      auto stream = Parse(name, now);
      if (!stream) return absl::StrCat("Invalid request: unknown stream ", name);
      added.push_back(std::move(*stream));
    }
    int max = rules_.websocket().max_streams_per_connection;
    if (max > 0 && streams_.size() + added.size() > static_cast<size_t>(max)) {
      Violation("streams_per_connection");
      return absl::StrCat("Invalid request: at most ", max, " streams per connection");
    }
    for (Stream& s : added) streams_.emplace(s.name, std::move(s));
    return "";
  }

  void OnText(absl::string_view text, absl::Time now, WsOut& out) override {
    if (!CountMessage(now, out)) return;
    Json msg = Json::parse(text, nullptr, false);
    if (msg.is_discarded()) {
      return Reply(out, Json(nullptr), 3, "Invalid JSON: expected value at line 1 column 1");
    }
    if (!msg.is_object()) return Reply(out, Json(nullptr), 2, "Invalid request: expected an object");
    Json id = msg.value("id", Json(nullptr));
    if (!id.is_null() && !id.is_number_unsigned() && !id.is_string()) {
      return Reply(out, Json(nullptr), 2,
                   "Invalid request: request ID must be an unsigned integer");
    }
    if (!msg.contains("method") || !msg["method"].is_string()) {
      return Reply(out, id, 2, "Invalid request: missing field `method`");
    }
    std::string method = msg["method"];
    if (method == "LIST_SUBSCRIPTIONS") {
      Json list = Json::array();
      for (const auto& [name, s] : streams_) list.push_back(name);
      out.texts.push_back(Json{{"result", std::move(list)}, {"id", id}}.dump(-1, ' ', false, kDumpReplacingBadUtf8));
      return;
    }
    if (method == "SET_PROPERTY" || method == "GET_PROPERTY") {
      out.texts.push_back(Json{{"result", method == "GET_PROPERTY" ? Json(combined_) : Json(nullptr)},
                               {"id", id}}
                              .dump(-1, ' ', false, kDumpReplacingBadUtf8));
      return;
    }
    if (method != "SUBSCRIBE" && method != "UNSUBSCRIBE") {
      return Reply(out, id, 2,
                   absl::StrCat("Invalid request: unknown variant `", method,
                                "`, expected one of `SUBSCRIBE`, `UNSUBSCRIBE`, "
                                "`LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"));
    }
    if (!msg.contains("params") || !msg["params"].is_array()) {
      return Reply(out, id, 2, "Invalid request: missing field `params`");
    }
    std::vector<std::string> names;
    for (const Json& p : msg["params"]) {
      if (!p.is_string()) return Reply(out, id, 2, "Invalid request: stream names must be strings");
      names.push_back(p.get<std::string>());
    }
    if (method == "UNSUBSCRIBE") {
      for (const std::string& n : names) streams_.erase(n);
    } else if (std::string err = Subscribe(names, now); !err.empty()) {
      return Reply(out, id, 2, err);
    }
    out.texts.push_back(Json{{"result", nullptr}, {"id", id}}.dump(-1, ' ', false, kDumpReplacingBadUtf8));
  }

  void OnPong(absl::Time now, WsOut& out) override {
    if (!CountMessage(now, out)) return;
    ping_outstanding_since_.reset();
  }

  void OnTick(absl::Time now, WsOut& out) override {
    int lifetime = rules_.websocket().max_lifetime_seconds;
    if (lifetime > 0 && now - opened_ >= absl::Seconds(lifetime)) {
      return out.Close(1000, "max connection lifetime");
    }
    if (ping_outstanding_since_ && now - *ping_outstanding_since_ > pong_timeout_) {
      return out.Close(kPolicyViolation, "pong timeout");
    }
    if (now - last_ping_ >= ping_interval_) {
      out.ping = true;
      last_ping_ = now;
      if (!ping_outstanding_since_) ping_outstanding_since_ = now;
    }
    const Market& m = sim_.market();
    int64_t now_ms = Ms(now);
    int64_t tick = now_ms / Market::kTickMs;
    for (auto& [name, s] : streams_) {
      if (s.inst == nullptr) continue;
      if (s.kind == Kind::kDepth) {
        int64_t target = tick / s.ticks_per_event * s.ticks_per_event;
        if (target <= s.last_tick) continue;
        BookDiff diff = m.Diff(*s.inst, s.last_tick, target);
        Json b = Json::array(), a = Json::array();
        for (const Level& l : diff.bids) b.push_back({Px(*s.inst, l.grid), Qty(*s.inst, l.qty)});
        for (const Level& l : diff.asks) a.push_back({Px(*s.inst, l.grid), Qty(*s.inst, l.qty)});
        if (futures_) {
          // USD-M: ids are not consecutive across events ("U" need not be
          // the previous "u" + 1); "pu" is the previous event's "u".
          Emit(out, name,
               Json{{"e", "depthUpdate"},
                    {"E", now_ms},
                    {"T", now_ms},
                    {"s", s.inst->symbol},
                    {"U", s.last_tick * kBinanceIdsPerTick + 5},
                    {"u", target * kBinanceIdsPerTick},
                    {"pu", s.last_tick * kBinanceIdsPerTick},
                    {"b", std::move(b)},
                    {"a", std::move(a)}});
        } else {
          Emit(out, name,
               Json{{"e", "depthUpdate"},
                    {"E", now_ms},
                    {"s", s.inst->symbol},
                    {"U", s.last_tick * kBinanceIdsPerTick + 1},
                    {"u", target * kBinanceIdsPerTick},
                    {"b", std::move(b)},
                    {"a", std::move(a)}});
        }
        s.last_tick = target;
      } else if (s.kind == Kind::kBookTicker) {
        EmitBookTicker(out, s, tick);
      } else if (s.kind == Kind::kTicker) {
        if (now_ms / 1000 <= s.last_second) continue;  // Binance: every 1000 ms
        s.last_second = now_ms / 1000;
        Json t = binance::TickerJson(m, *s.inst, now_ms, futures_);
        if (futures_) {  // USD-M's event has no previous close and no top of book
          Emit(out, name,
               Json{{"e", "24hrTicker"}, {"E", now_ms}, {"s", s.inst->symbol},
                    {"p", t["priceChange"]}, {"P", t["priceChangePercent"]},
                    {"w", t["weightedAvgPrice"]}, {"c", t["lastPrice"]}, {"Q", t["lastQty"]},
                    {"o", t["openPrice"]}, {"h", t["highPrice"]}, {"l", t["lowPrice"]},
                    {"v", t["volume"]}, {"q", t["quoteVolume"]}, {"O", t["openTime"]},
                    {"C", t["closeTime"]}, {"F", t["firstId"]}, {"L", t["lastId"]},
                    {"n", t["count"]}});
          continue;
        }
        Emit(out, name,
             Json{{"e", "24hrTicker"}, {"E", now_ms}, {"s", s.inst->symbol},
                  {"p", t["priceChange"]}, {"P", t["priceChangePercent"]},
                  {"w", t["weightedAvgPrice"]}, {"x", t["prevClosePrice"]},
                  {"c", t["lastPrice"]}, {"Q", t["lastQty"]}, {"b", t["bidPrice"]},
                  {"B", t["bidQty"]}, {"a", t["askPrice"]}, {"A", t["askQty"]},
                  {"o", t["openPrice"]}, {"h", t["highPrice"]}, {"l", t["lowPrice"]},
                  {"v", t["volume"]}, {"q", t["quoteVolume"]}, {"O", t["openTime"]},
                  {"C", t["closeTime"]}, {"F", t["firstId"]}, {"L", t["lastId"]},
                  {"n", t["count"]}});
      } else if (s.kind == Kind::kKline) {
        // Binance pushes the open candle every 2000 ms (1000 ms for 1s) and
        // a candle's final value (x: true) as soon as it closes.
        int64_t open = FloorTo(now_ms, s.interval_ms);
        if (open > s.kline_open) {
          if (s.kline_open > 0) EmitKline(out, s, s.kline_open, now_ms);
          s.kline_open = open;
          EmitKline(out, s, open, now_ms);
        } else if (now_ms - s.kline_sent_ms >= std::min<int64_t>(2000, s.interval_ms)) {
          EmitKline(out, s, open, now_ms);
        }
      } else {
        int64_t last = m.LastTradeId(*s.inst, now_ms);
        for (int64_t id = s.last_trade_id + 1; id <= last; ++id) {
          Trade t = m.TradeById(*s.inst, id);
          if (s.kind == Kind::kTrade) {
            Emit(out, name,
                 Json{{"e", "trade"}, {"E", now_ms}, {"s", s.inst->symbol}, {"t", t.id},
                      {"p", Px(*s.inst, t.price_grid)}, {"q", Qty(*s.inst, t.qty)},
                      {"T", t.time_ms}, {"m", t.buyer_is_maker}, {"M", true}});
          } else {
            Emit(out, name,
                 Json{{"e", "aggTrade"}, {"E", now_ms}, {"s", s.inst->symbol}, {"a", t.id},
                      {"p", Px(*s.inst, t.price_grid)}, {"q", Qty(*s.inst, t.qty)},
                      {"f", t.id}, {"l", t.id}, {"T", t.time_ms}, {"m", t.buyer_is_maker},
                      {"M", true}});
          }
        }
        s.last_trade_id = last;
      }
    }
  }

 private:
  enum class Kind { kTrade, kAggTrade, kDepth, kBookTicker, kTicker, kKline };
  struct Stream {
    std::string name;
    const Instrument* inst = nullptr;
    Kind kind = Kind::kTrade;
    int64_t ticks_per_event = 10;
    int64_t last_tick = 0;
    int64_t last_trade_id = 0;
    // kBookTicker: the top last sent; kTicker: the second last sent
    std::optional<Book> top;
    int64_t last_second = 0;
    // kKline
    std::string interval;
    int64_t interval_ms = 0;
    int64_t kline_open = 0;
    int64_t kline_sent_ms = 0;
  };

  // bookTicker: every change of the best bid or ask, in order, with the
  // book's update id (spot events carry no "e" or "E"; USD-M's do).
  void EmitBookTicker(WsOut& out, Stream& s, int64_t tick) {
    const Market& m = sim_.market();
    for (int64_t t = std::max(s.last_tick + 1, tick - 50); t <= tick; ++t) {
      Book top = m.BookAt(*s.inst, t, 1);
      if (top.bids.empty() || top.asks.empty()) continue;
      bool same = s.top && s.top->bids[0].grid == top.bids[0].grid && s.top->bids[0].qty == top.bids[0].qty &&
                  s.top->asks[0].grid == top.asks[0].grid && s.top->asks[0].qty == top.asks[0].qty;
      if (!same) {
        Json e = {{"u", t * kBinanceIdsPerTick}, {"s", s.inst->symbol},
                  {"b", Px(*s.inst, top.bids[0].grid)}, {"B", Qty(*s.inst, top.bids[0].qty)},
                  {"a", Px(*s.inst, top.asks[0].grid)}, {"A", Qty(*s.inst, top.asks[0].qty)}};
        if (futures_) {  // USD-M's carries its event and transaction times
          int64_t ms = t * Market::kTickMs;
          e = Json{{"e", "bookTicker"}, {"u", e["u"]}, {"E", ms}, {"T", ms}, {"s", e["s"]},
                   {"b", e["b"]}, {"B", e["B"]}, {"a", e["a"]}, {"A", e["A"]}};
        }
        Emit(out, s.name, std::move(e));
      }
      s.top = std::move(top);
    }
    s.last_tick = tick;
  }

  void EmitKline(WsOut& out, Stream& s, int64_t open_ms, int64_t now_ms) {
    const Market& m = sim_.market();
    Candle c = m.CandleAt(*s.inst, open_ms, s.interval_ms, now_ms);
    double quote = m.QtyOf(*s.inst, c.volume) * m.PriceOf(*s.inst, c.close);
    int64_t first = m.FirstTradeIdAtOrAfter(*s.inst, open_ms);
    int64_t last = m.LastTradeId(*s.inst, std::min(now_ms, c.close_ms));
    bool none = c.trades == 0;
    Emit(out, s.name,
         Json{{"e", "kline"},
              {"E", now_ms},
              {"s", s.inst->symbol},
              {"k",
               {{"t", c.open_ms}, {"T", c.close_ms}, {"s", s.inst->symbol}, {"i", s.interval},
                {"f", none ? -1 : first}, {"L", none ? -1 : last}, {"o", Px(*s.inst, c.open)},
                {"c", Px(*s.inst, c.close)}, {"h", Px(*s.inst, c.high)}, {"l", Px(*s.inst, c.low)},
                {"v", Qty(*s.inst, c.volume)}, {"n", c.trades}, {"x", now_ms > c.close_ms},
                {"q", absl::StrFormat("%.8f", quote)}, {"V", Qty(*s.inst, c.volume / 2)},
                {"Q", absl::StrFormat("%.8f", quote / 2)}, {"B", "0"}}}});
    s.kline_sent_ms = now_ms;
  }

  std::optional<Stream> Parse(const std::string& name, absl::Time now) {
    std::vector<std::string> parts = absl::StrSplit(name, '@');
    if (parts.size() < 2 || parts.size() > 3) return std::nullopt;
    if (parts[0].empty() || !std::all_of(parts[0].begin(), parts[0].end(), [](char c) {
          return absl::ascii_islower(c) || absl::ascii_isdigit(c);
        })) {
      return std::nullopt;
    }
    Stream s;
    s.name = name;
    // Like Binance, a well-formed stream for a symbol that does not trade is
    // accepted and stays silent.
    s.inst = sim_.market().Find(exchange_, absl::AsciiStrToUpper(parts[0]));
    if (parts[1] == "trade" && parts.size() == 2) {
      s.kind = Kind::kTrade;
    } else if (parts[1] == "aggTrade" && parts.size() == 2) {
      s.kind = Kind::kAggTrade;
    } else if (parts[1] == "bookTicker" && parts.size() == 2) {
      s.kind = Kind::kBookTicker;
    } else if (parts[1] == "ticker" && parts.size() == 2) {
      s.kind = Kind::kTicker;
    } else if (absl::StartsWith(parts[1], "kline_") && parts.size() == 2) {
      s.kind = Kind::kKline;
      s.interval = parts[1].substr(strlen("kline_"));
      auto it = binance::KlineIntervals().find(s.interval);
      if (it == binance::KlineIntervals().end()) return std::nullopt;
      s.interval_ms = it->second;
    } else if (parts[1] == "depth") {
      s.kind = Kind::kDepth;
      if (parts.size() == 3) {
        if (parts[2] == "100ms") {
          s.ticks_per_event = 1;
        } else if (parts[2] != "1000ms") {
          return std::nullopt;
        }
      }
    } else {
      return std::nullopt;
    }
    int64_t now_ms = Ms(now);
    s.last_tick = now_ms / Market::kTickMs;
    s.last_second = now_ms / 1000;
    if (s.inst != nullptr) s.last_trade_id = sim_.market().LastTradeId(*s.inst, now_ms);
    return s;
  }

  bool CountMessage(absl::Time now, WsOut& out) {
    if (messages_ && !messages_->TrySpend(now, 1)) {
      Violation("messages_per_second");
      out.Close(kPolicyViolation, "Too many messages");
      return false;
    }
    return true;
  }

  void Reply(WsOut& out, const Json& id, int code, absl::string_view msg) {
    out.texts.push_back(
        Json{{"error", {{"code", code}, {"msg", std::string(msg)}}}, {"id", id}}.dump(-1, ' ', false, kDumpReplacingBadUtf8));
  }

  void Emit(WsOut& out, const std::string& stream, Json data) {
    if (combined_) {
      out.texts.push_back(Json{{"stream", stream}, {"data", std::move(data)}}.dump(-1, ' ', false, kDumpReplacingBadUtf8));
    } else {
      out.texts.push_back(data.dump(-1, ' ', false, kDumpReplacingBadUtf8));
    }
  }

  std::string Px(const Instrument& i, int64_t g) { return sim_.market().PriceStr(i, g, 8); }
  std::string Qty(const Instrument& i, int64_t q) { return sim_.market().QtyStr(i, q, 8); }

  const common::ExchangeRules& rules_;
  bool futures_;  // USD-M
  bool combined_;
  absl::Time opened_;
  absl::Time last_ping_;
  absl::Duration ping_interval_;
  absl::Duration pong_timeout_;
  std::optional<absl::Time> ping_outstanding_since_;
  std::optional<common::ExchangeWindow> messages_;
  std::map<std::string, Stream> streams_;
};

// ---------------------------------------------------------------------------
// OKX public channels

class OkxSession final : public WsSession {
 public:
  // `business`: the /ws/v5/business endpoint (candles), else /ws/v5/public.
  OkxSession(Simulator& sim, std::string ip, bool business, absl::Time now)
      : WsSession(sim, "okx", std::move(ip)),
        rules_(*sim.rules().Find("okx")),
        business_(business),
        last_out_(now) {
    if (const common::PoolRule* p = PoolOf(rules_, rules_.websocket().subscribe_pool)) {
      subscribe_ops_.emplace(*p);
    }
    idle_timeout_ = sim.options().okx_idle_timeout.value_or(
        absl::Seconds(std::max(1, rules_.websocket().idle_close_seconds)));
    conn_id_ = absl::StrFormat("%08x", static_cast<uint32_t>(sim.rng()()));
  }

  void OnText(absl::string_view text, absl::Time now, WsOut& out) override {
    if (text == "ping") return Send(out, now, "pong");
    Json msg = Json::parse(text, nullptr, false);
    if (msg.is_discarded() || !msg.is_object() || !msg.contains("op") || !msg["op"].is_string()) {
      return Error(out, now, "60012", absl::StrCat("Invalid request: ", text));
    }
    std::string op = msg["op"];
    if (op != "subscribe" && op != "unsubscribe") {
      return Error(out, now, "60012", absl::StrCat("Invalid request: ", text));
    }
    if (subscribe_ops_ && !subscribe_ops_->TrySpend(now, 1)) {
      Violation("subscribe_ops_per_hour");
      return Error(out, now, "60014", "Requests too frequent.");
    }
    if (!msg.contains("args") || !msg["args"].is_array() || msg["args"].empty()) {
      return Error(out, now, "60012", absl::StrCat("Invalid request: ", text));
    }
    int max_bytes = rules_.websocket().max_subscribe_bytes;
    if (max_bytes > 0 && static_cast<int>(text.size()) > max_bytes) {
      return Error(out, now, "60012",
                   absl::StrCat("Invalid request: channels exceed ", max_bytes, " bytes"));
    }
    for (const Json& arg : msg["args"]) {
      if (!arg.is_object() || !arg.contains("channel") || !arg["channel"].is_string() ||
          !arg.contains("instId") || !arg["instId"].is_string()) {
        return Error(out, now, "60012", absl::StrCat("Invalid request: ", text));
      }
      std::string channel = arg["channel"], inst_id = arg["instId"];
      const Instrument* inst = sim_.market().Find("okx", inst_id);
      std::optional<okx::Bar> bar;
      if (absl::StartsWith(channel, "candle")) bar = okx::ParseBar(absl::string_view(channel).substr(strlen("candle")));
      bool known = business_ ? bar.has_value()
                             : channel == "tickers" || channel == "books" || channel == "trades" || channel == "bbo-tbt";
      if (!known || inst == nullptr) {
        return Error(out, now, "60018",
                     absl::StrCat("Wrong URL or channel:", channel, ",instId:", inst_id,
                                  " doesn't exist. Please use the correct URL, channel and "
                                  "parameters referring to API document."));
      }
      std::string key = channel + "|" + inst_id;
      Json echo = {{"channel", channel}, {"instId", inst_id}};
      if (op == "subscribe") {
        Sub sub;
        sub.channel = channel;
        sub.inst = inst;
        sub.last_trade_id = sim_.market().LastTradeId(*inst, Ms(now));
        sub.bar = bar;
        sub.top_tick = Ms(now) / Market::kTickMs - 1;  // bbo-tbt: the top now, then its changes
        subs_[key] = sub;
      } else {
        subs_.erase(key);
      }
      Send(out, now, Json{{"event", op}, {"arg", echo}, {"connId", conn_id_}}.dump(-1, ' ', false, kDumpReplacingBadUtf8));
    }
  }

  void OnTick(absl::Time now, WsOut& out) override {
    const Market& m = sim_.market();
    int64_t now_ms = Ms(now);
    int64_t tick = now_ms / Market::kTickMs;
    for (auto& [key, sub] : subs_) {
      Json arg = {{"channel", sub.channel}, {"instId", sub.inst->symbol}};
      if (sub.channel == "tickers") {
        Send(out, now,
             Json{{"arg", arg}, {"data", Json::array({okx::TickerJson(m, *sub.inst, now_ms)})}}
                 .dump(-1, ' ', false, kDumpReplacingBadUtf8));
      } else if (sub.channel == "bbo-tbt") {
        // Every change of the top, with the book's seqId (this tick).
        for (int64_t t = std::max(sub.top_tick + 1, tick - 50); t <= tick; ++t) {
          Book top = m.BookAt(*sub.inst, t, 1);
          if (top.bids.empty() || top.asks.empty()) continue;
          bool same = sub.top && sub.top->bids[0].grid == top.bids[0].grid &&
                      sub.top->bids[0].qty == top.bids[0].qty && sub.top->asks[0].grid == top.asks[0].grid &&
                      sub.top->asks[0].qty == top.asks[0].qty;
          if (!same) {
            Send(out, now,
                 Json{{"arg", arg},
                      {"data", Json::array({{{"asks", Side(*sub.inst, top.asks)},
                                             {"bids", Side(*sub.inst, top.bids)},
                                             {"ts", absl::StrCat(t * Market::kTickMs)},
                                             {"seqId", t}}})}}
                     .dump(-1, ' ', false, kDumpReplacingBadUtf8));
          }
          sub.top = std::move(top);
        }
        sub.top_tick = tick;
      } else if (sub.bar) {
        // candle<bar>: the open candle every 500 ms, and a candle's final
        // value (confirm "1") once it closes.
        int64_t open = okx::BarOpen(now_ms, *sub.bar);
        Sub& candle = sub;
        auto push = [&](int64_t at) {
          Send(out, now,
               Json{{"arg", arg}, {"data", Json::array({okx::CandleRow(m, *candle.inst, at, *candle.bar, now_ms)})}}
                   .dump(-1, ' ', false, kDumpReplacingBadUtf8));
          candle.candle_sent_ms = now_ms;
        };
        if (open > sub.candle_open) {
          if (sub.candle_open > 0) push(sub.candle_open);
          sub.candle_open = open;
          push(open);
        } else if (now_ms - sub.candle_sent_ms >= 500) {
          push(open);
        }
      } else if (sub.channel == "trades") {
        int64_t last = m.LastTradeId(*sub.inst, now_ms);
        Json data = Json::array();
        for (int64_t id = sub.last_trade_id + 1; id <= last; ++id) {
          Trade t = m.TradeById(*sub.inst, id);
          data.push_back({{"instId", sub.inst->symbol},
                          {"tradeId", absl::StrCat(t.id)},
                          {"px", m.PriceStr(*sub.inst, t.price_grid)},
                          {"sz", m.QtyStr(*sub.inst, t.qty)},
                          {"side", t.buyer_is_maker ? "sell" : "buy"},
                          {"ts", absl::StrCat(t.time_ms)},
                          {"count", "1"}});
        }
        sub.last_trade_id = last;
        if (!data.empty()) Send(out, now, Json{{"arg", arg}, {"data", std::move(data)}}.dump(-1, ' ', false, kDumpReplacingBadUtf8));
      } else {  // books
        if (sub.book && tick <= sub.book->tick) continue;
        Book now_book = m.BookAt(*sub.inst, tick, kOkxBookDepth);
        if (!sub.book && !sim_.options().okx_ws_book_snapshot) {
          // OKX today: no snapshot push. The first update follows the book
          // as REST shows it now (seqId = this tick).
          sub.book = std::move(now_book);
          sub.seq = tick;
          continue;
        }
        std::string action = "snapshot";
        BookDiff diff;
        int64_t prev = -1;
        if (sub.book) {
          action = "update";
          diff = DiffViews(*sub.book, now_book);
          prev = sub.seq;
        } else {
          diff.bids = now_book.bids;
          diff.asks = now_book.asks;
        }
        sub.book = std::move(now_book);
        if (action == "update" && diff.bids.empty() && diff.asks.empty()) continue;
        sub.seq = tick;
        Send(out, now,
             Json{{"arg", arg},
                  {"action", action},
                  {"data", Json::array({{{"asks", Side(*sub.inst, diff.asks)},
                                         {"bids", Side(*sub.inst, diff.bids)},
                                         {"ts", absl::StrCat(tick * Market::kTickMs)},
                                         {"checksum", sim_.options().okx_ws_book_snapshot
                                                          ? Checksum(*sub.inst, *sub.book) : 0},
                                         {"prevSeqId", prev},
                                         {"seqId", sub.seq}}})}}
                 .dump(-1, ' ', false, kDumpReplacingBadUtf8));
      }
    }
    if (now - last_out_ > idle_timeout_) out.Close(4004, "No data received in 30s.");
  }

 private:
  struct Sub {
    std::string channel;
    const Instrument* inst = nullptr;
    int64_t last_trade_id = 0;
    std::optional<Book> book;  // the 400-level view last sent
    int64_t seq = -1;
    // bbo-tbt: the top last seen and its tick
    std::optional<Book> top;
    int64_t top_tick = 0;
    // candle<bar>
    std::optional<okx::Bar> bar;
    int64_t candle_open = 0;
    int64_t candle_sent_ms = 0;
  };

  Json Side(const Instrument& inst, const std::vector<Level>& levels) {
    Json out = Json::array();
    const Market& m = sim_.market();
    for (const Level& l : levels) {
      if (l.qty == 0) {  // OKX deletes a level with size "0"
        out.push_back({m.PriceStr(inst, l.grid), "0", "0", "0"});
        continue;
      }
      int64_t orders = 1 + static_cast<int64_t>(m.Hash(inst.key, l.grid, l.qty) % 9);
      out.push_back({m.PriceStr(inst, l.grid), m.QtyStr(inst, l.qty), "0", absl::StrCat(orders)});
    }
    return out;
  }

  int32_t Checksum(const Instrument& inst, const Book& book) {
    const Market& m = sim_.market();
    std::vector<std::pair<std::string, std::string>> bids, asks;
    for (size_t i = 0; i < std::min<size_t>(25, book.bids.size()); ++i) {
      bids.emplace_back(m.PriceStr(inst, book.bids[i].grid), m.QtyStr(inst, book.bids[i].qty));
    }
    for (size_t i = 0; i < std::min<size_t>(25, book.asks.size()); ++i) {
      asks.emplace_back(m.PriceStr(inst, book.asks[i].grid), m.QtyStr(inst, book.asks[i].qty));
    }
    return OkxChecksum(bids, asks);
  }

  void Send(WsOut& out, absl::Time now, std::string text) {
    out.texts.push_back(std::move(text));
    last_out_ = now;
  }

  void Error(WsOut& out, absl::Time now, absl::string_view code, absl::string_view msg) {
    Send(out, now,
         Json{{"event", "error"}, {"code", std::string(code)}, {"msg", std::string(msg)},
              {"connId", conn_id_}}
             .dump(-1, ' ', false, kDumpReplacingBadUtf8));
  }

  const common::ExchangeRules& rules_;
  bool business_;
  absl::Time last_out_;
  absl::Duration idle_timeout_;
  std::string conn_id_;
  std::optional<common::ExchangeWindow> subscribe_ops_;
  std::map<std::string, Sub> subs_;
};

// ---------------------------------------------------------------------------
// Deribit JSON-RPC over WebSocket

class DeribitSession final : public WsSession {
 public:
  DeribitSession(Simulator& sim, std::string ip, absl::Time now)
      : WsSession(sim, "deribit", std::move(ip)),
        rules_(*sim.rules().Find("deribit")),
        last_in_(now) {
    const SimOptions& o = sim.options();
    min_heartbeat_ = o.deribit_min_heartbeat.value_or(
        absl::Seconds(std::max(1, rules_.websocket().min_heartbeat_seconds)));
    inactivity_ = o.deribit_inactivity.value_or(absl::Seconds(600));
  }

  void OnText(absl::string_view text, absl::Time now, WsOut& out) override {
    last_in_ = now;
    absl::Time received = sim_.clock().Now();
    HttpRequest req;
    req.method = "POST";
    req.path = "/api/v2";
    req.body = std::string(text);
    req.peer_ip = peer_ip_;
    HttpResponse error;
    std::optional<deribit::RpcCall> call = deribit::ParseHttp(req, &error, received);
    if (!call) return out.texts.push_back(error.body);
    req.path = absl::StrCat("/api/v2/", call->method);

    // Every request draws on the IP's credit bucket; a refusal ends the session.
    absl::StatusOr<common::Cost> cost = rules_.Price("POST", req.path, {});
    absl::Duration unused;
    IpAccount& acct = sim_.Account(exchange_, peer_ip_);
    ++acct.requests;
    if (cost.ok() && sim_.Charge(exchange_, peer_ip_, *cost, now, &unused)) {
      ++acct.rejections["10028"];
      out.texts.push_back(deribit::ErrorBody(*call, 10028, "too_many_requests", received,
                                             sim_.clock().Now()));
      return out.Close(1000, "too_many_requests");
    }
    ++acct.accepted;

    Json params = Json::parse(call->params_json, nullptr, false);
    const std::string& method = call->method;
    if (method == "public/subscribe" || method == "public/unsubscribe") {
      return Subscribe(*call, params, method == "public/subscribe", now, received, out);
    }
    if (method == "public/unsubscribe_all") {
      subs_.clear();
      return Result(out, *call, "ok", received);
    }
    if (method == "public/set_heartbeat") {
      Json interval = params.value("interval", Json(nullptr));
      if (!interval.is_number() ||
          absl::Seconds(interval.get<double>()) < min_heartbeat_) {
        return Error(out, *call, -32602, "Invalid params",
                     Json{{"reason", absl::StrCat("interval must be >= ",
                                                  absl::ToInt64Seconds(min_heartbeat_))},
                          {"param", "interval"}},
                     received);
      }
      heartbeat_ = absl::Seconds(interval.get<double>());
      next_heartbeat_ = now + *heartbeat_;
      return Result(out, *call, "ok", received);
    }
    if (method == "public/disable_heartbeat") {
      heartbeat_.reset();
      test_request_outstanding_ = false;
      return Result(out, *call, "ok", received);
    }
    if (method == "public/test") test_request_outstanding_ = false;
    if (method == "public/hello") {
      return Result(out, *call, Json{{"version", "1.2.26"}}, received);
    }
    ApiContext ctx{sim_, sim_.market(), rules_, req, now, Ms(now), received};
    out.texts.push_back(deribit::Serve(ctx, *call).body);
  }

  void OnTick(absl::Time now, WsOut& out) override {
    if (now - last_in_ > inactivity_) return out.Close(1000, "inactivity");
    if (heartbeat_ && now >= next_heartbeat_) {
      if (test_request_outstanding_) return out.Close(1000, "heartbeat test_request unanswered");
      out.texts.push_back(
          R"({"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}})");
      test_request_outstanding_ = true;
      next_heartbeat_ = now + *heartbeat_;
    }
    const Market& m = sim_.market();
    int64_t now_ms = Ms(now);
    int64_t tick = now_ms / Market::kTickMs;
    for (auto& [channel, sub] : subs_) {
      if (sub.kind == Kind::kTicker) {
        Notify(out, channel, deribit::TickerJson(m, *sub.inst, now_ms));
      } else if (sub.kind == Kind::kQuote) {
        // quote.*: the best bid and ask whenever either changes (the first
        // push is the top at subscribe).
        if (sub.book && tick <= sub.book->tick) continue;
        Book top = m.BookAt(*sub.inst, tick, 1);
        bool same = sub.book && top.bids.at(0).grid == sub.book->bids.at(0).grid &&
                    top.bids[0].qty == sub.book->bids.at(0).qty && top.asks.at(0).grid == sub.book->asks.at(0).grid &&
                    top.asks[0].qty == sub.book->asks.at(0).qty;
        sub.book = top;
        if (same) continue;
        Notify(out, channel,
               Json{{"timestamp", tick * Market::kTickMs},
                    {"instrument_name", sub.inst->symbol},
                    {"best_bid_price", m.PriceOf(*sub.inst, top.bids[0].grid)},
                    {"best_bid_amount", m.QtyOf(*sub.inst, top.bids[0].qty)},
                    {"best_ask_price", m.PriceOf(*sub.inst, top.asks[0].grid)},
                    {"best_ask_amount", m.QtyOf(*sub.inst, top.asks[0].qty)}});
      } else if (sub.kind == Kind::kChart) {
        // chart.trades.*: the open candle every 500 ms; when it closes, its
        // final value once (as the last trade in it would have pushed it),
        // then the next. Nothing marks a candle final but its successor.
        int64_t open = FloorTo(now_ms, sub.step_ms);
        if (open > sub.candle_open) {
          if (sub.candle_open > 0) Notify(out, channel, deribit::ChartItem(m, *sub.inst, sub.candle_open, sub.step_ms, now_ms));
          sub.candle_open = open;
        } else if (now_ms - sub.candle_sent_ms < 500) {
          continue;
        }
        Notify(out, channel, deribit::ChartItem(m, *sub.inst, open, sub.step_ms, now_ms));
        sub.candle_sent_ms = now_ms;
      } else if (sub.kind == Kind::kTrades) {
        int64_t last = m.LastTradeId(*sub.inst, now_ms);
        Json data = Json::array();
        for (int64_t id = sub.last_trade_id + 1; id <= last; ++id) {
          Trade t = m.TradeById(*sub.inst, id);
          data.push_back({{"trade_seq", t.id},
                          {"trade_id", absl::StrCat(t.id)},
                          {"timestamp", t.time_ms},
                          {"tick_direction", t.buyer_is_maker ? 2 : 0},
                          {"price", m.PriceOf(*sub.inst, t.price_grid)},
                          {"mark_price", m.PriceOf(*sub.inst, t.price_grid)},
                          {"instrument_name", sub.inst->symbol},
                          {"index_price", m.PriceOf(*sub.inst, t.price_grid)},
                          {"direction", t.buyer_is_maker ? "sell" : "buy"},
                          {"amount", m.QtyOf(*sub.inst, t.qty)}});
        }
        sub.last_trade_id = last;
        if (!data.empty()) Notify(out, channel, std::move(data));
      } else {
        if (sub.book && tick <= sub.book->tick) continue;
        Book now_book = m.BookAt(*sub.inst, tick, kDeribitBookDepth);
        Json data = {{"type", sub.book ? "change" : "snapshot"},
                     {"timestamp", tick * Market::kTickMs},
                     {"instrument_name", sub.inst->symbol}};
        Json bids = Json::array(), asks = Json::array();
        if (sub.book) {
          BookDiff diff = DiffViews(*sub.book, now_book);
          if (diff.bids.empty() && diff.asks.empty()) {
            sub.book = std::move(now_book);
            continue;
          }
          Changes(*sub.inst, sub.book->bids, diff.bids, &bids);
          Changes(*sub.inst, sub.book->asks, diff.asks, &asks);
          data["prev_change_id"] = sub.change_id;
        } else {
          for (const Level& l : now_book.bids) bids.push_back({"new", m.PriceOf(*sub.inst, l.grid), m.QtyOf(*sub.inst, l.qty)});
          for (const Level& l : now_book.asks) asks.push_back({"new", m.PriceOf(*sub.inst, l.grid), m.QtyOf(*sub.inst, l.qty)});
        }
        sub.change_id = tick;
        data["change_id"] = tick;
        data["bids"] = std::move(bids);
        data["asks"] = std::move(asks);
        sub.book = std::move(now_book);
        Notify(out, channel, std::move(data));
      }
    }
  }

 private:
  enum class Kind { kBook, kTicker, kTrades, kQuote, kChart };
  struct Sub {
    Kind kind = Kind::kBook;
    const Instrument* inst = nullptr;
    std::optional<Book> book;  // book: the last sent; quote: its top
    int64_t change_id = 0;
    int64_t last_trade_id = 0;
    // chart
    int64_t step_ms = 0;
    int64_t candle_open = 0;
    int64_t candle_sent_ms = 0;
  };

  void Subscribe(const deribit::RpcCall& call, const Json& params, bool subscribe, absl::Time now,
                 absl::Time received, WsOut& out) {
    if (!params.is_object() || !params.contains("channels") || !params["channels"].is_array()) {
      return Error(out, call, -32602, "Invalid params",
                   Json{{"reason", "must be present"}, {"param", "channels"}}, received);
    }
    const Json& channels = params["channels"];
    int max = rules_.websocket().max_channels_per_subscribe;
    if (max > 0 && static_cast<int>(channels.size()) > max) {
      Violation("channels_per_subscribe");
      return Error(out, call, -32602, "Invalid params",
                   Json{{"reason", absl::StrCat("at most ", max, " channels")},
                        {"param", "channels"}},
                   received);
    }
    Json result = Json::array();
    for (const Json& c : channels) {
      if (!c.is_string()) {
        return Error(out, call, -32602, "Invalid params",
                     Json{{"reason", "channel names are strings"}, {"param", "channels"}},
                     received);
      }
      std::string name = c.get<std::string>();
      if (!subscribe) {
        if (subs_.erase(name)) result.push_back(name);
        continue;
      }
      std::vector<std::string> parts = absl::StrSplit(name, '.');
      if (parts.size() == 3 && parts[2] == "raw") {
        return Error(out, call, 13778, "raw_subscriptions_not_available_for_unauthorized",
                     Json(nullptr), received);
      }
      // book|ticker|trades.<instrument>.<interval>, quote.<instrument>,
      // chart.trades.<instrument>.<resolution>
      bool chart = parts.size() == 4 && parts[0] == "chart" && parts[1] == "trades";
      bool quote = parts.size() == 2 && parts[0] == "quote";
      const Instrument* inst = parts.size() == 3 || quote ? sim_.market().Find("deribit", parts[1])
                               : chart                    ? sim_.market().Find("deribit", parts[2])
                                                          : nullptr;
      Sub sub;
      std::optional<int64_t> minutes = chart ? deribit::ResolutionMinutes(parts[3]) : std::nullopt;
      bool ok = inst != nullptr && parts.size() == 3 && (parts[2] == "100ms" || parts[2] == "agg2");
      if (inst != nullptr && quote) {
        sub.kind = Kind::kQuote;
      } else if (inst != nullptr && minutes) {
        sub.kind = Kind::kChart;
        sub.step_ms = *minutes * 60'000;
      } else if (ok && parts[0] == "book") {
        sub.kind = Kind::kBook;
      } else if (ok && parts[0] == "ticker") {
        sub.kind = Kind::kTicker;
      } else if (ok && parts[0] == "trades") {
        sub.kind = Kind::kTrades;
      } else {
        return Error(out, call, -32602, "Invalid params",
                     Json{{"reason", absl::StrCat("unknown channel ", name)}, {"param", "channels"}},
                     received);
      }
      sub.inst = inst;
      sub.last_trade_id = sim_.market().LastTradeId(*inst, Ms(now));
      subs_[name] = std::move(sub);
      result.push_back(name);
    }
    Result(out, call, std::move(result), received);
  }

  void Changes(const Instrument& inst, const std::vector<Level>& before,
               const std::vector<Level>& diff, Json* out) {
    const Market& m = sim_.market();
    for (const Level& l : diff) {
      bool existed = std::any_of(before.begin(), before.end(),
                                 [&](const Level& b) { return b.grid == l.grid; });
      const char* action = l.qty == 0 ? "delete" : existed ? "change" : "new";
      out->push_back({action, m.PriceOf(inst, l.grid), m.QtyOf(inst, l.qty)});
    }
  }

  void Notify(WsOut& out, const std::string& channel, Json data) {
    out.texts.push_back(Json{{"jsonrpc", "2.0"},
                             {"method", "subscription"},
                             {"params", {{"channel", channel}, {"data", std::move(data)}}}}
                            .dump(-1, ' ', false, kDumpReplacingBadUtf8));
  }

  void Result(WsOut& out, const deribit::RpcCall& call, Json result, absl::Time received) {
    out.texts.push_back(deribit::ResultBody(call, std::move(result), received, sim_.clock().Now()));
  }

  void Error(WsOut& out, const deribit::RpcCall& call, int code, absl::string_view message,
             const Json& data, absl::Time received) {
    out.texts.push_back(deribit::ErrorBody(call, code, message, received, sim_.clock().Now(),
                                           data.is_null() ? "" : data.dump(-1, ' ', false, kDumpReplacingBadUtf8)));
  }

  const common::ExchangeRules& rules_;
  absl::Time last_in_;
  absl::Duration min_heartbeat_;
  absl::Duration inactivity_;
  std::optional<absl::Duration> heartbeat_;
  absl::Time next_heartbeat_;
  bool test_request_outstanding_ = false;
  std::map<std::string, Sub> subs_;
};

}  // namespace

std::string WsExchangeForPath(absl::string_view path) {
  if (path == "/ws/v5/public" || path == "/ws/v5/business") return "okx";
  if (path == "/ws/api/v2") return "deribit";
  std::string binance = "binance_spot";
  if (absl::ConsumePrefix(&path, kUsdmPrefix)) binance = "binance_usdm";
  if (path == "/ws" || absl::StartsWith(path, "/ws/") || path == "/stream") return binance;
  return "";
}

std::unique_ptr<WsSession> OpenWsSession(Simulator& sim, absl::string_view path,
                                         const common::QueryParams& query,
                                         const std::string& peer_ip, absl::Time now,
                                         std::string* error) {
  std::string exchange = WsExchangeForPath(path);
  if (exchange == "okx") return std::make_unique<OkxSession>(sim, peer_ip, path == "/ws/v5/business", now);
  if (exchange == "deribit") return std::make_unique<DeribitSession>(sim, peer_ip, now);
  if (exchange != "binance_spot" && exchange != "binance_usdm") {
    *error = absl::StrCat("no WebSocket endpoint at ", path);
    return nullptr;
  }
  if (exchange == "binance_usdm") path.remove_prefix(kUsdmPrefix.size());
  bool combined = path == "/stream";
  auto session = std::make_unique<BinanceSession>(sim, exchange, peer_ip, combined, now);
  std::vector<std::string> names;
  if (absl::StartsWith(path, "/ws/")) {
    names = absl::StrSplit(path.substr(4), '/', absl::SkipEmpty());
  } else if (combined) {
    for (const auto& [k, v] : query) {
      if (k == "streams") names = absl::StrSplit(v, '/', absl::SkipEmpty());
    }
  }
  if (std::string err = session->Subscribe(names, now); !err.empty()) {
    *error = err;
    return nullptr;
  }
  return session;
}

int32_t OkxChecksum(const std::vector<std::pair<std::string, std::string>>& bids,
                    const std::vector<std::pair<std::string, std::string>>& asks) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < std::max(bids.size(), asks.size()); ++i) {
    if (i < bids.size()) {
      parts.push_back(bids[i].first);
      parts.push_back(bids[i].second);
    }
    if (i < asks.size()) {
      parts.push_back(asks[i].first);
      parts.push_back(asks[i].second);
    }
  }
  std::string s = absl::StrJoin(parts, ":");
  static const auto* table = [] {
    auto* t = new uint32_t[256];
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[n] = c;
    }
    return t;
  }();
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char ch : s) crc = table[(crc ^ ch) & 0xFF] ^ (crc >> 8);
  return static_cast<int32_t>(crc ^ 0xFFFFFFFFu);
}

}  // namespace marketprism::sim
