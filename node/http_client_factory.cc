#include "node/http_client_factory.h"

#include "common/net/curl_http_client.h"

namespace marketprism::node {

HttpClientFactory CurlHttpClientFactory() {
  return [](const HttpEndpoint& endpoint) -> std::shared_ptr<common::HttpClient> {
    common::CurlHttpOptions options;
    options.source_ip = endpoint.source_ip;
    options.proxy = endpoint.proxy;
    options.ca_bundle = endpoint.ca_bundle;
    return std::make_shared<common::CurlHttpClient>(std::move(options));
  };
}

}  // namespace marketprism::node
