#include <atomic>
#include <cstring>
#include <deque>
#include <map>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/net/socks_relay.h"
#include "common/net/ws_client.h"
#include <libwebsockets.h>

namespace marketprism::common {

absl::StatusOr<WsUrl> ParseWsUrl(const std::string& url) {
  WsUrl out;
  absl::string_view rest(url);
  if (absl::ConsumePrefix(&rest, "ws://")) {
    out.port = 80;
  } else if (absl::ConsumePrefix(&rest, "wss://")) {
    out.tls = true;
    out.port = 443;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("WebSocket URL \"", url, "\" must start with ws:// or wss://"));
  }
  size_t slash = rest.find_first_of("/?");
  absl::string_view authority = rest.substr(0, slash);
  out.path = slash == absl::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (!out.path.empty() && out.path[0] == '?') out.path = "/" + out.path;
  size_t colon = authority.rfind(':');
  if (colon != absl::string_view::npos) {
    if (!absl::SimpleAtoi(authority.substr(colon + 1), &out.port) || out.port <= 0 ||
        out.port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("WebSocket URL \"", url, "\": bad port"));
    }
    authority = authority.substr(0, colon);
  }
  if (authority.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("WebSocket URL \"", url, "\": no host"));
  }
  out.host = std::string(authority);
  return out;
}

std::string RedactProxy(absl::string_view proxy) {
  size_t at = proxy.rfind('@');
  if (at == absl::string_view::npos) return std::string(proxy);
  size_t scheme = proxy.find("://");
  size_t from = scheme == absl::string_view::npos || scheme > at ? 0 : scheme + 3;
  return absl::StrCat(proxy.substr(0, from), "***", proxy.substr(at));
}

absl::StatusOr<std::string> LwsProxyOf(absl::string_view proxy) {
  if (proxy.empty()) return std::string();
  const std::string shown = RedactProxy(proxy);
  absl::string_view rest = proxy;
  if (!absl::ConsumePrefix(&rest, "http://")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "proxy ", shown, ": for WebSocket, http://[user:pass@]host:port or socks5[h]://[user:pass@]host:port"));
  }
  rest = absl::StripSuffix(rest, "/");
  size_t at = rest.rfind('@');
  absl::string_view hostport = at == absl::string_view::npos ? rest : rest.substr(at + 1);
  size_t colon = hostport.rfind(':');
  int port = 0;
  if (hostport.empty() || colon == absl::string_view::npos || colon == 0 ||
      !absl::SimpleAtoi(hostport.substr(colon + 1), &port) || port <= 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("proxy ", shown, ": needs host:port"));
  }
  return std::string(rest);
}

