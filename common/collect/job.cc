#include "common/collect/job.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace marketprism::common {

namespace {

using Json = nlohmann::json;

constexpr struct {
  Channel channel;
  absl::string_view name;
} kChannels[] = {{Channel::kTrades, "trades"}, {Channel::kBook, "book"},   {Channel::kBookTicker, "book_ticker"},
                 {Channel::kTicker, "ticker"}, {Channel::kKline, "kline"}, {Channel::kPoll, "poll"}};

// The kline intervals an exchange offers: Binance and OKX all of these,
// Deribit's chart resolutions (1, 3, 5, 15, 30, 60, 120, 360, 720 minutes
// and 1D) all but 4h and 1w.
constexpr absl::string_view kIntervals[] = {"1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d", "1w"};

std::vector<absl::string_view> IntervalsOf(Family family) {
  std::vector<absl::string_view> out;
  for (absl::string_view i : kIntervals) {
    if (family != Family::kDeribit || (i != "4h" && i != "1w")) out.push_back(i);
  }
  return out;
}

// The depth of a book's REST snapshot when the job names none: the most the
// exchange's endpoint returns at its lowest price tier that still covers
// what the diff stream touches (Binance depth 1000: weight 50; OKX books 400).
int DefaultDepth(Family family) {
  switch (family) {
    case Family::kBinance:
      return 1000;
    case Family::kOkx:
      return 400;
    case Family::kDeribit:
      return 0;  // the WebSocket subscription sends the full book first
  }
  return 0;
}

bool NameChar(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'; }
bool SymbolChar(char c) { return NameChar(c) || c == ':' || c == '/'; }

absl::Status Bad(const v1::Job& job, absl::string_view problem) {
  return absl::InvalidArgumentError(
      absl::StrCat("job \"", job.name().empty() ? "(unnamed)" : job.name(), "\": ", problem));
}

}  // namespace

absl::StatusOr<Channel> ParseChannel(absl::string_view name) {
  std::vector<std::string> names;
  for (const auto& c : kChannels) {
    if (c.name == name) return c.channel;
    names.emplace_back(c.name);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown channel \"", name, "\" (channels: ", absl::StrJoin(names, ", "), ")"));
}

absl::string_view ChannelName(Channel c) {
  for (const auto& k : kChannels) {
    if (k.channel == c) return k.name;
  }
  return "?";
}

bool IsStream(Channel c) { return c != Channel::kPoll; }

