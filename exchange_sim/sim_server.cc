#include "exchange_sim/sim_server.h"

#include <cstdio>
#include <cstring>
#include <exception>
#include <deque>
#include <random>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "exchange_sim/ws_session.h"
#include <libwebsockets.h>

namespace marketprism::sim {

namespace {

constexpr size_t kMaxBody = 1 << 20;        // POST bodies (admin, Deribit JSON-RPC)
constexpr size_t kMaxWsMessage = 1 << 20;   // one client WebSocket message
constexpr size_t kMaxWsQueue = 20000;       // unsent messages before a slow consumer is cut
constexpr size_t kMaxWsBacklog = 200000;    // ... and before any connection is, reading or not
constexpr int kFramesPerWrite = 64;          // frames written per writable callback, at most
constexpr size_t kChunk = 64 * 1024;        // HTTP body bytes per write
constexpr lws_usec_t kTickUs = 100 * LWS_US_PER_MS;

// A timer whose address is stable and whose owner can be recovered: the sul
// must be the first member so the callback can cast back.
struct SulBox {
  lws_sorted_usec_list_t sul;
  void* owner;
};

struct HttpConn {
  SulBox delay{};
  lws* wsi = nullptr;
  HttpRequest req;
  HttpResponse resp;
  bool awaiting_body = false;
  bool responding = false;
  bool headers_sent = false;
  size_t sent = 0;
};

struct WsFrame {
  bool ping = false;
  std::string text;
};

struct WsConn {
  lws* wsi = nullptr;
  std::unique_ptr<WsSession> session;
  std::deque<WsFrame> out;
  bool closing = false;
  int close_code = 1000;
  std::string close_reason;
  std::string rx;
  int drop_generation = 0;
  bool cut = false;  // said once
};

std::string PeerIp(lws* wsi) {
  char buf[128] = {0};
  lws_get_peer_simple(wsi, buf, sizeof(buf));
  absl::string_view ip(buf);
  if (absl::StartsWith(ip, "::ffff:")) ip.remove_prefix(7);
  return std::string(ip);
}

common::QueryParams UrlArgs(lws* wsi) {
  common::QueryParams query;
  for (int i = 0;; ++i) {
    int n = lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, i);
    if (n <= 0) break;
    std::string frag(static_cast<size_t>(n) + 1, '\0');
    if (lws_hdr_copy_fragment(wsi, frag.data(), n + 1, WSI_TOKEN_HTTP_URI_ARGS, i) < 0) break;
    frag.resize(static_cast<size_t>(n));
    size_t eq = frag.find('=');
    if (eq == std::string::npos) {
      query.emplace_back(frag, "");
    } else {
      query.emplace_back(frag.substr(0, eq), frag.substr(eq + 1));
    }
  }
  return query;
}

std::string Header(lws* wsi, lws_token_indexes token) {
  int n = lws_hdr_total_length(wsi, token);
  if (n <= 0) return "";
  std::string v(static_cast<size_t>(n) + 1, '\0');
  if (lws_hdr_copy(wsi, v.data(), n + 1, token) < 0) return "";
  v.resize(static_cast<size_t>(n));
  return v;
}

std::string MethodOf(lws* wsi) {
  static const std::pair<lws_token_indexes, const char*> kMethods[] = {
      {WSI_TOKEN_GET_URI, "GET"},       {WSI_TOKEN_POST_URI, "POST"},
      {WSI_TOKEN_PUT_URI, "PUT"},       {WSI_TOKEN_DELETE_URI, "DELETE"},
      {WSI_TOKEN_PATCH_URI, "PATCH"},   {WSI_TOKEN_OPTIONS_URI, "OPTIONS"},
      {WSI_TOKEN_HEAD_URI, "HEAD"}};
  for (const auto& [token, name] : kMethods) {
    if (lws_hdr_total_length(wsi, token) > 0) return name;
  }
  return "GET";
}

}  // namespace

