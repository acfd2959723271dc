// File: common/flags.h
//
// Command-line flags for our mains: --name=value or --name value, repeatable
// list flags (--limit a --limit b), durations written like "250ms" or "2s",
// and errors that name the flag and the problem. Only main() parses flags.
//
// Example:
//   FlagSet flags("mp-exchange-sim", "Stands in for Binance, OKX and Deribit.");
//   std::string listen = "127.0.0.1:8080";
//   flags.String("listen", &listen, "ADDR:PORT to serve on");
//   auto args = flags.Parse(argc, argv);  // positional arguments, or an error
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace marketprism::common {

// An environment to read settings from: a variable's value, or null when unset.
using GetEnv = std::function<const char*(const char*)>;
// The process's own environment (std::getenv). Only mains call this: below
// main the environment is whatever was injected.
GetEnv ProcessEnvironment();

class FlagSet {
 public:
  FlagSet(std::string program, std::string summary);

  void String(absl::string_view name, std::string* out, absl::string_view help);
  void Int(absl::string_view name, int64_t* out, absl::string_view help);
  void Double(absl::string_view name, double* out, absl::string_view help);
  void Bool(absl::string_view name, bool* out, absl::string_view help);
  void Duration(absl::string_view name, absl::Duration* out, absl::string_view help);
  void OptionalDuration(absl::string_view name, std::optional<absl::Duration>* out,
                        absl::string_view help);
  // Repeatable: each occurrence appends.
  void List(absl::string_view name, std::vector<std::string>* out, absl::string_view help);

  // Parses argv[1..]. Returns the positional arguments. Fails with
  // kInvalidArgument naming the flag for an unknown flag, a missing value or
  // a value of the wrong type. `--help` sets help_requested() and stops.
  absl::StatusOr<std::vector<std::string>> Parse(int argc, char** argv);
  // Same, for a vector of arguments (without the program name).
  absl::StatusOr<std::vector<std::string>> Parse(const std::vector<std::string>& args);

  // Like Parse, but first applies two more sources, each overriding the one
  // before: a JSON config file named by --config (an object whose keys are
  // flag names; lists as arrays), then environment variables named
  // `env_prefix` + the flag name in upper case with '-' as '_' (lists
  // comma-separated), e.g. MP_EGRESS_IP. A list given by a later source
  // replaces the earlier one. Errors name the source: "config x.json: key
  // \"listen\": ...", "environment MP_LISTEN: ...", "--listen: ...".
  // `getenv` is the environment (null: none); only a main passes
  // ProcessEnvironment().
  absl::StatusOr<std::vector<std::string>> ParseWithSources(const std::vector<std::string>& args,
                                                            absl::string_view env_prefix, const GetEnv& getenv);

  bool help_requested() const { return help_requested_; }
  std::string Help() const;

 private:
  struct Flag {
    std::string name;
    std::string help;
    std::string default_text;
    bool is_bool = false;
    std::function<absl::Status(absl::string_view)> set;
    std::function<void()> clear;  // lists: forget earlier values
  };
  void Add(absl::string_view name, absl::string_view help, std::string default_text, bool is_bool,
           std::function<absl::Status(absl::string_view)> set,
           std::function<void()> clear = nullptr);
  Flag* Find(absl::string_view name);
  absl::Status ApplyFile(const std::string& path);

  std::string program_;
  std::string summary_;
  std::vector<Flag> flags_;
  bool help_requested_ = false;
};

// "HOST:PORT" (HOST may be empty, an IPv4 address or a name; port 0..65535).
struct HostPort {
  std::string host;
  int port = 0;
  std::string ToString() const;
};
absl::StatusOr<HostPort> ParseHostPort(absl::string_view text, absl::string_view what);

// Runs a main body: prints a non-OK status as "<program>: error: <message>" and
// turns it into exit code 2 for bad input (kInvalidArgument, kNotFound) or 1.
int ExitCodeFor(absl::string_view program, const absl::Status& status);

}  // namespace marketprism::common
