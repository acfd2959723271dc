// Make-before-break (collection.h): a copy moved off a node that can still
// run it keeps running there until the copies that replace it send records.
// One leading Collection on a fake clock; the Units it sends each node are
// kept here, and the nodes' records are fed to it by hand.
#include "coordinator/collection.h"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "coordinator/test_routing_parts.h"
#include "tests/testing/fake_clock.h"

namespace marketprism::coordinator {
namespace {

constexpr char kUnit[] = "binance_spot/book/BTCUSDT";

class CollectionHandoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const auto& [node, ip] : {std::pair{"n1", "10.0.0.1"}, std::pair{"n2", "10.0.0.2"}}) {
      parts_.scheduler->UpsertNode(node, ip, std::string(node) + ":1", "test", {"binance_spot"});
      parts_.scheduler->SetNodeClocks(node, {{"binance_spot", absl::ZeroDuration(), absl::Milliseconds(1)}});
    }
    CollectionOptions options;
    options.coordinator_id = "coord-a";
    collection_ = std::make_unique<Collection>(
        options, clock_, parts_.scheduler->rules(), *parts_.scheduler,
        [this](const std::string& node, const v1::CoordinatorMessage& m) {
          std::set<std::string>& keys = units_[node];
          keys.clear();
          for (const v1::UnitAssignment& a : m.units().units()) keys.insert(a.key());
          return true;
        },
        [](const v1::ExecuteRequest&, const v1::RecordAs&, absl::Time, Router::Done done) {
          done(absl::UnavailableError("none"));
        },
        [] {
          Leadership l;
          l.leading = true;
          l.term = 1;
          l.leader = "coord-a";
          return l;
        },
        [] { return int64_t{1}; });
    ASSERT_TRUE(collection_->Start().ok());
    v1::Job job;
    job.set_name("book");
    job.set_exchange("binance_spot");
    job.set_channel("book");
    job.add_symbols("BTCUSDT");
    std::optional<absl::StatusOr<v1::Job>> created;
    collection_->CreateJob(job, [&](absl::StatusOr<v1::Job> j) { created = std::move(j); });
    ASSERT_TRUE(created.has_value() && created->ok());
    Tick();
    ASSERT_TRUE(Holders().empty()) << "the first plan waits a second for the fleet to gather";
    clock_.AdvanceBy(absl::Seconds(1));
    ASSERT_EQ(Holders(), std::set<std::string>{Holder()});
  }

  void Tick() { clock_.AdvanceBy(absl::Milliseconds(100)); }

  // The nodes whose last Units hold kUnit.
  std::set<std::string> Holders() {
    std::set<std::string> out;
    for (const auto& [node, keys] : units_) {
      if (keys.contains(kUnit)) out.insert(node);
    }
    return out;
  }
  std::string Holder() {
    std::set<std::string> h = Holders();
    return h.empty() ? "" : *h.begin();
  }

  // A record of kUnit from `node`.
  void RecordFrom(const std::string& node) {
    v1::RecordBatch b;
    v1::MarketEvent* e = b.add_events();
    e->set_exchange("binance_spot");
    e->set_channel("book");
    e->set_symbol("BTCUSDT");
    e->mutable_book()->set_last_update_id(7);
    collection_->Observe(node, b);
  }

  // The states ListJobs shows for kUnit's copies, by node.
  std::map<std::string, std::string> States() {
    std::map<std::string, std::string> out;
    for (const v1::Job& j : collection_->ListJobs()) {
      for (const v1::Unit& u : j.units()) {
        for (const v1::UnitCopy& c : u.copies()) out[c.node_id()] = c.state();
      }
    }
    return out;
  }

  testing::FakeClock clock_;
  RoutingParts parts_{clock_};
  std::map<std::string, std::set<std::string>> units_;  // node -> unit keys last sent
  std::unique_ptr<Collection> collection_;
};

TEST_F(CollectionHandoverTest, ADrainingNodeKeepsItsCopyUntilTheReplacingCopySendsARecord) {
  std::string from = Holder(), to = from == "n1" ? "n2" : "n1";
  RecordFrom(from);
  ASSERT_TRUE(parts_.scheduler->SetDraining(from, true).ok());
  collection_->NodeGone();
  Tick();
  // Both run it: the new copy is placed, the old one not yet stopped.
  EXPECT_EQ(Holders(), (std::set<std::string>{"n1", "n2"}));
  EXPECT_EQ(States()[from], "handing over");
  EXPECT_EQ(States()[to], "placed");
  clock_.AdvanceBy(absl::Seconds(5));  // the new copy still syncing
  EXPECT_EQ(Holders(), (std::set<std::string>{"n1", "n2"}));
  RecordFrom(from);  // the old copy's records do not end the handover
  Tick();
  EXPECT_EQ(Holders(), (std::set<std::string>{"n1", "n2"}));

  RecordFrom(to);
  Tick();
  EXPECT_EQ(Holders(), std::set<std::string>{to});
  EXPECT_TRUE(units_[from].empty());
  EXPECT_EQ(States(), (std::map<std::string, std::string>{{to, "live"}}));
}