struct SimServer::Impl {
  explicit Impl(Simulator& s) : sim(s) {}

  Simulator& sim;
  lws_context* ctx = nullptr;
  absl::flat_hash_map<lws*, std::unique_ptr<HttpConn>> http;
  absl::flat_hash_map<lws*, std::unique_ptr<WsConn>> ws;
  SulBox tick{};
  int64_t ticks = 0;

  static Impl* From(lws* wsi) {
    return static_cast<Impl*>(lws_context_user(lws_get_context(wsi)));
  }

  // ---- HTTP ----------------------------------------------------------------

  HttpConn& Conn(lws* wsi) {
    auto& slot = http[wsi];
    if (!slot) {
      slot = std::make_unique<HttpConn>();
      slot->wsi = wsi;
      slot->delay.owner = slot.get();
    }
    return *slot;
  }

  // Runs the request and starts the reply. Returns the lws callback result.
  int Respond(HttpConn& c) {
    try {
      c.resp = sim.Handle(c.req);
    } catch (const std::exception& e) {
      // A bug, not bad input: say so loudly and keep serving.
      std::fprintf(stderr, "mp-exchange-sim: internal error on %s %s: %s\n", c.req.method.c_str(),
                   c.req.path.c_str(), e.what());
      c.resp = HttpResponse();
      c.resp.status = 500;
      c.resp.body = R"({"error":"internal error in the simulator"})";
    }
    c.responding = true;
    c.headers_sent = false;
    c.sent = 0;
    if (c.resp.delay > absl::ZeroDuration()) {
      lws_sul_schedule(ctx, 0, &c.delay.sul, &Impl::OnDelay,
                       absl::ToInt64Microseconds(c.resp.delay));
      return 0;
    }
    return Write(c);
  }

  static void OnDelay(lws_sorted_usec_list_t* sul) {
    auto* c = static_cast<HttpConn*>(reinterpret_cast<SulBox*>(sul)->owner);
    lws_callback_on_writable(c->wsi);
  }

  // Writes headers and as much body as one call should; asks for writable
  // again when there is more.
  int Write(HttpConn& c) {
    lws* wsi = c.wsi;
    if (!c.headers_sent) {
      uint8_t buf[LWS_PRE + 2048];
      uint8_t* start = buf + LWS_PRE;
      uint8_t* p = start;
      uint8_t* end = buf + sizeof(buf) - 1;
      if (lws_add_http_common_headers(wsi, static_cast<unsigned int>(c.resp.status),
                                      c.resp.content_type.c_str(), c.resp.body.size(), &p, end)) {
        return -1;
      }
      for (const auto& [name, value] : c.resp.headers) {
        std::string n = absl::StrCat(name, ":");
        if (lws_add_http_header_by_name(wsi, reinterpret_cast<const unsigned char*>(n.c_str()),
                                        reinterpret_cast<const unsigned char*>(value.data()),
                                        static_cast<int>(value.size()), &p, end)) {
          return -1;
        }
      }
      if (lws_finalize_write_http_header(wsi, start, &p, end)) return -1;
      c.headers_sent = true;
    }
    size_t left = c.resp.body.size() - c.sent;
    if (left > 0) {
      size_t n = std::min(left, kChunk);
      static thread_local std::vector<uint8_t> buf(LWS_PRE + kChunk);
      std::memcpy(buf.data() + LWS_PRE, c.resp.body.data() + c.sent, n);
      bool last = n == left;
      if (lws_write(wsi, buf.data() + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) !=
          static_cast<int>(n)) {
        return -1;
      }
      c.sent += n;
      if (!last) {
        lws_callback_on_writable(wsi);
        return 0;
      }
    }
    c.responding = false;
    c.req = HttpRequest();
    c.resp = HttpResponse();
    return lws_http_transaction_completed(wsi) ? -1 : 0;
  }

