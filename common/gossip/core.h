// File: common/gossip/core.h
//
// Cluster membership and failure detection: SWIM with the Lifeguard
// refinements, as a sans-I/O state machine. It opens no socket, reads no
// clock and starts no thread: the caller feeds it datagrams, stream replies,
// transport errors and the time, and takes back what to send and what
// happened (Outbox). The Linux driver is GossipAgent (agent.h); tests drive
// it on a virtual clock and network (tests/testing/gossip_sim.h).
//
// How it works, briefly:
//  * Probing in time slots. Slot r lasts `probe_interval`; in slot r the
//    member at position i of the sorted member list probes position
//    i + 1 + (r mod (n - 1)). With the same list everywhere, every member is
//    probed exactly once per slot, so a silent member is probed within about
//    one interval (random round-robin takes ~4.6 intervals at p99).
//  * A probe is a Ping; without an Ack within `probe_timeout`, k other
//    members are asked to probe (PingReq, answered Ack or Nack) and a TCP
//    ping goes out too; without any Ack by the end of the slot the target is
//    suspected.
//  * A crashed process on a live host is seen at once: the UDP probe draws an
//    ICMP port-unreachable (HandleUnreachable) and a refused TCP connection
//    confirms it (a process that restarted has a new id and answers
//    `wrong_target`). Confirmed crashes skip suspicion.
//  * Suspicion: a suspect is declared dead only after it has failed to answer
//    for the stall budget plus a grace, counted from the earliest unanswered
//    probe any accuser reports; with fewer independent accusers the wait
//    grows up to `suspicion_max_factor` times that (Lifeguard's dynamic
//    timeout). A member hears of its own suspicion (sent to it directly) and
//    refutes it by raising its incarnation.
//  * Local health (Lifeguard): failed probes that no relay Nacked, having to
//    refute, and a late tick (the process was frozen or starved) raise a
//    multiplier that stretches probe timeouts and intervals; just after a
//    late tick the member accuses no one.
//  * Dissemination: every packet piggybacks queued messages (BroadcastQueue:
//    membership news first, records keep a third of each packet); while
//    messages wait, a gossip round every `gossip_interval` sends them to
//    `gossip_fanout` random members. Its own join, refutations, leave and a
//    death its own probes established go straight to every member (up to
//    `critical_direct_limit`), urgent records to `direct_limit` members.
//  * Soft records (usage summaries, updated every second by every member)
//    do not gossip: a few copies per holder either miss members or cost
//    more than the traffic budget. In clusters of up to `soft_direct_limit`
//    others they go straight to every member. Beyond that, over a grid: the
//    sorted member list is cut into rows (PlanGrid); the owner sends the
//    record at once to its row, and every row member (the owner too) sends
//    what it received to its column, batched every `grid_interval`. Each
//    member gets each record once, two hops and at most one grid interval
//    after it was set. A copy lost on the way is replaced by the next value,
//    or fetched when a probe shows the holder behind, or by push-pull sync.
//  * After a partition: verdicts from members we held dead, and silences
//    longer than the budget that we (holding the member alive) did not
//    share, are doubted, not adopted; the accused is told and refutes.
//  * Records: each member's state as versioned key/value records; a newer
//    value replaces a queued older one. Push-pull sync over TCP (a digest,
//    answered with what is newer, then the other way) runs every
//    `sync_interval`, at a random phase of it, with a member chosen round
//    robin as probes are (so each member also answers one a round); with
//    seeds that are not alive every `seed_interval`; and with a dead member
//    that answers one of the pings sent to one every `reconnect_interval` —
//    so a healed partition merges by itself.
//
// Not thread-safe: one caller at a time (the agent's loop thread).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/gossip/broadcast_queue.h"
#include "marketprism/v1/gossip.pb.h"

