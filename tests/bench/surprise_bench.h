#pragma once
#include <string>
#include <vector>

namespace marketprism::bench {
// `mp-bench surprise [flags]`: the exchange surprises a saturated cluster (a
// limit lowered without notice, a foreign client at the top of each window;
// tests/testing/surprise.h), with the exposure bound on and, beside it in the
// same run, off: refusals per IP, 418s, how long until the new limit is used.
int RunSurpriseBench(const std::vector<std::string>& args);
}  // namespace marketprism::bench
