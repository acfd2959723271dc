// File: node/sinks/nats_writer.cc
#include "node/sinks/nats_writer.h"

#include <nats/nats.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

#include "node/sinks/record_format.h"

namespace marketprism::node {

struct NatsAckHandler {
  static void OnError(jsCtx* /*js*/, jsPubAckErr* pae, void* closure) {
    auto* w = static_cast<NatsWriter*>(closure);
    absl::MutexLock lock(&w->ack_mu_);
    ++w->failed_acks_;
    w->last_ack_error_ = pae->ErrText != nullptr ? pae->ErrText : natsStatus_GetText(pae->Err);
  }
};

namespace {

absl::Status NatsError(absl::string_view what, natsStatus s) {
  const char* last = nats_GetLastError(nullptr);
  return absl::UnavailableError(
      absl::StrCat("nats ", what, ": ", natsStatus_GetText(s), last != nullptr && *last ? ": " : "",
                   last != nullptr ? last : ""));
}

}  // namespace

absl::StatusOr<NatsOptions> ParseNatsSpec(absl::string_view spec) {
  NatsOptions o;
  std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(spec, absl::MaxSplits('?', 1));
  for (absl::string_view url : absl::StrSplit(parts.first, ',', absl::SkipEmpty())) {
    if (!absl::StartsWith(url, "nats://") || url.size() <= 7) {
      return absl::InvalidArgumentError(absl::StrCat("nats sink \"", spec, "\": \"", url, "\" is not nats://HOST:PORT"));
    }
    o.servers.emplace_back(url);
  }
  if (o.servers.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("nats sink \"", spec, "\": no server (nats://HOST:PORT)"));
  }
  for (absl::string_view kv : absl::StrSplit(parts.second, '&', absl::SkipEmpty())) {
    std::pair<std::string, std::string> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    absl::Duration d;
    if (p.first == "stream" && !p.second.empty() && p.second.find_first_of(". *>") == std::string::npos) {
      o.stream = p.second;
    } else if (p.first == "format" && (p.second == "json" || p.second == "protobuf")) {
      o.json = p.second == "json";
    } else if (p.first == "duplicates" && absl::ParseDuration(p.second, &d) && d > absl::ZeroDuration()) {
      o.duplicate_window = d;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("nats sink \"", spec, "\": unknown or bad parameter \"", kv,
                                                     "\" (stream=NAME, format=protobuf|json, duplicates=DURATION)"));
    }
  }
  return o;
}

std::vector<std::string> NatsWriter::StreamSubjects() {
  return {"trade.>", "orderbook.>", "book_ticker.>", "ticker.>", "kline.>", "gap.>", "poll.>", "exchange_health.>"};
}

NatsWriter::NatsWriter(NatsOptions options) : options_(std::move(options)) {}

NatsWriter::~NatsWriter() { Disconnect(); }

void NatsWriter::Close() { Disconnect(); }

void NatsWriter::Disconnect() {
  if (js_ != nullptr) jsCtx_Destroy(js_), js_ = nullptr;
  if (nc_ != nullptr) {
    natsConnection_Close(nc_);
    natsConnection_Destroy(nc_);
    nc_ = nullptr;
  }
}

absl::Status NatsWriter::Connect() {
  if (nc_ != nullptr && natsConnection_Status(nc_) != NATS_CONN_STATUS_CLOSED) return absl::OkStatus();
  Disconnect();
  const std::string where = absl::StrJoin(options_.servers, ",");
  natsOptions* opts = nullptr;
  natsStatus s = natsOptions_Create(&opts);
  std::vector<const char*> urls;
  for (const std::string& u : options_.servers) urls.push_back(u.c_str());
  if (s == NATS_OK) s = natsOptions_SetServers(opts, urls.data(), static_cast<int>(urls.size()));
  if (s == NATS_OK) s = natsOptions_SetTimeout(opts, 2000);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts, -1);  // for ever, once connected
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(opts, 250);
  if (s == NATS_OK) s = natsConnection_Connect(&nc_, opts);
  natsOptions_Destroy(opts);
  if (s != NATS_OK) {
    nc_ = nullptr;
    return NatsError(where, s);
  }
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = absl::ToInt64Milliseconds(options_.timeout);
  jo.PublishAsync.ErrHandler = &NatsAckHandler::OnError;
  jo.PublishAsync.ErrHandlerClosure = this;
  jo.PublishAsync.MaxPending = 65536;
  s = natsConnection_JetStream(&js_, nc_, &jo);
  if (s != NATS_OK) {
    Disconnect();
    return NatsError(where, s);
  }
  jsStreamInfo* si = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  s = js_GetStreamInfo(&si, js_, options_.stream.c_str(), nullptr, &code);
  if (s == NATS_OK) {
    absl::Status updated = AddMissingSubjects(si);
    jsStreamInfo_Destroy(si);
    if (!updated.ok()) Disconnect();
    return updated;
  }
  if (s != NATS_NOT_FOUND && code != JSStreamNotFoundErr) {
    Disconnect();
    return NatsError(absl::StrCat(where, " stream ", options_.stream), s);
  }
  std::vector<std::string> subjects = StreamSubjects();
  std::vector<const char*> subject_ptrs;
  for (const std::string& x : subjects) subject_ptrs.push_back(x.c_str());
  jsStreamConfig sc;
  jsStreamConfig_Init(&sc);
  sc.Name = options_.stream.c_str();
  sc.Subjects = subject_ptrs.data();
  sc.SubjectsLen = static_cast<int>(subject_ptrs.size());
  sc.Storage = js_FileStorage;
  sc.Duplicates = absl::ToInt64Nanoseconds(options_.duplicate_window);
  s = js_AddStream(&si, js_, &sc, nullptr, &code);
  if (s != NATS_OK) {
    Disconnect();
    return NatsError(absl::StrCat(where, " creating stream ", options_.stream, " (JetStream error ", code, ")"), s);
  }
  jsStreamInfo_Destroy(si);
  return absl::OkStatus();
}