  int OnHttp(lws* wsi, const char* uri) {
    HttpConn& c = Conn(wsi);
    lws_sul_cancel(&c.delay.sul);
    c.req = HttpRequest();
    c.req.method = MethodOf(wsi);
    c.req.path = uri != nullptr ? uri : "/";
    c.req.query = UrlArgs(wsi);
    c.req.peer_ip = PeerIp(wsi);
    {
      static constexpr char kKey[] = "x-mbx-apikey:";
      int n = lws_hdr_custom_length(wsi, kKey, sizeof(kKey) - 1);
      if (n > 0) {
        std::string v(static_cast<size_t>(n) + 1, '\0');
        if (lws_hdr_custom_copy(wsi, v.data(), n + 1, kKey, sizeof(kKey) - 1) >= 0) {
          v.resize(static_cast<size_t>(n));
          c.req.api_key = std::move(v);
        }
      }
    }
    int64_t length = 0;
    std::string cl = Header(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH);
    if (!cl.empty() && absl::SimpleAtoi(cl, &length) && length > 0) {
      if (static_cast<size_t>(length) > kMaxBody) {
        lws_return_http_status(wsi, HTTP_STATUS_REQ_ENTITY_TOO_LARGE, nullptr);
        return -1;
      }
      c.awaiting_body = true;
      return 0;
    }
    return Respond(c);
  }

  int OnBody(lws* wsi, const char* data, size_t len) {
    HttpConn& c = Conn(wsi);
    if (c.req.body.size() + len > kMaxBody) return -1;
    c.req.body.append(data, len);
    return 0;
  }

  int OnBodyDone(lws* wsi) {
    HttpConn& c = Conn(wsi);
    c.awaiting_body = false;
    return Respond(c);
  }

  void OnHttpClosed(lws* wsi) {
    auto it = http.find(wsi);
    if (it == http.end()) return;
    lws_sul_cancel(&it->second->delay.sul);
    http.erase(it);
  }

  // ---- WebSocket -------------------------------------------------------------

  int OnWsFilter(lws* wsi) {
    std::string path = Header(wsi, WSI_TOKEN_GET_URI);
    std::string ip = PeerIp(wsi);
    std::string exchange = WsExchangeForPath(path);
    if (exchange.empty()) return -1;
    absl::Time now = sim.ServerNow();
    if (!sim.AdmitWebSocket(exchange, ip, now)) return -1;
    std::string error;
    auto session = OpenWsSession(sim, path, UrlArgs(wsi), ip, now, &error);
    if (!session) {
      sim.WebSocketClosed(exchange, ip);
      return -1;
    }
    auto conn = std::make_unique<WsConn>();
    conn->wsi = wsi;
    conn->session = std::move(session);
    conn->drop_generation = sim.ws_drop_generation();
    ws[wsi] = std::move(conn);
    return 0;
  }