namespace marketprism::common::gossip {

using MemberId = uint64_t;

enum class MemberState { kAlive, kSuspect, kDead, kLeft };
absl::string_view MemberStateName(MemberState s);

struct GossipOptions {
  std::string name;  // human name, e.g. "node-127.0.0.11"
  std::string addr;  // this member's gossip address as others dial it, "ip:port"
  absl::Duration probe_interval = absl::Milliseconds(200);
  absl::Duration probe_timeout = absl::Milliseconds(80);
  int indirect_probes = 3;
  // A member silent for less than this is never declared dead.
  absl::Duration stall_budget = absl::Seconds(2);
  // Added to the stall budget: room for a refutation to arrive.
  absl::Duration dead_grace = absl::Milliseconds(150);
  // With a single accuser the wait is this many times the budget; each
  // further independent accuser shortens it, down to the budget with
  // `suspicion_confirmations` more.
  double suspicion_max_factor = 1.5;
  int suspicion_confirmations = 2;
  absl::Duration gossip_interval = absl::Milliseconds(100);
  int gossip_fanout = 3;
  // Piggyback limits: mult * ceil(log10(n + 1)) transmissions.
  int retransmit_mult = 4;
  int soft_retransmit_mult = 1;  // for records passed on by members that got them by gossip
  int direct_limit = 64;  // joins and urgent records go straight to this many members
  // Soft records go straight to every member while there are at most this
  // many others (at 10 members ~1 KB/s each for a summary a second), over
  // the grid beyond.
  int soft_direct_limit = 16;
  // Grid members batch what they send on to their column this long: the
  // most a soft record waits there.
  absl::Duration grid_interval = absl::Milliseconds(250);
  // Deaths this member declares, its refutations and its leave go straight
  // to this many (everyone, in clusters of up to this size).
  int critical_direct_limit = 1024;
  absl::Duration sync_interval = absl::Seconds(30);
  absl::Duration seed_interval = absl::Seconds(5);
  absl::Duration reconnect_interval = absl::Seconds(1);
  absl::Duration dead_retention = absl::Hours(1);
  int max_local_health = 8;
  // A tick this late means this process was frozen or starved.
  absl::Duration lag_threshold = absl::Milliseconds(150);
  // Emit kUpdated events (each carries the member's view, records and all;
  // a simulation of 1000 members publishing every second can do without).
  bool report_updates = true;
  // Serialized GossipPacket bytes per datagram (the frame adds its own).
  size_t max_payload = 1150;
};

struct Record {
  uint64_t version = 0;
  std::string value;
};

// A member as this process sees it.
struct MemberView {
  MemberId id = 0;
  std::string name;
  std::string addr;
  uint32_t incarnation = 0;
  MemberState state = MemberState::kAlive;
  absl::Time state_since;
  absl::Time last_heard;  // last packet from it (InfinitePast: never)
  std::map<std::string, Record> records;
  bool self = false;
};

struct MemberEvent {
  enum class Kind { kJoined, kUpdated, kSuspect, kAlive, kDead, kLeft, kReaped };
  Kind kind;
  MemberView member;
  std::string reason;  // for kSuspect/kDead: why
};
absl::string_view MemberEventName(MemberEvent::Kind k);

struct Outbox {
  // A datagram: a GossipPacket from this member, its messages shared with
  // the broadcast queue (and, in a simulation, with the receivers).
  struct Packet {
    std::string addr;
    MemberId from = 0;
    std::vector<SharedMessage> messages;
    // Only acks: sent without `from` (the receiver knows the address).
    bool anonymous() const;
    v1::GossipPacket ToProto() const;
  };
  struct Stream {
    uint64_t id = 0;
    std::string addr;
    v1::StreamRequest request;
  };
  std::vector<Packet> packets;
  std::vector<Stream> streams;
  std::vector<MemberEvent> events;
  bool empty() const { return packets.empty() && streams.empty() && events.empty(); }
};

// Who a member sends soft records to on the grid (positions in the sorted
// list of `n` live members; `me` is its own). The list is cut into `rows`
// rows of nearly equal size, consecutive positions each; a member's column
// is its place in its row. `row`: the others in its row (a record it owns
// goes to them first). `column`: in every other row, the member at its
// column, to which it sends on what its row sent it; a row one longer than
// its own has a column its row lacks, which one member of its row covers
// (chosen by the longer row's number, to spread the load). Every member
// other than the owner is then reached exactly once, and no member sends
// to more than `rows` others of its column.
struct GridTargets {
  std::vector<size_t> row;
  std::vector<size_t> column;
};
GridTargets PlanGrid(size_t n, size_t me, size_t rows);
// Rows for `n` members batching every `interval`, for records updated about
// once a second: sqrt(n * interval / 1 s), which balances the datagrams a
// member sends to its row (one per record) against those to its column (one
// per column member per interval).
size_t GridRows(size_t n, absl::Duration interval);

// How a TCP request ended.
struct StreamResult {
  std::optional<v1::StreamResponse> response;
  bool refused = false;  // the connection was refused: nothing listens there
};

class Core {
 public:
  // `self` must be unique per process (random); `seed` drives every random
  // choice, so a run is reproducible.
  Core(GossipOptions options, MemberId self, absl::Time now, uint64_t seed);

