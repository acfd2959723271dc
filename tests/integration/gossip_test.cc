// Gossip between real processes (mp-gossip-agent) on loopback: every member
// owns an address in 127.0.0.0/8 and a port picked free at start.
//  * kill -9: dead at every other member within a second;
//  * SIGSTOP for less than the stall budget: never declared dead;
//  * 10% of datagrams dropped at the receivers (nftables on INPUT): no
//    false death;
//  * a partition (nftables) and its heal: membership whole again by itself;
//  * key rotation while running, and a member with the wrong key kept out.
// The nftables cases need root and nft; they are skipped (saying why)
// without them. Each test ends only the processes and tables it created.
#include <signal.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/wait.h"

namespace marketprism::testing {
namespace {

using nlohmann::json;

const std::string kKeyA(64, 'a');
const std::string kKeyB(64, 'b');

struct Member {
  std::string name;
  std::string addr;  // ip:port as bound
  std::unique_ptr<Subprocess> proc;

  std::string ip() const { return addr.substr(0, addr.find(':')); }
  std::string port() const { return addr.substr(addr.find(':') + 1); }

  // Every JSON line printed so far.
  std::vector<json> Lines() const {
    std::vector<json> out;
    for (absl::string_view l : absl::StrSplit(proc->Output(), '\n')) {
      if (l.empty() || l.front() != '{') continue;
      json j = json::parse(l, nullptr, /*allow_exceptions=*/false);
      if (!j.is_discarded()) out.push_back(std::move(j));
    }
    return out;
  }
  // Events `kind` about member `subject`.
  std::vector<json> Events(const std::string& kind, const std::string& subject) const {
    std::vector<json> out;
    for (json& j : Lines()) {
      if (j.value("event", "") == kind && j["member"].value("name", "") == subject) out.push_back(j);
    }
    return out;
  }
  // The state it holds `subject` in: the last event about it.
  std::string StateOf(const std::string& subject) const {
    std::string state = "unknown";
    for (json& j : Lines()) {
      if (j.contains("member") && j["member"].value("name", "") == subject) {
        state = j["member"].value("state", "unknown");
      }
    }
    return state;
  }
  // How many times `text` occurs in its output so far.
  int Count(const std::string& text) const {
    std::string out = proc->Output();
    int n = 0;
    for (size_t at = out.find(text); at != std::string::npos; at = out.find(text, at + 1)) ++n;
    return n;
  }
  // Asks for its member table (SIGUSR1) and returns, by member name, when it
  // last heard from each (Unix ms, -1: never). Empty if no table came in 2 s.
  std::map<std::string, int64_t> LastHeard() const {
    auto tables = [&] {
      std::vector<json> out;
      for (json& j : Lines()) {
        if (j.contains("members")) out.push_back(std::move(j));
      }
      return out;
    };
    size_t before = tables().size();
    proc->Signal(SIGUSR1);
    std::map<std::string, int64_t> heard;
    if (!WaitUntil([&] { return tables().size() > before; }, absl::Seconds(2))) return heard;
    std::vector<json> all = tables();
    for (const json& m : all.back()["members"]) {
      heard[m.value("name", "")] = m.value("last_seen_ms", int64_t{-1});
    }
    return heard;
  }
};

class GossipProcessTest : public ::testing::Test {
 protected:
  // Members get 127.0.<subnet>.<1..>; each test its own subnet.
  Member& Start(const std::string& name, int host, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {BinDir() + "/mp-gossip-agent", "--name", name, "--gossip",
                                     absl::StrCat("127.0.", Subnet(), ".", host, ":0")};
    if (!members_.empty()) {
      argv.push_back("--join");
      argv.push_back(members_.front()->addr);
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto proc = Subprocess::Start(argv);
    EXPECT_TRUE(proc.ok()) << proc.status();
    auto m = std::make_unique<Member>();
    m->name = name;
    m->proc = std::move(*proc);
    auto line = m->proc->WaitForLine("\"started\"", absl::Seconds(5));
    EXPECT_TRUE(line.ok()) << m->proc->Output();
    if (line.ok()) m->addr = json::parse(*line)["addr"].get<std::string>();
    members_.push_back(std::move(m));
    return *members_.back();
  }

  virtual int Subnet() const = 0;

  bool AllAlive(absl::Duration timeout) {
    return WaitUntil(
        [&] {
          for (auto& a : members_) {
            if (!a->proc->Running()) continue;
            for (auto& b : members_) {
              if (a != b && b->proc->Running() && a->StateOf(b->name) != "alive") return false;
            }
          }
          return true;
        },
        timeout);
  }

  int DeathsOf(const std::string& subject) {
    int n = 0;
    for (auto& m : members_) n += static_cast<int>(m->Events("dead", subject).size());
    return n;
  }

  std::vector<std::unique_ptr<Member>> members_;
};

// nftables rules in a table of this test's own, deleted at the end.
class NftTable {
 public:
  static bool Available() {
    return geteuid() == 0 && std::system("nft list tables > /dev/null 2>&1") == 0;
  }
  NftTable() : name_(absl::StrCat("mp_gossip_test_", getpid())) {
    Run(absl::StrCat("add table ip ", name_));
    Run(absl::StrCat("add chain ip ", name_, " input { type filter hook input priority 0 ; policy accept ; }"));
  }
  ~NftTable() { Run(absl::StrCat("delete table ip ", name_)); }
  bool Add(const std::string& rule) { return Run(absl::StrCat("add rule ip ", name_, " input ", rule)); }
  void Flush() { Run(absl::StrCat("flush chain ip ", name_, " input")); }
  // What each rule with a `counter` has counted, by the address after its
  // "ip daddr" (rules of the form "ip daddr A ... counter drop").
  std::map<std::string, int64_t> Counted() const {
    std::map<std::string, int64_t> out;
    FILE* f = popen(absl::StrCat("nft list chain ip ", name_, " input 2>/dev/null").c_str(), "r");
    if (f == nullptr) return out;
    char buf[512];
    while (std::fgets(buf, sizeof(buf), f) != nullptr) {
      std::vector<absl::string_view> w =
          absl::StrSplit(buf, absl::ByAnyChar(" \t\n"), absl::SkipEmpty());
      std::string addr;
      for (size_t i = 0; i + 2 < w.size(); ++i) {
        if (w[i] == "ip" && w[i + 1] == "daddr") addr = std::string(w[i + 2]);
        int64_t n = 0;
        if (w[i] == "counter" && w[i + 1] == "packets" && absl::SimpleAtoi(w[i + 2], &n)) {
          out[addr] = n;
        }
      }
    }
    pclose(f);
    return out;
  }

