// File: tests/testing/certs.h
//
// Certificates for tests, made with Debian's openssl command.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace marketprism::testing {

// A self-signed ECDSA P-256 certificate for 127.0.0.1 (its own CA), valid a
// day: DIR/NAME.pem and DIR/NAME.key. Returns the certificate's path.
absl::StatusOr<std::string> SelfSignedCert(const std::string& dir, const std::string& name);

}  // namespace marketprism::testing