namespace {

class LwsConnection final : public WsConnection,
                            public std::enable_shared_from_this<LwsConnection> {
 public:
  LwsConnection(LwsWsClient::Impl* owner, WsUrl url, std::string source_ip, std::string proxy, WsCallbacks cb)
      : owner_(owner),
        url_(std::move(url)),
        source_ip_(std::move(source_ip)),
        proxy_(std::move(proxy)),
        cb_(std::move(cb)) {}

  void Send(std::string text) override;
  void Close() override;

  // Service thread only.
  LwsWsClient::Impl* owner_;
  WsUrl url_;
  std::string source_ip_;
  std::string proxy_;  // lws_set_proxy's form: [user:pass@]host:port, or ""
  WsCallbacks cb_;
  lws* wsi_ = nullptr;
  std::string rx_;
  int close_code_ = -1;
  std::string close_reason_;
  bool finished_ = false;

  absl::Mutex mu_;
  std::deque<std::string> outbox_ ABSL_GUARDED_BY(mu_);
  bool close_requested_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

struct LwsWsClient::Impl {
  lws_context* ctx = nullptr;
  std::thread thread;
  std::atomic<bool> stop{false};
  std::string ca_bundle;

  absl::Mutex mu;
  // Connections to open, and those with something to send or close.
  std::vector<std::shared_ptr<LwsConnection>> to_open ABSL_GUARDED_BY(mu);
  std::vector<std::shared_ptr<LwsConnection>> to_wake ABSL_GUARDED_BY(mu);
  // Service thread only: live connections, kept alive until they finish;
  // a vhost per proxy (lws keeps the proxy per vhost).
  std::vector<std::shared_ptr<LwsConnection>> live;
  std::map<std::string, lws_vhost*> proxy_vhosts;
  // A local CONNECT relay per SOCKS5 proxy (socks_relay.h), made the first
  // time a connection names it; they outlive the lws context.
  std::map<std::string, std::unique_ptr<SocksRelay>> socks_relays ABSL_GUARDED_BY(mu);
  std::deque<std::string> vhost_names;  // lws keeps a vhost's name by pointer

  // The vhost that tunnels through `proxy`, made the first time.
  lws_vhost* VhostFor(const std::string& proxy);

  void Wake(std::shared_ptr<LwsConnection> c) {
    {
      absl::MutexLock lock(&mu);
      to_wake.push_back(std::move(c));
    }
    lws_cancel_service(ctx);
  }

  void Finish(LwsConnection* c) {
    if (c->finished_) return;
    c->finished_ = true;
    c->wsi_ = nullptr;
    if (c->cb_.on_closed) c->cb_.on_closed(c->close_code_, c->close_reason_);
    for (auto it = live.begin(); it != live.end(); ++it) {
      if (it->get() == c) {
        live.erase(it);
        break;
      }
    }
  }

  void OpenPending() {
    std::vector<std::shared_ptr<LwsConnection>> opens, wakes;
    {
      absl::MutexLock lock(&mu);
      opens.swap(to_open);
      wakes.swap(to_wake);
    }
    for (auto& c : opens) {
      live.push_back(c);
      lws_client_connect_info i;
      std::memset(&i, 0, sizeof(i));
      i.context = ctx;
      i.address = c->url_.host.c_str();
      i.port = c->url_.port;
      i.path = c->url_.path.c_str();
      i.host = c->url_.host.c_str();
      i.origin = c->url_.host.c_str();
      i.ssl_connection = c->url_.tls ? LCCSCF_USE_SSL : 0;
      i.iface = c->source_ip_.empty() ? nullptr : c->source_ip_.c_str();
      i.local_protocol_name = "mp-ws-client";
      if (!c->proxy_.empty()) {
        i.vhost = VhostFor(c->proxy_);
        if (i.vhost == nullptr) {
          c->close_reason_ = absl::StrCat("cannot set up the proxy ", RedactProxy(c->proxy_));
          Finish(c.get());
          continue;
        }
      }
      i.opaque_user_data = c.get();
      i.pwsi = &c->wsi_;
      if (lws_client_connect_via_info(&i) == nullptr && !c->finished_) {
        c->close_reason_ = "connect failed";
        Finish(c.get());
      }
    }
    for (auto& c : wakes) {
      if (c->wsi_ != nullptr) lws_callback_on_writable(c->wsi_);
    }
  }

  static int Callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, size_t len) {
    lws_context* context = lws_get_context(wsi);
    auto* self = static_cast<Impl*>(lws_context_user(context));
    auto* c = static_cast<LwsConnection*>(lws_get_opaque_user_data(wsi));
    switch (reason) {
      case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        self->OpenPending();
        return 0;
      case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (c != nullptr) {
          c->close_reason_ = in != nullptr ? static_cast<const char*>(in) : "connection error";
          self->Finish(c);
        }
        return 0;
      case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (c != nullptr && c->cb_.on_open) c->cb_.on_open();
        if (c != nullptr) lws_callback_on_writable(wsi);
        return 0;
      case LWS_CALLBACK_CLIENT_RECEIVE:
        if (c == nullptr) return 0;
        c->rx_.append(static_cast<const char*>(in), len);
        if (lws_is_final_fragment(wsi)) {
          std::string text = std::move(c->rx_);
          c->rx_.clear();
          if (c->cb_.on_text) c->cb_.on_text(std::move(text));
        }
        return 0;
      case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (c != nullptr && len >= 2) {
          const auto* p = static_cast<const unsigned char*>(in);
          c->close_code_ = (p[0] << 8) | p[1];
          c->close_reason_ = std::string(reinterpret_cast<const char*>(p) + 2, len - 2);
        }
        return 0;
      case LWS_CALLBACK_CLIENT_WRITEABLE: {
        if (c == nullptr) return 0;
        std::string text;
        bool more = false, close = false;
        {
          absl::MutexLock lock(&c->mu_);
          if (!c->outbox_.empty()) {
            text = std::move(c->outbox_.front());
            c->outbox_.pop_front();
            more = !c->outbox_.empty();
          }
          close = c->close_requested_ && c->outbox_.empty() && text.empty();
          more = more || (c->close_requested_ && !close);
        }
        if (close) {
          c->close_code_ = 1000;
          c->close_reason_ = "closed by client";
          lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, nullptr, 0);
          return -1;
        }
        if (!text.empty()) {
          std::vector<unsigned char> buf(LWS_PRE + text.size());
          std::memcpy(buf.data() + LWS_PRE, text.data(), text.size());
          if (lws_write(wsi, buf.data() + LWS_PRE, text.size(), LWS_WRITE_TEXT) <
              static_cast<int>(text.size())) {
            return -1;
          }
        }
        if (more) lws_callback_on_writable(wsi);
        return 0;
      }
      case LWS_CALLBACK_CLIENT_CLOSED:
        if (c != nullptr) self->Finish(c);
        return 0;
      default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
  }
};

namespace {

const lws_protocols kClientProtocols[] = {
    {"mp-ws-client", &LwsWsClient::Impl::Callback, 0, 64 * 1024, 0, nullptr, 0},
    {nullptr, nullptr, 0, 0, 0, nullptr, 0}};

void LwsConnection::Send(std::string text) {
  {
    absl::MutexLock lock(&mu_);
    if (close_requested_) return;
    outbox_.push_back(std::move(text));
  }
  owner_->Wake(shared_from_this());
}

void LwsConnection::Close() {
  {
    absl::MutexLock lock(&mu_);
    close_requested_ = true;
  }
  owner_->Wake(shared_from_this());
}

}  // namespace

lws_vhost* LwsWsClient::Impl::VhostFor(const std::string& proxy) {
  auto it = proxy_vhosts.find(proxy);
  if (it != proxy_vhosts.end()) return it->second;
  lws_context_creation_info info;
  std::memset(&info, 0, sizeof(info));
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.protocols = kClientProtocols;
  info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;  // else the vhost gets no client TLS context
  info.vhost_name = vhost_names.emplace_back(absl::StrCat("proxy-", vhost_names.size())).c_str();
  info.http_proxy_address = proxy.c_str();
  if (!ca_bundle.empty()) info.client_ssl_ca_filepath = ca_bundle.c_str();
  lws_vhost* vh = lws_create_vhost(ctx, &info);
  if (vh == nullptr) return nullptr;  // not kept: the next connection tries again
  proxy_vhosts[proxy] = vh;
  return vh;
}

absl::StatusOr<std::unique_ptr<LwsWsClient>> LwsWsClient::Create(LwsWsClientOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->ca_bundle = std::move(options.ca_bundle);
  lws_set_log_level(LLL_ERR, nullptr);
  lws_context_creation_info info;
  std::memset(&info, 0, sizeof(info));
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.protocols = kClientProtocols;
  info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
  info.user = impl.get();
  if (!impl->ca_bundle.empty()) info.client_ssl_ca_filepath = impl->ca_bundle.c_str();
  // No proxy unless a connection names one: without an address of its own
  // lws would take $http_proxy for every connection, NO_PROXY or not (an
  // empty one sets none; lws's complaint about it is silenced).
  info.http_proxy_address = "";
  lws_set_log_level(0, nullptr);
  impl->ctx = lws_create_context(&info);
  lws_set_log_level(LLL_ERR, nullptr);
  if (impl->ctx == nullptr) return absl::InternalError("cannot create the lws client context");
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] {
    while (!raw->stop.load()) {
      if (lws_service(raw->ctx, 0) < 0) break;
    }
  });
  return std::unique_ptr<LwsWsClient>(new LwsWsClient(std::move(impl)));
}