  // Contacts `seeds` ("ip:port") now and every seed_interval while they are
  // not alive members.
  void Join(absl::Time now, std::vector<std::string> seeds);
  // Sets one of this member's records. Urgent ones go straight to every
  // member (up to direct_limit) and by gossip; soft ones (values that change
  // all the time, where only the latest matters) straight to everyone in a
  // small cluster and over the grid in a larger one, not by gossip.
  void SetRecord(absl::Time now, const std::string& key, std::string value, bool urgent = true);
  // Announces a graceful leave; probing stops.
  void Leave(absl::Time now);

  void HandlePacket(absl::Time now, const std::string& from_addr, v1::GossipPacket packet);
  void HandlePacket(absl::Time now, const std::string& from_addr, MemberId from,
                    const std::vector<SharedMessage>& messages);
  v1::StreamResponse HandleStream(absl::Time now, const std::string& from_addr,
                                  const v1::StreamRequest& request);
  void HandleStreamResult(absl::Time now, uint64_t id, StreamResult result);
  // An ICMP error says nothing listens at `addr` (UDP port unreachable).
  void HandleUnreachable(absl::Time now, const std::string& addr);
  // Runs what is due; call at NextWake() (or later: lateness is measured).
  void Tick(absl::Time now);
  absl::Time NextWake() const;

  Outbox TakeOutbox();

  std::vector<MemberView> Members() const;
  std::optional<MemberView> Member(MemberId id) const;
  std::optional<MemberState> StateOf(MemberId id) const;
  // The value of one of a member's records, if held.
  std::optional<std::string> RecordOf(MemberId id, const std::string& key) const;
  MemberId self_id() const { return self_; }
  uint32_t incarnation() const;
  int local_health() const { return lhm_; }
  size_t queued_broadcasts() const { return queue_.size(); }
  const GossipOptions& options() const { return options_; }

 private:
  struct Suspicion {
    absl::Time anchor;               // earliest unanswered probe reported
    std::set<MemberId> accusers;
    absl::Time last_notice;          // when we last told the suspect
    bool from_verdict = false;       // begun by a verdict we doubted
  };
  struct Entry {
    MemberId id = 0;
    std::string name;
    std::string addr;
    uint32_t incarnation = 0;
    MemberState state = MemberState::kAlive;
    absl::Time state_since;
    absl::Time last_heard = absl::InfinitePast();
    std::map<std::string, Record> records;
    uint64_t record_version = 0;
    std::optional<Suspicion> suspicion;
    bool confirming = false;          // a crash confirmation is out
    // Its records are behind what it told us it has: ask at catch_up_at.
    uint64_t catch_up_version = 0;
    absl::Time catch_up_at = absl::InfiniteFuture();
    absl::Time last_dead_notice = absl::InfinitePast();
    absl::Time revived_at = absl::InfinitePast();  // last dead -> alive
  };
  struct Probe {
    MemberId target = 0;
    uint32_t seq = 0;
    absl::Time sent;
    absl::Time direct_deadline;
    absl::Time end;
    bool indirect_sent = false;
    int expected_nacks = 0;
    int nacks = 0;
    bool acked = false;
  };
  struct PendingAck {
    enum class Kind { kProbe, kRelay, kReconnect } kind;
    MemberId member = 0;
    std::string origin_addr;  // relay: who asked
    uint32_t origin_seq = 0;
    absl::Time deadline;      // relay: when to Nack; others: when to forget
  };
  struct PendingStream {
    enum class Kind { kSync, kCatchUp, kPush, kFallbackPing, kConfirm } kind;
    MemberId member = 0;
    uint32_t seq = 0;
    std::string addr;
  };