TEST_F(CollectionHandoverTest, ACopyNobodyTakesStopsAfterTheHandoverTimeout) {
  std::string from = Holder();
  ASSERT_TRUE(parts_.scheduler->SetDraining(from, true).ok());
  collection_->NodeGone();
  Tick();
  EXPECT_EQ(Holders(), (std::set<std::string>{"n1", "n2"}));
  clock_.AdvanceBy(absl::Seconds(29));
  EXPECT_TRUE(Holders().contains(from));
  clock_.AdvanceBy(absl::Seconds(1) + absl::Milliseconds(100));
  EXPECT_FALSE(Holders().contains(from)) << "30 s: the drain goes ahead";
}

TEST_F(CollectionHandoverTest, ASuspectNodeBridgesTooButADisconnectedOneCannot) {
  std::string from = Holder(), to = from == "n1" ? "n2" : "n1";
  parts_.scheduler->SetSuspect(from, true);
  collection_->NodeGone();
  Tick();
  EXPECT_EQ(Holders(), (std::set<std::string>{"n1", "n2"}));
  // Declared dead while handing over: nothing is kept for it.
  parts_.scheduler->DisconnectNode(from);
  collection_->NodeGone();
  Tick();
  EXPECT_EQ(States().count(from), 0u);
  EXPECT_TRUE(States().contains(to));
}

TEST_F(CollectionHandoverTest, AnUndrainedNodeHandsOverAllTheSameAndTheNewCopyStays) {
  std::string from = Holder(), to = from == "n1" ? "n2" : "n1";
  ASSERT_TRUE(parts_.scheduler->SetDraining(from, true).ok());
  collection_->NodeGone();
  Tick();
  ASSERT_EQ(Holders(), (std::set<std::string>{"n1", "n2"}));
  ASSERT_TRUE(parts_.scheduler->SetDraining(from, false).ok());
  collection_->NodeGone();
  Tick();
  // Placement is stable: the unit stays where the plan moved it, and the
  // old copy bridges until the new one is live.
  EXPECT_EQ(Holders(), (std::set<std::string>{"n1", "n2"}));
  RecordFrom(to);
  Tick();
  EXPECT_EQ(Holders(), std::set<std::string>{to});
}

TEST_F(CollectionHandoverTest, ANodeThatJoinsTakesItsShareMakeBeforeBreak) {
  // Twenty more books on the two nodes, then a third node: its share moves
  // to it, each old copy running until the new one sends a record.
  v1::Job job;
  job.set_name("more");
  job.set_exchange("binance_spot");
  job.set_channel("book");
  for (int i = 0; i < 20; ++i) job.add_symbols(absl::StrCat("S", i, "USDT"));
  std::optional<absl::StatusOr<v1::Job>> created;
  collection_->CreateJob(job, [&](absl::StatusOr<v1::Job> j) { created = std::move(j); });
  ASSERT_TRUE(created.has_value() && created->ok());
  Tick();
  parts_.scheduler->UpsertNode("n3", "10.0.0.3", "n3:1", "test", {"binance_spot"});
  parts_.scheduler->SetNodeClocks("n3", {{"binance_spot", absl::ZeroDuration(), absl::Milliseconds(1)}});
  collection_->NodeRegistered("n3");
  Tick();
  ASSERT_GE(units_["n3"].size(), 5u) << "the new node takes a share";
  for (const std::string& key : units_["n3"]) {
    int held = 0;
    for (const char* n : {"n1", "n2"}) held += units_[n].count(key) ? 1 : 0;
    EXPECT_EQ(held, 1) << key << ": the old copy runs on";
  }
  for (const std::string& key : std::set<std::string>(units_["n3"])) {
    absl::string_view symbol = absl::string_view(key).substr(key.rfind('/') + 1);
    v1::RecordBatch b;
    v1::MarketEvent* e = b.add_events();
    e->set_exchange("binance_spot");
    e->set_channel("book");
    e->set_symbol(std::string(symbol));
    e->mutable_book()->set_last_update_id(1);
    collection_->Observe("n3", b);
  }
  Tick();
  for (const std::string& key : units_["n3"]) {
    EXPECT_FALSE(units_["n1"].count(key) || units_["n2"].count(key)) << key << ": handed over, stopped";
  }
}

}  // namespace
}  // namespace marketprism::coordinator
