#include "node/proxy.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace marketprism::node {

namespace {

std::string HostOf(absl::string_view url) {
  size_t scheme = url.find("://");
  if (scheme != absl::string_view::npos) url.remove_prefix(scheme + 3);
  url = url.substr(0, url.find_first_of("/?#"));
  size_t at = url.rfind('@');
  if (at != absl::string_view::npos) url.remove_prefix(at + 1);
  if (absl::StartsWith(url, "[")) return std::string(url.substr(1, url.find(']') - 1));
  return std::string(url.substr(0, url.rfind(':') == absl::string_view::npos ? url.size() : url.rfind(':')));
}

std::string Env(const GetEnv& getenv, const char* upper, const char* lower) {
  const char* v = getenv(upper);
  if (v == nullptr || *v == '\0') v = getenv(lower);
  return v != nullptr ? v : "";
}

}  // namespace

bool NoProxyMatches(absl::string_view no_proxy, absl::string_view host) {
  std::string h = absl::AsciiStrToLower(host);
  for (absl::string_view entry : absl::StrSplit(no_proxy, ',', absl::SkipWhitespace())) {
    entry = absl::StripAsciiWhitespace(entry);
    if (entry == "*") return true;
    std::string e = absl::AsciiStrToLower(absl::StripPrefix(entry, "."));
    if (h == e || absl::EndsWith(h, "." + e)) return true;
  }
  return false;
}

ProxyEnvironment ProxyEnvironment::From(const GetEnv& getenv) {
  ProxyEnvironment env;
  env.https_proxy = Env(getenv, "HTTPS_PROXY", "https_proxy");
  env.http_proxy = Env(getenv, "HTTP_PROXY", "http_proxy");
  env.all_proxy = Env(getenv, "ALL_PROXY", "all_proxy");
  env.no_proxy = Env(getenv, "NO_PROXY", "no_proxy");
  return env;
}

std::string ResolveProxy(absl::string_view exchange_proxy, absl::string_view node_proxy,
                         absl::string_view url, const ProxyEnvironment& env) {
  if (!exchange_proxy.empty()) return std::string(exchange_proxy);
  if (!node_proxy.empty()) return std::string(node_proxy);
  std::string proxy = absl::StartsWithIgnoreCase(url, "https://") ? env.https_proxy : env.http_proxy;
  if (proxy.empty()) proxy = env.all_proxy;
  if (proxy.empty()) return "";
  if (!env.no_proxy.empty() && NoProxyMatches(env.no_proxy, HostOf(url))) return "";
  return proxy;
}

absl::Status ValidateProxy(absl::string_view proxy, absl::string_view what) {
  for (const char* scheme : {"http://", "https://", "socks5://", "socks5h://", "socks4://"}) {
    if (absl::StartsWithIgnoreCase(proxy, scheme) && proxy.size() > strlen(scheme)) {
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat(what, " \"", proxy,
                   "\": a proxy is http://, https://, socks5://, socks5h:// or socks4:// HOST:PORT"));
}

}  // namespace marketprism::node
