// File: tests/testing/certs.cc
#include "tests/testing/certs.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace marketprism::testing {

absl::StatusOr<std::string> SelfSignedCert(const std::string& dir, const std::string& name) {
  std::string cert = absl::StrCat(dir, "/", name, ".pem");
  std::string cmd = absl::StrCat(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=", name,
      " -addext subjectAltName=IP:127.0.0.1 -keyout ", dir, "/", name, ".key -out ", cert, " 2>/dev/null");
  if (std::system(cmd.c_str()) != 0) return absl::InternalError(absl::StrCat("failed: ", cmd));
  return cert;
}

}  // namespace marketprism::testing