  void Apply(WsConn& c, WsOut& out) {
    for (std::string& t : out.texts) c.out.push_back(WsFrame{false, std::move(t)});
    // Binance's pings carry a payload (the pong must echo it); lws also
    // passes an empty pong up to no one, so a bare ping would never be
    // seen answered.
    if (out.ping) c.out.push_back(WsFrame{true, absl::StrCat(absl::ToUnixMillis(sim.ServerNow()))});
    if (out.close && !c.closing) {
      c.closing = true;
      c.close_code = out.close_code;
      c.close_reason = out.close_reason;
    }
    // A slow consumer is cut, as the exchanges do: one whose socket is full
    // (it does not read) with this much still queued. A backlog the
    // simulator made itself, busy elsewhere (a burst of depth replies) with
    // the socket free, is its own fault: it goes on, up to a hard bound.
    if (c.out.size() > kMaxWsQueue && (lws_send_pipe_choked(c.wsi) || c.out.size() > kMaxWsBacklog)) {
      if (!c.cut) {
        c.cut = true;
        std::fprintf(stderr, "mp-exchange-sim: cutting a slow WebSocket consumer at %s: %zu frames unsent%s\n",
                     c.session->peer_ip().c_str(), c.out.size(),
                     lws_send_pipe_choked(c.wsi) ? "" : " (the simulator fell behind)");
      }
      lws_set_timeout(c.wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
      return;
    }
    if (!c.out.empty() || c.closing) lws_callback_on_writable(c.wsi);
  }

  int OnWsReceive(lws* wsi, const char* data, size_t len) {
    auto it = ws.find(wsi);
    if (it == ws.end()) return -1;
    WsConn& c = *it->second;
    if (c.rx.size() + len > kMaxWsMessage) return -1;
    c.rx.append(data, len);
    if (!lws_is_final_fragment(wsi)) return 0;
    std::string text = std::move(c.rx);
    c.rx.clear();
    WsOut out;
    try {
      c.session->OnText(text, sim.ServerNow(), out);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mp-exchange-sim: internal error on a WebSocket message: %s\n", e.what());
      return -1;
    }
    Apply(c, out);
    return 0;
  }

  int OnWsPong(lws* wsi) {
    auto it = ws.find(wsi);
    if (it == ws.end()) return 0;
    WsOut out;
    it->second->session->OnPong(sim.ServerNow(), out);
    Apply(*it->second, out);
    return 0;
  }

  int OnWsWritable(lws* wsi) {
    auto it = ws.find(wsi);
    if (it == ws.end()) return -1;
    WsConn& c = *it->second;
    if (!c.out.empty()) {
      // As many frames as the socket takes now (up to kFramesPerWrite), not
      // one per poll: one frame a wake-up falls behind a connection carrying
      // a thousand streams, and a ping queued behind the backlog then times
      // the client out.
      for (int i = 0; i < kFramesPerWrite && !c.out.empty() && (i == 0 || !lws_send_pipe_choked(wsi)); ++i) {
        WsFrame f = std::move(c.out.front());
        c.out.pop_front();
        std::vector<uint8_t> buf(LWS_PRE + f.text.size());
        std::memcpy(buf.data() + LWS_PRE, f.text.data(), f.text.size());
        int n = lws_write(wsi, buf.data() + LWS_PRE, f.text.size(),
                          f.ping ? LWS_WRITE_PING : LWS_WRITE_TEXT);
        if (n < static_cast<int>(f.text.size())) return -1;
      }
      if (!c.out.empty() || c.closing) lws_callback_on_writable(wsi);
      return 0;
    }
    if (c.closing) {
      lws_close_reason(wsi, static_cast<lws_close_status>(c.close_code),
                       reinterpret_cast<unsigned char*>(c.close_reason.data()),
                       c.close_reason.size());
      return -1;
    }
    return 0;
  }

  void OnWsClosed(lws* wsi) {
    auto it = ws.find(wsi);
    if (it == ws.end()) return;
    sim.WebSocketClosed(it->second->session->exchange(), it->second->session->peer_ip());
    ws.erase(it);
  }

  // Every 100 ms: pushes, pings, timeouts and injected drops.
  static void OnTick(lws_sorted_usec_list_t* sul) {
    auto* self = static_cast<Impl*>(reinterpret_cast<SulBox*>(sul)->owner);
    self->Tick();
    lws_sul_schedule(self->ctx, 0, &self->tick.sul, &Impl::OnTick, kTickUs);
  }

  void Tick() {
    absl::Time now = sim.ServerNow();
    bool second = ++ticks % 10 == 0;
    double drop_rate = sim.faults().ws_drop_per_second;
    for (auto& [wsi, conn] : ws) {
      if (conn->drop_generation != sim.ws_drop_generation() ||
          (second && drop_rate > 0 &&
           std::uniform_real_distribution<double>(0, 1)(sim.rng()) < drop_rate)) {
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        continue;
      }
      if (conn->closing) continue;
      WsOut out;
      conn->session->OnTick(now, out);
      Apply(*conn, out);
    }
  }

  static int Callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, size_t len) {
    Impl* self = From(wsi);
    switch (reason) {
      case LWS_CALLBACK_HTTP:
        return self->OnHttp(wsi, static_cast<const char*>(in));
      case LWS_CALLBACK_HTTP_BODY:
        return self->OnBody(wsi, static_cast<const char*>(in), len);
      case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return self->OnBodyDone(wsi);
      case LWS_CALLBACK_HTTP_WRITEABLE: {
        auto it = self->http.find(wsi);
        if (it == self->http.end() || !it->second->responding) return 0;
        return self->Write(*it->second);
      }
      case LWS_CALLBACK_CLOSED_HTTP:
        self->OnHttpClosed(wsi);
        break;
      case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return self->OnWsFilter(wsi);
      case LWS_CALLBACK_RECEIVE:
        return self->OnWsReceive(wsi, static_cast<const char*>(in), len);
      case LWS_CALLBACK_RECEIVE_PONG:
        return self->OnWsPong(wsi);
      case LWS_CALLBACK_SERVER_WRITEABLE:
        return self->OnWsWritable(wsi);
      case LWS_CALLBACK_CLOSED:
        self->OnWsClosed(wsi);
        break;
      case LWS_CALLBACK_WSI_DESTROY:
        self->OnHttpClosed(wsi);
        self->OnWsClosed(wsi);
        break;
      default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
  }
};

namespace {
const lws_protocols kProtocols[] = {
    {"mp-sim", &SimServer::Impl::Callback, 0, 64 * 1024, 0, nullptr, 0},
    {nullptr, nullptr, 0, 0, 0, nullptr, 0}};
}  // namespace

SimServer::SimServer(Simulator& sim) : impl_(std::make_unique<Impl>(sim)) {}

SimServer::~SimServer() {
  if (context_ != nullptr) lws_context_destroy(context_);
}

absl::Status SimServer::Start(const std::string& host, int port, const std::string& tls_cert,
                              const std::string& tls_key) {
  if (tls_cert.empty() != tls_key.empty()) {
    return absl::InvalidArgumentError("TLS needs both a certificate and its key (--tls-cert, --tls-key)");
  }
  lws_set_log_level(LLL_ERR, nullptr);
  lws_context_creation_info info;
  std::memset(&info, 0, sizeof(info));
  info.port = port;
  info.iface = host.empty() ? nullptr : host.c_str();
  info.protocols = kProtocols;
  info.user = impl_.get();
  info.options = LWS_SERVER_OPTION_DISABLE_IPV6 | LWS_SERVER_OPTION_VALIDATE_UTF8;
  info.keepalive_timeout = 60;
  info.timeout_secs = 30;
  info.pt_serv_buf_size = 64 * 1024;
  if (!tls_cert.empty()) {
    info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.ssl_cert_filepath = tls_cert.c_str();
    info.ssl_private_key_filepath = tls_key.c_str();
    // HTTP/1.1 only: the REST replies are written whole, which HTTP/2's
    // framing cuts short (a 64 KB depth reply ended at its headers).
    info.alpn = "http/1.1";
  }
  context_ = lws_create_context(&info);
  if (context_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", host, ":", port,
                                               tls_cert.empty() ? " (address in use or not local?)"
                                                                : " (address in use, or an unreadable certificate or key?)"));
  }
  impl_->ctx = context_;
  port_ = lws_get_vhost_listen_port(lws_get_vhost_by_name(context_, "default"));
  impl_->tick.owner = impl_.get();
  lws_sul_schedule(context_, 0, &impl_->tick.sul, &Impl::OnTick, kTickUs);
  return absl::OkStatus();
}

void SimServer::Run() {
  while (!stop_.load()) {
    if (lws_service(context_, 0) < 0) break;
  }
}

void SimServer::Stop() {
  stop_.store(true);
  if (context_ != nullptr) lws_cancel_service(context_);
}

}  // namespace marketprism::sim