absl::Status ValidateJob(const RulesBook& rules, v1::Job& job) {
  if (job.name().empty()) return Bad(job, "\"name\" is required");
  if (job.name().size() > 64) return Bad(job, "\"name\" is longer than 64 characters");
  for (char c : job.name()) {
    if (!NameChar(c)) return Bad(job, "\"name\" may hold only letters, digits, '-', '_' and '.'");
  }
  const ExchangeRules* ex = rules.Find(job.exchange());
  if (ex == nullptr) {
    return Bad(job, absl::StrCat("unknown exchange \"", job.exchange(), "\" (the rules have ",
                                 absl::StrJoin(rules.ExchangeNames(), ", "), ")"));
  }
  absl::StatusOr<Channel> channel = ParseChannel(job.channel());
  if (!channel.ok()) return Bad(job, channel.status().message());
  if (job.redundancy() == 0) job.set_redundancy(1);
  if (job.redundancy() != 1 && job.redundancy() != 2) return Bad(job, "\"redundancy\" must be 1 or 2");
  std::set<std::string> seen;
  for (const std::string& s : job.symbols()) {
    if (s.empty() || s.size() > 64) return Bad(job, "a symbol must be 1 to 64 characters");
    for (char c : s) {
      if (!SymbolChar(c)) return Bad(job, absl::StrCat("symbol \"", s, "\" has a character symbols do not have"));
    }
    if (!seen.insert(s).second) return Bad(job, absl::StrCat("symbol \"", s, "\" is listed twice"));
  }
  if (*channel == Channel::kPoll) {
    if (job.symbols_size() > 0 || job.all_symbols()) {
      return Bad(job, "a poll names its symbol in \"params\", not in \"symbols\"");
    }
    if (job.path().empty() || job.path()[0] != '/') return Bad(job, "a poll needs a \"path\" starting with '/'");
    if (job.every_ms() < 1000) return Bad(job, "a poll needs \"every\" of at least 1s");
    QueryParams query(job.params().begin(), job.params().end());
    absl::StatusOr<Cost> cost = ex->Price("GET", job.path(), query);
    if (!cost.ok()) return Bad(job, absl::StrCat("cannot price GET ", job.path(), ": ", cost.status().message()));
    if (job.redundancy() != 1) return Bad(job, "a poll runs once per period: \"redundancy\" must be 1");
    if (job.has_priority() && (job.priority() < -1000 || job.priority() > 1000)) {
      return Bad(job, "\"priority\" must be within [-1000, 1000]");
    }
    return absl::OkStatus();
  }
  if (!job.path().empty() || job.params_size() > 0 || job.every_ms() != 0 || job.has_priority()) {
    return Bad(job, "\"path\", \"params\", \"every\" and \"priority\" belong to a poll");
  }
  if (ex->websocket().paths.empty()) {
    return Bad(job, absl::StrCat(job.exchange(), " has no WebSocket rules in the rules file: it cannot stream"));
  }
  if (job.symbols_size() == 0 && !job.all_symbols()) return Bad(job, "name \"symbols\" or set \"all_symbols\"");
  if (job.symbols_size() > 0 && job.all_symbols()) return Bad(job, "\"symbols\" and \"all_symbols\" exclude each other");
  if (*channel == Channel::kKline) {
    std::vector<absl::string_view> offered = IntervalsOf(ex->family());
    if (std::find(offered.begin(), offered.end(), job.interval()) == offered.end()) {
      return Bad(job, absl::StrCat("a ", job.exchange(), " kline needs an \"interval\" of ", absl::StrJoin(offered, ", ")));
    }
  } else if (!job.interval().empty()) {
    return Bad(job, "\"interval\" belongs to a kline");
  }
  if (*channel == Channel::kBook) {
    if (job.depth() < 0) return Bad(job, "\"depth\" must not be negative");
    if (job.depth() == 0) job.set_depth(DefaultDepth(ex->family()));
  } else if (job.depth() != 0) {
    return Bad(job, "\"depth\" belongs to a book");
  }
  return absl::OkStatus();
}

namespace {

absl::StatusOr<v1::Job> JobFromJson(const Json& j, size_t index) {
  v1::Job job;
  std::string where = absl::StrCat("jobs[", index, "]");
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(where, ": must be an object"));
  auto text = [&](const char* key, std::string* out) -> absl::Status {
    if (!j.contains(key)) return absl::OkStatus();
    if (!j[key].is_string()) return absl::InvalidArgumentError(absl::StrCat(where, ".", key, ": must be a string"));
    *out = j[key].get<std::string>();
    return absl::OkStatus();
  };
  static const std::set<std::string> kKeys = {"name",   "exchange", "channel", "symbols", "all_symbols", "redundancy",
                                              "interval", "path",   "params",  "every",   "depth",      "priority"};
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!kKeys.count(it.key())) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": unknown field \"", it.key(), "\" (fields: ",
                                                     absl::StrJoin(kKeys, ", "), ")"));
    }
  }
  MP_RETURN_IF_ERROR(text("name", job.mutable_name()));
  MP_RETURN_IF_ERROR(text("exchange", job.mutable_exchange()));
  MP_RETURN_IF_ERROR(text("channel", job.mutable_channel()));
  MP_RETURN_IF_ERROR(text("interval", job.mutable_interval()));
  MP_RETURN_IF_ERROR(text("path", job.mutable_path()));
  if (j.contains("symbols")) {
    if (!j["symbols"].is_array()) return absl::InvalidArgumentError(absl::StrCat(where, ".symbols: must be a list"));
    for (const Json& s : j["symbols"]) {
      if (!s.is_string()) return absl::InvalidArgumentError(absl::StrCat(where, ".symbols: must hold strings"));
      job.add_symbols(s.get<std::string>());
    }
  }
  if (j.contains("all_symbols")) {
    if (!j["all_symbols"].is_boolean()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".all_symbols: must be true or false"));
    }
    job.set_all_symbols(j["all_symbols"].get<bool>());
  }
  for (const char* key : {"redundancy", "depth", "priority"}) {
    if (!j.contains(key)) continue;
    if (!j[key].is_number_integer() || j[key].get<int64_t>() < INT32_MIN || j[key].get<int64_t>() > INT32_MAX) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".", key, ": must be an integer"));
    }
    int v = static_cast<int>(j[key].get<int64_t>());
    if (std::string(key) == "redundancy") {
      job.set_redundancy(v);
    } else if (std::string(key) == "depth") {
      job.set_depth(v);
    } else {
      job.set_priority(v);
    }
  }
  if (j.contains("params")) {
    if (!j["params"].is_object()) return absl::InvalidArgumentError(absl::StrCat(where, ".params: must be an object"));
    for (auto it = j["params"].begin(); it != j["params"].end(); ++it) {
      if (!it.value().is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ".params.", it.key(), ": must be a string"));
      }
      (*job.mutable_params())[it.key()] = it.value().get<std::string>();
    }
  }
  if (j.contains("every")) {
    absl::Duration every;
    if (!j["every"].is_string() || !absl::ParseDuration(j["every"].get<std::string>(), &every)) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".every: must be a duration such as \"30s\""));
    }
    job.set_every_ms(absl::ToInt64Milliseconds(every));
  }
  return job;
}

}  // namespace

