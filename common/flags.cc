#include "common/flags.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include <nlohmann/json.hpp>

namespace marketprism::common {

GetEnv ProcessEnvironment() {
  return [](const char* name) -> const char* { return std::getenv(name); };
}

FlagSet::FlagSet(std::string program, std::string summary)
    : program_(std::move(program)), summary_(std::move(summary)) {}

void FlagSet::Add(absl::string_view name, absl::string_view help, std::string default_text,
                  bool is_bool, std::function<absl::Status(absl::string_view)> set,
                  std::function<void()> clear) {
  flags_.push_back(Flag{std::string(name), std::string(help), std::move(default_text), is_bool,
                        std::move(set), std::move(clear)});
}

FlagSet::Flag* FlagSet::Find(absl::string_view name) {
  for (Flag& f : flags_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

void FlagSet::String(absl::string_view name, std::string* out, absl::string_view help) {
  Add(name, help, *out, false, [out](absl::string_view v) {
    *out = std::string(v);
    return absl::OkStatus();
  });
}

void FlagSet::Int(absl::string_view name, int64_t* out, absl::string_view help) {
  std::string n(name);
  Add(name, help, absl::StrCat(*out), false, [out, n](absl::string_view v) {
    if (!absl::SimpleAtoi(v, out)) {
      return absl::InvalidArgumentError(absl::StrCat("--", n, "=", v, ": not an integer"));
    }
    return absl::OkStatus();
  });
}

void FlagSet::Double(absl::string_view name, double* out, absl::string_view help) {
  std::string n(name);
  Add(name, help, absl::StrCat(*out), false, [out, n](absl::string_view v) {
    if (!absl::SimpleAtod(v, out)) {
      return absl::InvalidArgumentError(absl::StrCat("--", n, "=", v, ": not a number"));
    }
    return absl::OkStatus();
  });
}

void FlagSet::Bool(absl::string_view name, bool* out, absl::string_view help) {
  std::string n(name);
  Add(name, help, *out ? "true" : "false", true, [out, n](absl::string_view v) {
    if (!absl::SimpleAtob(v, out)) {
      return absl::InvalidArgumentError(absl::StrCat("--", n, "=", v, ": not true or false"));
    }
    return absl::OkStatus();
  });
}

void FlagSet::Duration(absl::string_view name, absl::Duration* out, absl::string_view help) {
  std::string n(name);
  Add(name, help, absl::FormatDuration(*out), false, [out, n](absl::string_view v) {
    if (!absl::ParseDuration(v, out)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", n, "=", v, ": not a duration (write it like 250ms, 2s or 5m)"));
    }
    return absl::OkStatus();
  });
}

void FlagSet::OptionalDuration(absl::string_view name, std::optional<absl::Duration>* out,
                               absl::string_view help) {
  std::string n(name);
  Add(name, help, out->has_value() ? absl::FormatDuration(**out) : "", false,
      [out, n](absl::string_view v) {
        absl::Duration d;
        if (!absl::ParseDuration(v, &d)) {
          return absl::InvalidArgumentError(
              absl::StrCat("--", n, "=", v, ": not a duration (write it like 250ms, 2s or 5m)"));
        }
        *out = d;
        return absl::OkStatus();
      });
}

void FlagSet::List(absl::string_view name, std::vector<std::string>* out, absl::string_view help) {
  Add(
      name, absl::StrCat(help, " (repeatable)"), "", false,
      [out](absl::string_view v) {
        out->push_back(std::string(v));
        return absl::OkStatus();
      },
      [out] { out->clear(); });
}

absl::StatusOr<std::vector<std::string>> FlagSet::Parse(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return Parse(args);
}

absl::StatusOr<std::vector<std::string>> FlagSet::Parse(const std::vector<std::string>& args) {
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      positional.insert(positional.end(), args.begin() + static_cast<long>(i) + 1, args.end());
      break;
    }
    if (!absl::StartsWith(arg, "--") || arg.size() == 2) {
      positional.push_back(arg);
      continue;
    }
    absl::string_view body = absl::string_view(arg).substr(2);
    if (body == "help" || body == "h") {
      help_requested_ = true;
      return positional;
    }
    std::string name(body.substr(0, body.find('=')));
    std::optional<std::string> value;
    if (body.find('=') != absl::string_view::npos) {
      value = std::string(body.substr(body.find('=') + 1));
    }
    const Flag* flag = nullptr;
    bool negated = false;
    for (const Flag& f : flags_) {
      if (f.name == name) flag = &f;
      if (f.is_bool && absl::StrCat("no-", f.name) == name && !value) {
        flag = &f;
        negated = true;
      }
    }
    if (flag == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", name, " (see ", program_, " --help)"));
    }
    if (!value) {
      if (flag->is_bool) {
        value = negated ? "false" : "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
      }
    }
    absl::Status st = flag->set(*value);
    if (!st.ok()) return st;
  }
  return positional;
}

absl::Status FlagSet::ApplyFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("config ", path, ": cannot open the file"));
  std::stringstream buf;
  buf << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(buf.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config ", path, ": not a JSON object of flag names to values"));
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    std::string where = absl::StrCat("config ", path, ": key \"", it.key(), "\"");
    Flag* flag = Find(it.key());
    if (flag == nullptr || it.key() == "config") {
      return absl::InvalidArgumentError(absl::StrCat(where, ": no such setting"));
    }
    std::vector<std::string> values;
    auto text = [](const nlohmann::json& v) -> std::optional<std::string> {
      if (v.is_string()) return v.get<std::string>();
      if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
      if (v.is_number_integer()) return absl::StrCat(v.get<int64_t>());
      if (v.is_number()) return absl::StrCat(v.get<double>());
      return std::nullopt;
    };
    if (it.value().is_array()) {
      if (!flag->clear) return absl::InvalidArgumentError(absl::StrCat(where, ": takes one value, not a list"));
      for (const auto& v : it.value()) {
        auto t = text(v);
        if (!t) return absl::InvalidArgumentError(absl::StrCat(where, ": list items must be strings"));
        values.push_back(*t);
      }
    } else {
      auto t = text(it.value());
      if (!t) return absl::InvalidArgumentError(absl::StrCat(where, ": must be a string, number or boolean"));
      values.push_back(*t);
    }
    if (flag->clear) flag->clear();
    for (const std::string& v : values) {
      absl::Status st = flag->set(v);
      if (!st.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", st.message()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> FlagSet::ParseWithSources(
    const std::vector<std::string>& args, absl::string_view env_prefix,
    const GetEnv& getenv_fn) {
  // The config file comes first, so find --config before anything else.
  std::string config;
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view a = args[i];
    if (absl::StartsWith(a, "--config=")) config = std::string(a.substr(9));
    if (a == "--config" && i + 1 < args.size()) config = args[i + 1];
  }
  if (config.empty()) {
    const char* env = getenv_fn ? getenv_fn(absl::StrCat(env_prefix, "CONFIG").c_str()) : nullptr;
    if (env != nullptr) config = env;
  }
  if (!config.empty()) {
    absl::Status st = ApplyFile(config);
    if (!st.ok()) return st;
  }
  for (Flag& f : flags_) {
    if (f.name == "config") continue;
    std::string var(env_prefix);
    for (char c : f.name) var.push_back(c == '-' ? '_' : absl::ascii_toupper(static_cast<unsigned char>(c)));
    const char* v = getenv_fn ? getenv_fn(var.c_str()) : nullptr;
    if (v == nullptr) continue;
    std::vector<std::string> values = {v};
    if (f.clear) {
      f.clear();
      values = absl::StrSplit(v, ',', absl::SkipEmpty());
    }
    for (const std::string& value : values) {
      absl::Status st = f.set(value);
      if (!st.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("environment ", var, ": ", st.message()));
      }
    }
  }
  // Lists given on the command line replace what the file or environment said.
  std::set<std::string> cleared;
  for (const std::string& a : args) {
    if (!absl::StartsWith(a, "--")) continue;
    std::string name = a.substr(2, a.find('=') == std::string::npos ? std::string::npos : a.find('=') - 2);
    Flag* f = Find(name);
    if (f != nullptr && f->clear && cleared.insert(name).second) f->clear();
  }
  return Parse(args);
}

