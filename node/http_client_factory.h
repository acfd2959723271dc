// File: node/http_client_factory.h
//
// The seam through which a node gets its exchange transport: one HttpClient
// per exchange endpoint, bound to the node's egress IP. mp-node passes
// CurlHttpClientFactory(); tests pass a factory that hands out fakes.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "common/net/http_client.h"

namespace marketprism::node {

// Where and how one exchange is reached.
struct HttpEndpoint {
  std::string exchange;
  std::string url;        // the REST base
  std::string source_ip;  // the egress IP every request leaves from
  std::string proxy;      // resolved already (node/proxy.h); "" = direct
  std::string ca_bundle;  // PEM file; "" = the system's CAs
};

// Called when a lane's endpoint is set (at start, and when the coordinator
// names another URL), from the thread that sets it. Never returns null.
using HttpClientFactory = std::function<std::shared_ptr<common::HttpClient>(const HttpEndpoint&)>;

// libcurl clients (common/net/curl_http_client.h), one per endpoint.
HttpClientFactory CurlHttpClientFactory();

}  // namespace marketprism::node
