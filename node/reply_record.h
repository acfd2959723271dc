// File: node/reply_record.h
//
// The record a leader's poll or health probe asks a node to write
// (DispatchRequest.record): built from the node's own answer, so the
// record reaches the node's sinks without the coordinator on the data path.
#pragma once

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/rules/rules.h"
#include "marketprism/v1/collector.pb.h"
#include "marketprism/v1/node.pb.h"

namespace marketprism::node {

// `replied` is the node's clock when the answer was ready; `rules` (may be
// null) gives the server-time field of a health probe's reply.
marketprism::v1::MarketEvent RecordOfReply(const marketprism::v1::DispatchRequest& req,
                                           const marketprism::v1::DispatchResponse& resp,
                                           const common::ExchangeRules* rules, absl::string_view node_id,
                                           absl::Time replied);

}  // namespace marketprism::node
