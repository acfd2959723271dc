// File: node/proxy.h
//
// Which proxy a node uses for an exchange's URL: the exchange's own setting,
// else the node's, else the environment (HTTPS_PROXY for https URLs,
// HTTP_PROXY for http, then ALL_PROXY; upper or lower case), unless NO_PROXY
// names the host. NO_PROXY applies to the environment only: a proxy set in
// our configuration is used as given. The environment is read once, when
// the options are parsed (ProxyEnvironment::From), never later.
#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace marketprism::node {

using GetEnv = std::function<const char*(const char*)>;

// The environment's proxy variables, each the upper-case one if set and not
// empty, else the lower-case one ("" when neither is set).
struct ProxyEnvironment {
  std::string https_proxy;
  std::string http_proxy;
  std::string all_proxy;
  std::string no_proxy;

  // `getenv` is called only here, once per variable.
  static ProxyEnvironment From(const GetEnv& getenv);
};

// "" means connect directly.
std::string ResolveProxy(absl::string_view exchange_proxy, absl::string_view node_proxy,
                         absl::string_view url, const ProxyEnvironment& env);

// NO_PROXY semantics: comma-separated hosts or domain suffixes ("example.com"
// and ".example.com" both match a.example.com), "*" matches everything.
bool NoProxyMatches(absl::string_view no_proxy, absl::string_view host);

// kInvalidArgument unless `proxy` is http://, https://, socks5://, socks5h://
// or socks4:// with a host.
absl::Status ValidateProxy(absl::string_view proxy, absl::string_view what);

}  // namespace marketprism::node