std::string FlagSet::Help() const {
  std::string out = absl::StrCat(program_, ": ", summary_, "\n\nFlags:\n");
  for (const Flag& f : flags_) {
    std::string lhs = absl::StrCat("  --", f.name, f.is_bool ? "" : " VALUE");
    absl::StrAppendFormat(&out, "%-34s %s", lhs, f.help);
    if (!f.default_text.empty()) absl::StrAppend(&out, " [default: ", f.default_text, "]");
    absl::StrAppend(&out, "\n");
  }
  return out;
}

std::string HostPort::ToString() const { return absl::StrCat(host, ":", port); }

absl::StatusOr<HostPort> ParseHostPort(absl::string_view text, absl::string_view what) {
  size_t colon = text.rfind(':');
  if (colon == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " \"", text, "\": expected ADDR:PORT, e.g. 127.0.0.1:7001"));
  }
  HostPort hp;
  hp.host = std::string(text.substr(0, colon));
  int port = 0;
  if (!absl::SimpleAtoi(text.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " \"", text, "\": port must be a number in 0..65535"));
  }
  hp.port = port;
  return hp;
}

int ExitCodeFor(absl::string_view program, const absl::Status& status) {
  if (status.ok()) return 0;
  std::fprintf(stderr, "%s: error: %s\n", std::string(program).c_str(),
               std::string(status.message()).c_str());
  bool bad_input = status.code() == absl::StatusCode::kInvalidArgument ||
                   status.code() == absl::StatusCode::kNotFound;
  return bad_input ? 2 : 1;
}

}  // namespace marketprism::common