absl::Status NatsWriter::AddMissingSubjects(jsStreamInfo* si) {
  // A stream made by an older release lacks the newer record types' subjects.
  std::vector<std::string> have;
  for (int i = 0; i < si->Config->SubjectsLen; ++i) have.emplace_back(si->Config->Subjects[i]);
  std::vector<std::string> missing;
  for (const std::string& x : StreamSubjects()) {
    if (std::find(have.begin(), have.end(), x) == have.end()) missing.push_back(x);
  }
  if (missing.empty()) return absl::OkStatus();
  std::vector<std::string> all = have;
  all.insert(all.end(), missing.begin(), missing.end());
  std::vector<const char*> ptrs;
  for (const std::string& x : all) ptrs.push_back(x.c_str());
  const char** own = si->Config->Subjects;
  const int own_len = si->Config->SubjectsLen;
  si->Config->Subjects = ptrs.data();
  si->Config->SubjectsLen = static_cast<int>(ptrs.size());
  jsStreamInfo* updated = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s = js_UpdateStream(&updated, js_, si->Config, nullptr, &code);
  // The config is the library's to free, with its own array: give it back.
  si->Config->Subjects = own;
  si->Config->SubjectsLen = own_len;
  if (s != NATS_OK) {
    return NatsError(absl::StrCat(absl::StrJoin(options_.servers, ","), " adding subjects ", absl::StrJoin(missing, " "),
                                  " to stream ", options_.stream, " (JetStream error ", code, ")"),
                     s);
  }
  jsStreamInfo_Destroy(updated);
  return absl::OkStatus();
}

absl::Status NatsWriter::Write(const std::vector<v1::MarketEvent>& batch) {
  absl::Status connected = Connect();
  if (!connected.ok()) return connected;
  {
    absl::MutexLock lock(&ack_mu_);
    failed_acks_ = 0;
  }
  std::string payload;
  for (const v1::MarketEvent& e : batch) {
    payload = options_.json ? RecordJson(e) : e.SerializeAsString();
    std::string subject = NatsSubject(e);
    natsMsg* msg = nullptr;
    natsStatus s = natsMsg_Create(&msg, subject.c_str(), nullptr, payload.data(), static_cast<int>(payload.size()));
    if (s == NATS_OK && !options_.json) {
      s = natsMsgHeader_Set(msg, "Content-Type", "application/x-protobuf; proto=marketprism.v1.MarketEvent");
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = e.key().c_str();
    if (s == NATS_OK) s = js_PublishMsgAsync(js_, &msg, &po);
    natsMsg_Destroy(msg);  // nothing when the library took it
    if (s != NATS_OK) return NatsError(absl::StrCat("publishing ", subject), s);
  }
  jsPubOptions wait;
  jsPubOptions_Init(&wait);
  wait.MaxWait = absl::ToInt64Milliseconds(options_.timeout);
  natsStatus s = js_PublishAsyncComplete(js_, &wait);
  if (s != NATS_OK) {
    natsMsgList pending;
    if (js_PublishAsyncGetPendingList(&pending, js_) == NATS_OK) natsMsgList_Destroy(&pending);
    return NatsError(absl::StrCat(absl::StrJoin(options_.servers, ","), ": acknowledgements"), s);
  }
  absl::MutexLock lock(&ack_mu_);
  if (failed_acks_ > 0) {
    return absl::UnavailableError(absl::StrCat("nats ", absl::StrJoin(options_.servers, ","), ": ", failed_acks_,
                                               " of ", batch.size(), " records refused: ", last_ack_error_));
  }
  return absl::OkStatus();
}

}  // namespace marketprism::node