 private:
  static bool Run(const std::string& cmd) {
    return std::system(absl::StrCat("nft '", cmd, "' 2>&1").c_str()) == 0;
  }
  std::string name_;
};

class CrashTest : public GossipProcessTest {
  int Subnet() const override { return 61; }
};

TEST_F(CrashTest, KillNineIsDeadEverywhereWithinASecond) {
  for (int i = 1; i <= 4; ++i) Start(absl::StrCat("g", i), i);
  ASSERT_TRUE(AllAlive(absl::Seconds(5)));
  Member& victim = *members_.back();
  absl::Time killed = absl::Now();
  victim.proc->Signal(SIGKILL);
  ASSERT_TRUE(victim.proc->Wait(absl::Seconds(2)).ok());
  bool seen = WaitUntil(
      [&] {
        for (int i = 0; i < 3; ++i) {
          if (members_[i]->StateOf(victim.name) != "dead") return false;
        }
        return true;
      },
      absl::Seconds(3));
  ASSERT_TRUE(seen);
  for (int i = 0; i < 3; ++i) {
    int64_t at = members_[i]->Events("dead", victim.name).front()["t_ms"].get<int64_t>();
    int64_t ms = at - absl::ToUnixMillis(killed);
    std::printf("{\"observer\":\"%s\",\"crash_detected_ms\":%lld}\n", members_[i]->name.c_str(),
                static_cast<long long>(ms));
    EXPECT_LE(ms, 1000) << members_[i]->name;
  }
}

TEST_F(CrashTest, AGracefulLeaveIsLeftNotDead) {
  for (int i = 5; i <= 7; ++i) Start(absl::StrCat("g", i), i);
  ASSERT_TRUE(AllAlive(absl::Seconds(5)));
  members_.back()->proc->Signal(SIGTERM);
  ASSERT_TRUE(members_.back()->proc->Wait(absl::Seconds(3)).ok());
  EXPECT_TRUE(WaitUntil(
      [&] { return members_[0]->StateOf("g7") == "left" && members_[1]->StateOf("g7") == "left"; },
      absl::Seconds(2)));
  EXPECT_EQ(DeathsOf("g7"), 0);
}

class StallTest : public GossipProcessTest {
  int Subnet() const override { return 62; }
};

TEST_F(StallTest, AMemberFrozenForLessThanTheBudgetIsNeverDead) {
  for (int i = 1; i <= 4; ++i) Start(absl::StrCat("s", i), i);
  ASSERT_TRUE(AllAlive(absl::Seconds(5)));
  Member& frozen = *members_.back();
  // These sleeps are the behaviour under test, not synchronisation: a freeze
  // of 1.5 s (under the 2 s budget), then 3 s awake, twice. The 3 s is also
  // the wait-and-see: a suspicion the freeze began ends in a death at most
  // 1.5 x budget + grace (3.15 s) after it began, so a wrong one shows by then.
  for (int round = 0; round < 2; ++round) {
    frozen.proc->Signal(SIGSTOP);
    absl::SleepFor(absl::Milliseconds(1500));
    frozen.proc->Signal(SIGCONT);
    absl::SleepFor(absl::Seconds(3));
  }
  EXPECT_EQ(DeathsOf("s4"), 0);
  EXPECT_TRUE(AllAlive(absl::Seconds(1)));
}

TEST_F(StallTest, AMemberFrozenPastTheBudgetIsDeadThenBack) {
  for (int i = 5; i <= 7; ++i) Start(absl::StrCat("s", i), i);
  ASSERT_TRUE(AllAlive(absl::Seconds(5)));
  Member& frozen = *members_.back();
  absl::Time stopped = absl::Now();
  frozen.proc->Signal(SIGSTOP);
  EXPECT_TRUE(WaitUntil([&] { return members_[0]->StateOf("s7") == "dead"; }, absl::Seconds(5)));
  int64_t ms = members_[0]->Events("dead", "s7").empty()
                   ? -1
                   : members_[0]->Events("dead", "s7").front()["t_ms"].get<int64_t>() - absl::ToUnixMillis(stopped);
  std::printf("{\"silent_detected_ms\":%lld}\n", static_cast<long long>(ms));
  EXPECT_GE(ms, 2000);  // never before the stall budget
  EXPECT_LE(ms, 3000);  // budget + 1 s
  frozen.proc->Signal(SIGCONT);
  EXPECT_TRUE(AllAlive(absl::Seconds(5)));  // it refutes and is back
}

class NetworkFaultTest : public GossipProcessTest {
 protected:
  int Subnet() const override { return 63; }
  void SetUp() override {
    if (!NftTable::Available()) GTEST_SKIP() << "needs root and nft (nftables) to drop packets";
  }
};

TEST_F(NetworkFaultTest, TenPercentLossAtTheReceiversCausesNoFalseDeath) {
  for (int i = 1; i <= 5; ++i) Start(absl::StrCat("l", i), i);
  ASSERT_TRUE(AllAlive(absl::Seconds(5)));
  NftTable nft;
  // One rule per member, each counting what it drops.
  for (auto& m : members_) {
    ASSERT_TRUE(nft.Add(absl::StrCat("ip daddr ", m->ip(),
                                     " udp dport != 0 numgen random mod 10 == 0 counter drop")));
  }
  // The exposure is counted, not timed: every member must lose kLost of the
  // datagrams sent to it (in the 15 s this test used to sleep, the least-hit
  // member lost 17-30), however fast or slow the members run on a loaded
  // machine; and a rule that drops nothing now fails the test.
  constexpr int64_t kLost = 20;
  absl::Time start = absl::Now();
  std::map<std::string, int64_t> lost;
  bool exposed = WaitUntil(
      [&] {
        lost = nft.Counted();
        for (auto& m : members_) {
          if (lost[m->ip()] < kLost) return false;
        }
        return true;
      },
      absl::Seconds(60), absl::Milliseconds(200));
  std::string figures;
  for (const auto& [ip, n] : lost) {
    absl::StrAppend(&figures, figures.empty() ? "" : ",", "\"", ip, "\":", n);
  }
  std::printf("{\"loss_exposure_ms\":%lld,\"datagrams_lost\":{%s}}\n",
              static_cast<long long>(absl::ToInt64Milliseconds(absl::Now() - start)),
              figures.c_str());
  ASSERT_TRUE(exposed) << "the loss rules did not drop " << kLost << " datagrams to every member";
  for (int i = 1; i <= 5; ++i) EXPECT_EQ(DeathsOf(absl::StrCat("l", i)), 0);
  EXPECT_TRUE(AllAlive(absl::Seconds(1)));
}

TEST_F(NetworkFaultTest, APartitionHealsByItself) {
  for (int i = 11; i <= 14; ++i) Start(absl::StrCat("p", i), i);
  ASSERT_TRUE(AllAlive(absl::Seconds(5)));
  NftTable nft;
  std::string left = absl::StrCat("{ 127.0.", Subnet(), ".11, 127.0.", Subnet(), ".12 }");
  std::string right = absl::StrCat("{ 127.0.", Subnet(), ".13, 127.0.", Subnet(), ".14 }");
  ASSERT_TRUE(nft.Add(absl::StrCat("ip saddr ", left, " ip daddr ", right, " drop")));
  ASSERT_TRUE(nft.Add(absl::StrCat("ip saddr ", right, " ip daddr ", left, " drop")));
  // Each side declares the other dead.
  ASSERT_TRUE(WaitUntil(
      [&] {
        return members_[0]->StateOf("p13") == "dead" && members_[3]->StateOf("p11") == "dead";
      },
      absl::Seconds(6)));
  EXPECT_EQ(members_[0]->StateOf("p12"), "alive");
  absl::Time healed = absl::Now();
  nft.Flush();
  ASSERT_TRUE(AllAlive(absl::Seconds(10)));
  std::printf("{\"partition_merge_ms\":%lld}\n", static_cast<long long>(absl::ToInt64Milliseconds(absl::Now() - healed)));
}

class KeyTest : public GossipProcessTest {
 protected:
  int Subnet() const override { return 64; }
  std::string KeyFile(int i) { return ::testing::TempDir() + absl::StrCat("/gossip-keys-", getpid(), "-", i); }
  static void Write(const std::string& path, const std::vector<std::string>& keys) {
    std::string tmp = path + ".new";
    {
      std::ofstream f(tmp);
      for (const auto& k : keys) f << k << "\n";
    }
    std::rename(tmp.c_str(), path.c_str());
  }
  void TearDown() override {
    for (int i = 1; i <= 4; ++i) std::remove(KeyFile(i).c_str());
  }
  // Whether, within `timeout`, every member has heard from every other after
  // `t`: the frames each sealed with the keys it holds since then opened.
  bool AllHeardFromAllSince(absl::Time t, absl::Duration timeout) {
    int64_t since_ms = absl::ToUnixMillis(t);
    return WaitUntil(
        [&] {
          for (auto& a : members_) {
            std::map<std::string, int64_t> heard = a->LastHeard();
            for (auto& b : members_) {
              if (a != b && heard[b->name] <= since_ms) return false;
            }
          }
          return true;
        },
        timeout, absl::Milliseconds(100));
  }
};

TEST_F(KeyTest, RotatingTheKeyWhileRunningLosesNoOne) {
  for (int i = 1; i <= 3; ++i) {
    Write(KeyFile(i), {kKeyA});
    Start(absl::StrCat("k", i), i, {"--gossip-key-file", KeyFile(i)});
  }
  ASSERT_TRUE(AllAlive(absl::Seconds(5)));
  // Each step is applied member by member: B added, B made primary, A removed.
  // After each member has re-read its file, every member must hear from
  // every other: each mixed state on the way carries traffic both ways.
  int n = 0;
  for (const std::vector<std::string>& step :
       std::vector<std::vector<std::string>>{{kKeyA, kKeyB}, {kKeyB, kKeyA}, {kKeyB}}) {
    ++n;
    for (int i = 1; i <= 3; ++i) {
      Member& m = *members_[i - 1];
      int reloads = m.Count("key file changed");
      Write(KeyFile(i), step);
      ASSERT_TRUE(
          WaitUntil([&] { return m.Count("key file changed") > reloads; }, absl::Seconds(3)))
          << m.name << " re-reads its key file within a second (step " << n << ")";
      ASSERT_TRUE(AllHeardFromAllSince(absl::Now(), absl::Seconds(3)))
          << "someone is cut off after " << m.name << " took step " << n;
    }
  }
  for (int i = 1; i <= 3; ++i) EXPECT_EQ(DeathsOf(absl::StrCat("k", i)), 0);
  EXPECT_TRUE(AllAlive(absl::Seconds(1)));
  // A member still on the old key cannot get in: once the seed has refused
  // its frames, the seed does not know it and it has joined no one.
  Write(KeyFile(4), {kKeyA});
  Start("k4", 4, {"--gossip-key-file", KeyFile(4)});
  // The seed logs "dropped a stream frame from IP:PORT: ..." for each refused.
  std::string from_k4 = absl::StrCat(" from ", members_[3]->ip(), ":");
  ASSERT_TRUE(WaitUntil([&] { return members_[0]->Count(from_k4) > 0; }, absl::Seconds(5)))
      << "the seed refused nothing from k4 within 5 s";
  EXPECT_EQ(members_[0]->StateOf("k4"), "unknown");
  EXPECT_THAT(members_[3]->proc->Output(), ::testing::Not(::testing::HasSubstr("\"joined\"")));
}

TEST_F(KeyTest, WithoutAKeyItSaysSoLoudly) {
  Member& m = Start("k9", 9);
  EXPECT_TRUE(m.proc->WaitForLine("NO GOSSIP KEY CONFIGURED", absl::Seconds(2)).ok());
}

}  // namespace
}  // namespace marketprism::testing