absl::StatusOr<std::vector<v1::Job>> ParseJobs(absl::string_view text, absl::string_view origin,
                                               const RulesBook& rules) {
  auto fail = [&](const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat(origin, ": ", s.message()));
  };
  Json doc = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return fail(absl::InvalidArgumentError("not valid JSON"));
  if (!doc.is_object() || !doc.contains("jobs") || !doc["jobs"].is_array()) {
    return fail(absl::InvalidArgumentError("must be an object with a \"jobs\" list"));
  }
  std::vector<v1::Job> jobs;
  std::set<std::string> names;
  for (size_t i = 0; i < doc["jobs"].size(); ++i) {
    absl::StatusOr<v1::Job> job = JobFromJson(doc["jobs"][i], i);
    if (!job.ok()) return fail(job.status());
    if (absl::Status s = ValidateJob(rules, *job); !s.ok()) return fail(s);
    if (!names.insert(job->name()).second) {
      return fail(absl::InvalidArgumentError(absl::StrCat("job \"", job->name(), "\" is defined twice")));
    }
    jobs.push_back(*std::move(job));
  }
  return jobs;
}

absl::StatusOr<std::vector<v1::Job>> LoadJobsFile(const std::string& path, const RulesBook& rules) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read the jobs file"));
  std::stringstream text;
  text << in.rdbuf();
  return ParseJobs(text.str(), path, rules);
}

absl::string_view StreamEndpoint(absl::string_view exchange, Channel c) {
  return exchange == "okx" && c == Channel::kKline ? "business" : "";
}

std::string UnitKeyOf(const v1::MarketEvent& e) {
  if (e.has_kline()) return absl::StrCat(e.exchange(), "/", e.channel(), "_", e.kline().interval(), "/", e.symbol());
  return absl::StrCat(e.exchange(), "/", e.channel(), "/", e.symbol());
}

std::vector<UnitSpec> SplitIntoUnits(const v1::Job& job, const std::vector<std::string>& listed) {
  absl::StatusOr<Channel> channel = ParseChannel(job.channel());
  if (!channel.ok()) return {};
  UnitSpec base;
  base.job = job.name();
  base.exchange = job.exchange();
  base.channel = *channel;
  base.redundancy = job.redundancy() == 0 ? 1 : job.redundancy();
  base.interval = job.interval();
  base.depth = job.depth();
  base.every = absl::Milliseconds(job.every_ms());
  if (*channel == Channel::kPoll) {
    base.key = absl::StrCat(job.exchange(), "/poll/", job.name());
    return {base};
  }
  std::string channel_key(ChannelName(*channel));
  if (*channel == Channel::kKline) absl::StrAppend(&channel_key, "_", job.interval());
  std::vector<UnitSpec> out;
  std::set<std::string> seen;
  auto add = [&](const std::string& symbol) {
    if (!seen.insert(symbol).second) return;
    UnitSpec u = base;
    u.symbol = symbol;
    u.key = absl::StrCat(job.exchange(), "/", channel_key, "/", symbol);
    out.push_back(std::move(u));
  };
  if (job.all_symbols()) {
    for (const std::string& s : listed) add(s);
  } else {
    for (const std::string& s : job.symbols()) add(s);
  }
  return out;
}

}  // namespace marketprism::common