  // ---- membership ---------------------------------------------------------
  Entry& SelfEntry();
  const Entry& SelfEntry() const;
  Entry* Find(MemberId id);
  Entry* FindByAddr(const std::string& addr);  // another member at `addr`
  void IndexAddr(MemberId id, const std::string& addr, bool in);
  MemberView View(const Entry& e) const;
  void Emit(MemberEvent::Kind kind, const Entry& e, std::string reason = "");
  void SetState(absl::Time now, Entry& e, MemberState s);
  // We hold `id` dead, or revived it only just now: it was cut off from us
  // (a partition, a freeze) and its word on others is out of date.
  bool CutOff(absl::Time now, MemberId id) const;
  // Applies what someone says of a member. `informant`: who said it (for
  // refutations to reach it); `from_sync`: learnt by push-pull.
  // `doubtful_source`: the sender was cut off from us until just now.
  void Apply(absl::Time now, const v1::MemberUpdate& u, const std::string& informant_addr,
             bool from_sync, bool doubtful_source = false);
  // `as_received`: the gossip message that carried it, queued on as it is.
  void ApplyRecord(absl::Time now, const v1::RecordUpdate& r, bool from_sync,
                   const SharedMessage* as_received = nullptr);
  // Asks `e` for its records if we stay behind `their_version` for `delay`
  // (0: a gossip interval).
  void CatchUp(absl::Time now, Entry& e, uint64_t their_version, absl::Duration delay = absl::ZeroDuration());
  // A probe's version hint waits longer: a record updated every second is
  // usually replaced by the next value, arriving by gossip, before then.
  static constexpr absl::Duration kProbeCatchUpDelay = absl::Seconds(2);
  void CatchUpTick(absl::Time now);
  void Suspect(absl::Time now, Entry& e, MemberId accuser, absl::Time anchor, bool local);
  // `confirmed`: a crash seen just now (refused connection, another
  // process at its address), not a silence. `direct`: the verdict goes
  // straight to every member (it is ours, from our own probes); otherwise
  // by gossip only (our timer ran out on others' accusation: every member
  // whose timer runs out telling everyone would be n^2 datagrams).
  void DeclareDead(absl::Time now, Entry& e, const std::string& reason, bool confirmed = false,
                   bool direct = true);
  void Refute(absl::Time now, uint32_t accused_incarnation, const std::string& informant_addr);
  void Confirm(absl::Time now, Entry& e);
  void MarkHeard(absl::Time now, MemberId id);
  void AddPending(uint32_t seq, PendingAck p);
  void ErasePending(absl::flat_hash_map<uint32_t, PendingAck>::iterator it);
  void SetInRing(MemberId id, bool in);
  // Up to k distinct alive members other than self and `except`, at random.
  std::vector<MemberId> SampleAlive(int k, MemberId except);
  int LiveCount() const { return static_cast<int>(ring_.size()); }
  // Ends every input: sends urgent news, notes when the next tick is due.
  void Finish();

  // ---- messages -----------------------------------------------------------
  v1::MemberUpdate UpdateOf(const Entry& e) const;
  v1::GossipMessage MemberMessage(const Entry& e, MemberId accuser = 0, uint32_t silent_ms = 0) const;
  v1::GossipMessage RecordMessage(const Entry& e, const std::string& key) const;
  int Limit(bool soft) const;
  // How far news goes at once, besides being queued for piggybacking.
  enum class Reach { kGossip, kDirect, kEveryone };
  void Broadcast(v1::GossipMessage m, Reach reach, bool soft = false);
  void Broadcast(SharedMessage m, Reach reach, bool soft = false);
  // Sends `messages` to `addr` (in as many packets as they need), filling
  // the last with queued broadcasts.
  void Send(const std::string& addr, std::vector<v1::GossipMessage> messages);
  void Send(const std::string& addr, const std::vector<SharedMessage>& messages);
  // A soft record of ours: to everyone in a small cluster, else over the grid.
  void SpreadSoft(absl::Time now, const Entry& me, const std::string& key);
  GridTargets Grid() const;  // this member's targets in the present ring
  // Queues `m` (SPREAD_DONE) for this member's column, replacing an older
  // value of the same record.
  void QueueForColumn(absl::Time now, SharedMessage m);
  void GridTick(absl::Time now);
  void FlushUrgent();
  void StartStream(const std::string& addr, v1::StreamRequest request, PendingStream p);
  // A push-pull request; with `only`, asks about that one member.
  v1::StreamRequest SyncRequest(const Entry* only = nullptr) const;
  v1::MemberEntry SelfWithRecords() const;  // this member and all its records
  std::vector<v1::DigestEntry> Digest() const;
  // Entries the holder of `digest` lacks; `partial`: only about the members in it.
  std::vector<v1::MemberEntry> NewerThan(const google::protobuf::RepeatedPtrField<v1::DigestEntry>& digest,
                                         bool partial) const;
  int TellDoubted(absl::Time now, const google::protobuf::RepeatedPtrField<v1::DigestEntry>& digest);
  // `from`: the member that sent them.
  void MergeEntries(absl::Time now, const google::protobuf::RepeatedPtrField<v1::MemberEntry>& entries,
                    const std::string& from_addr, MemberId from);