LwsWsClient::LwsWsClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

LwsWsClient::~LwsWsClient() {
  impl_->stop.store(true);
  lws_cancel_service(impl_->ctx);
  impl_->thread.join();
  lws_context_destroy(impl_->ctx);
}

absl::StatusOr<std::shared_ptr<WsConnection>> LwsWsClient::Connect(const WsConnectSpec& spec,
                                                                   WsCallbacks callbacks) {
  auto url = ParseWsUrl(spec.url);
  if (!url.ok()) return url.status();
  absl::StatusOr<std::string> proxy = std::string();
  if (IsSocksProxy(spec.proxy)) {
    // Debian's lws has no SOCKS5: the tunnel goes through our relay.
    absl::MutexLock lock(&impl_->mu);
    std::unique_ptr<SocksRelay>& relay = impl_->socks_relays[spec.proxy];
    if (relay == nullptr) {
      absl::StatusOr<std::unique_ptr<SocksRelay>> made = SocksRelay::Start(spec.proxy);
      if (!made.ok()) {
        impl_->socks_relays.erase(spec.proxy);
        return made.status();
      }
      relay = *std::move(made);
    }
    proxy = relay->address();
  } else {
    proxy = LwsProxyOf(spec.proxy);
  }
  if (!proxy.ok()) return proxy.status();
  auto conn = std::make_shared<LwsConnection>(impl_.get(), std::move(*url), spec.source_ip, *std::move(proxy),
                                              std::move(callbacks));
  {
    absl::MutexLock lock(&impl_->mu);
    impl_->to_open.push_back(conn);
  }
  lws_cancel_service(impl_->ctx);
  return std::shared_ptr<WsConnection>(conn);
}

}  // namespace marketprism::common
