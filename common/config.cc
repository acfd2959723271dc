#include "common/config.h"

#include <arpa/inet.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace marketprism::common {

absl::StatusOr<std::map<std::string, std::string>> ParseExchangeMap(
    const std::vector<std::string>& entries, absl::string_view what, const RulesBook& rules,
    const std::vector<std::string>& schemes) {
  std::map<std::string, std::string> out;
  for (const std::string& e : entries) {
    size_t eq = e.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == e.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " \"", e, "\": expected EXCHANGE=VALUE, e.g. binance_spot=http://127.0.0.1:8400"));
    }
    std::string exchange = e.substr(0, eq), value = e.substr(eq + 1);
    if (rules.Find(exchange) == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(what, " \"", e, "\": unknown exchange \"",
                                                     exchange, "\" (known: ",
                                                     absl::StrJoin(rules.ExchangeNames(), ", "), ")"));
    }
    if (!schemes.empty()) {
      bool ok = false;
      for (const std::string& s : schemes) ok = ok || absl::StartsWithIgnoreCase(value, s);
      if (!ok) {
        return absl::InvalidArgumentError(absl::StrCat(what, " \"", e, "\": the URL must start with ",
                                                       absl::StrJoin(schemes, " or ")));
      }
    }
    out[exchange] = value;
  }
  return out;
}

bool IsIpLiteral(absl::string_view ip) {
  std::string s(ip);
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

}  // namespace marketprism::common