  // ---- timers ---------------------------------------------------------------
  void ProbeTick(absl::Time now);
  void StartProbe(absl::Time now, MemberId target);
  void FinishProbe(absl::Time now);
  void SuspicionTick(absl::Time now);
  absl::Time DeadAt(const Entry& e) const;
  int Confirmations() const;
  absl::Duration SpreadTime() const;
  void GossipTick(absl::Time now);
  void MaintenanceTick(absl::Time now);
  absl::Time NextSyncRound(absl::Time now) const;
  MemberId SyncPeer(absl::Time now) const;  // this round's sync partner (0: none)
  // In round r, the member i + 1 + (r mod (n - 1)) + skip places after this
  // one (position i) in the ring, wrapping; needs n >= 2. Probes and syncs
  // choose their partners so.
  MemberId RoundRobin(int64_t round, int64_t skip) const;
  absl::Duration Scaled(absl::Duration d) const { return d * (lhm_ + 1); }
  void RaiseHealth(int by);
  absl::Time NextSlotStart(absl::Time now) const;

  GossipOptions options_;
  MemberId self_;
  std::mt19937_64 rng_;
  // Node-based: entries stay put while others are added. Never iterated in
  // hash order where the order could show (runs must be reproducible).
  absl::node_hash_map<MemberId, Entry> members_;
  absl::flat_hash_map<std::string, std::vector<MemberId>> by_addr_;  // members at each address
  // When the earliest suspicion is due (NextWake); reset when it may change.
  mutable std::optional<absl::Time> suspicion_wake_;
  absl::Time last_revival_ = absl::InfinitePast();  // a member last went dead -> alive
  std::set<MemberId> suspects_;
  std::set<MemberId> gone_;  // dead or left, not yet reaped
  std::set<MemberId> catch_ups_;  // members whose records we must ask for
  absl::Time catch_up_wake_ = absl::InfiniteFuture();  // the earliest catch_up_at (or earlier)
  // Alive and suspect members (self included unless it left), sorted by id.
  std::vector<MemberId> ring_;
  BroadcastQueue queue_;
  std::vector<SharedMessage> urgent_;    // to direct_limit members
  std::vector<SharedMessage> critical_;  // to critical_direct_limit members
  std::vector<std::string> urgent_extra_addrs_;  // also send the urgent batch here
  std::vector<SharedMessage> column_batch_;  // soft records for our grid column
  absl::Time column_flush_at_ = absl::InfiniteFuture();
  Outbox out_;
  bool left_ = false;
  // Told everyone of our join; a member that joined through no one (the
  // first) has nothing to announce: those who join through it learn of it.
  bool announced_ = true;

  uint32_t next_seq_ = 1;
  uint64_t next_stream_ = 1;
  std::optional<Probe> probe_;
  absl::Time next_probe_at_;
  absl::flat_hash_map<uint32_t, PendingAck> pending_;
  std::set<std::pair<absl::Time, uint32_t>> pending_deadlines_;  // (deadline, seq) of each
  absl::flat_hash_map<uint64_t, PendingStream> streams_;

  int lhm_ = 0;
  absl::Time quiet_until_ = absl::InfinitePast();
  absl::Time expected_wake_ = absl::InfiniteFuture();

  absl::Time next_gossip_;
  absl::Time next_sync_;        // the next sync: a round's, or an extra one sooner
  absl::Time next_round_sync_;  // this member's next sync round
  int64_t sync_phase_us_ = 0;   // where in each sync interval its rounds fall (random)
  absl::Time next_seed_;
  absl::Time next_reconnect_;
  absl::Time next_reap_;
  std::vector<std::string> seeds_;
  absl::flat_hash_map<std::string, absl::Time> unknown_synced_;  // addr -> when
  // When we last sent our present self to a member holding an old doubt.
  absl::flat_hash_map<MemberId, absl::Time> last_self_notice_;
};

}  // namespace marketprism::common::gossip
