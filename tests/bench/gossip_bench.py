#!/usr/bin/env python3
"""mp-bench gossip: our gossip (mp-gossip-agent) beside Debian's serf, same machine, same run.

Runs each system in a private network namespace it creates and deletes (so
nftables counters and drops touch nothing else), members on 127.0.0.x.
Prints one JSON object per (system, members) result. Needs root, iproute2,
nftables; serf from Debian (`apt-get install serf`) for the side-by-side
(skipped, saying so, without it). Only processes started here are signalled.

usage: gossip_bench.py BIN_DIR [--members 10,30] [--loss-seconds 30] [--systems ours,serf]
Scenarios per size: join seen by all; idle bytes/s per member (nft output
counters, IP headers included, over 60 s); kill -9 detection at all (3 victims);
urgent record updates (a role change) seen by all (ours); usage summary
updated by every member once a second (bytes/s, and how long an update takes
to be seen by all; ours only: serf's tags are not meant for that); 5% and 10% receive-side loss for --loss-seconds each (false deaths);
one member CPU-starved (5% of one CPU, with a busy loop in its cgroup) for
--loss-seconds; 2 s freezes (SIGSTOP) of one member; a 60 s partition of a
third of the members and the time to full membership after the heal
(serf has no automatic merge but its reconnect every 30 s).
"""
import json, os, re, signal, statistics, subprocess, sys, threading, time

NS = f"mpgbench{os.getpid()}"
METER_SECONDS = 60  # traffic is counted over this long
lock = threading.Lock()


def ns(cmd, **kw):
    return subprocess.run(["ip", "netns", "exec", NS] + cmd, **kw)


def nft(*args):
    return ns(["nft"] + list(args), capture_output=True, text=True)


def addr(i):
    return f"127.0.0.{10 + i}"


class Cluster:
    """Members of one system; events as (monotonic t, reporter, kind, subject, usage value);
    publishes as (monotonic t, publisher, value)."""

    def __init__(self, system, bin_dir):
        self.system, self.bin_dir = system, bin_dir
        self.procs, self.events, self.publishes, self.updates = {}, [], [], []

    def start(self, i, join=True, publish=False):
        name = f"n{i}"
        if self.system == "ours":
            cmd = [f"{self.bin_dir}/mp-gossip-agent", "--name", name, "--gossip", f"{addr(i)}:7946",
                   "--cluster", "bench", "--stats-every", "0"]
            if publish:
                cmd += ["--publish-every", "1s"]
            if join and i != 0:
                cmd += ["--join", f"{addr(0)}:7946"]
        else:
            cmd = ["serf", "agent", "-node", name, "-bind", f"{addr(i)}:7946", "-rpc-addr",
                   f"127.0.0.1:{17000 + i}", "-profile", "lan", "-log-level", "debug"]
            if join and i != 0:
                cmd += ["-join", f"{addr(0)}:7946"]
        env = dict(os.environ, MP_LOG_LEVEL="error")
        p = subprocess.Popen(["ip", "netns", "exec", NS] + cmd, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, bufsize=1, env=env)
        self.procs[name] = p
        threading.Thread(target=self._read, args=(name, p), daemon=True).start()

    serf_pat = re.compile(r"serf: (EventMemberJoin|EventMemberFailed|EventMemberLeave|EventMemberUpdate): (\S+)")
    serf_kinds = {"EventMemberJoin": "joined", "EventMemberFailed": "dead", "EventMemberLeave": "left",
                  "EventMemberUpdate": "updated"}

    def _read(self, name, p):
        for line in p.stdout:
            t = time.monotonic()
            if self.system == "ours":
                if not line.startswith("{"):
                    continue
                try:
                    j = json.loads(line)
                except ValueError:
                    continue
                if j.get("event") == "published":
                    with lock:
                        self.publishes.append((j["t_ms"] / 1000.0, name, j.get("key", "usage"), j["value"]))
                elif "event" in j and "member" in j:
                    kind = {"alive": "joined"}.get(j["event"], j["event"])
                    records = j["member"].get("records", {})
                    with lock:
                        self.events.append((t, name, kind, j["member"]["name"], records.get("usage")))
                        if kind == "updated":
                            # The agent's own clock (same host): this reader may lag.
                            self.updates.append((j["t_ms"] / 1000.0, name, j["member"]["name"], records))
            else:
                m = self.serf_pat.search(line)
                if m:
                    with lock:
                        self.events.append((t, name, self.serf_kinds[m.group(1)], m.group(2), None))

    def live(self):
        return {n for n, p in self.procs.items() if p.poll() is None}

    def when_all(self, kind, subject, since, reporters, timeout):
        deadline = time.monotonic() + timeout
        got = {}
        while True:
            with lock:
                got = {}
                for (t, r, k, s, _) in self.events:
                    if t >= since and k == kind and s == subject and r in reporters and r not in got:
                        got[r] = t - since
            if len(got) == len(reporters) or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        return got

    def count(self, kind, since, subjects=None):
        with lock:
            return sum(1 for (t, r, k, s, _) in self.events
                       if t >= since and k == kind and (subjects is None or s in subjects))

    def count_by(self, kind, since, until, reporters=None, subjects=None):
        with lock:
            return sum(1 for (t, r, k, s, _) in self.events
                       if since <= t < until and k == kind and (reporters is None or r in reporters)
                       and (subjects is None or s in subjects))

    def update_seen_by_all(self, publishers, members, since, until, key="usage"):
        """Per usage value published by `publishers` in [since, until): seconds until every
        other member logged it or a newer one (a newer value replaces a queued older one);
        and how many were never seen by all."""
        num = lambda v: int(re.sub(r"[^0-9]", "", v) or 0)
        with lock:
            pubs = [p for p in self.publishes if p[1] in publishers and p[2] == key and since <= p[0] < until]
            seen = {}  # (subject, reporter) -> [(t, n)]
            for (t, r, s, recs) in self.updates:
                if key in recs:
                    seen.setdefault((s, r), []).append((t, num(recs[key])))
        out = []
        for (t, who, _, v) in pubs:
            n, last = num(v), 0
            for r in members - {who}:
                first = next((tt for (tt, nn) in seen.get((who, r), []) if nn >= n and tt >= t), None)
                if first is None:
                    last = None
                    break
                last = max(last, first - t)
            if last is not None:
                out.append(last)
        return out, len(pubs) - len(out)

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
        for p in self.procs.values():
            try:
                p.wait(timeout=5)
            except Exception:
                pass


def bytes_per_member(n, seconds):
    nft("add", "table", "inet", "gmeter")
    nft("add", "chain", "inet", "gmeter", "out", "{ type filter hook output priority 0; }")
    for i in range(n):
        nft("add", "rule", "inet", "gmeter", "out", "ip", "saddr", addr(i), "counter")
    time.sleep(seconds)
    data = json.loads(nft("-j", "list", "chain", "inet", "gmeter", "out").stdout)
    per = [e["counter"]["bytes"] / seconds for item in data["nftables"] if "rule" in item
           for e in item["rule"]["expr"] if "counter" in e]
    nft("delete", "table", "inet", "gmeter")
    busiest = max(range(len(per)), key=lambda i: per[i])  # rules were added in member order
    return round(statistics.mean(per), 1), round(max(per), 1), f"n{busiest}"


def p99(v):
    v = sorted(v)
    return round(v[min(len(v) - 1, int(0.99 * len(v)))], 3) if v else None


def starve(c, victim, live, seconds):
    """Puts `victim` (all its threads) and a busy loop in a CPU cgroup capped
    at 5% of one CPU for `seconds`; counts deaths and suspicions."""
    v1 = "/sys/fs/cgroup/cpu"
    if os.path.exists(v1 + "/cpu.cfs_quota_us"):
        cg, root = f"{v1}/mpgbench{os.getpid()}", v1
        os.makedirs(cg, exist_ok=True)
        with open(cg + "/cpu.cfs_period_us", "w") as f:
            f.write("100000")
        with open(cg + "/cpu.cfs_quota_us", "w") as f:
            f.write("5000")
    else:
        root = "/sys/fs/cgroup"
        cg = f"{root}/mpgbench{os.getpid()}"
        with open(root + "/cgroup.subtree_control", "w") as f:
            f.write("+cpu")
        os.makedirs(cg, exist_ok=True)
        with open(cg + "/cpu.max", "w") as f:
            f.write("5000 100000")
    pid = c.procs[victim].pid
    hog = subprocess.Popen(["python3", "-c", "while True: pass"])
    res = {}
    try:
        for p in (pid, hog.pid):
            with open(cg + "/cgroup.procs", "w") as f:
                f.write(str(p))
        t = time.monotonic()
        time.sleep(seconds)
        end = time.monotonic()
    finally:
        hog.kill()
        hog.wait()
        try:
            with open(root + "/cgroup.procs", "w") as f:
                f.write(str(pid))
        except OSError:
            pass
    # Deaths declared by the end of the phase plus the detection budget.
    time.sleep(3)
    end += 3
    healthy = live - {victim}
    key = f"cpu_starved_{seconds}s"
    res[key + "_deaths_of_starved"] = c.count_by("dead", t, end, subjects={victim})
    res[key + "_deaths_of_healthy"] = c.count_by("dead", t, end, subjects=healthy)
    res[key + "_deaths_reported_by_starved"] = c.count_by("dead", t, end, reporters={victim})
    res[key + "_suspicions_of_starved"] = c.count_by("suspect", t, end, subjects={victim})
    try:
        os.rmdir(cg)
    except OSError:
        pass
    return res


def run(system, n, bin_dir, loss_seconds):
    res = {"system": system, "members": n}
    subprocess.run(["ip", "netns", "add", NS], check=True)
    ns(["ip", "link", "set", "lo", "up"], check=True)
    c = Cluster(system, bin_dir)
    try:
        c.start(0, join=False)
        time.sleep(0.5)
        for i in range(1, n - 1):
            c.start(i)
            time.sleep(0.05)
        time.sleep(5 if system == "ours" else 8)
        # Join seen by all.
        t = time.monotonic()
        c.start(n - 1)
        others = {f"n{i}" for i in range(n - 1)}
        got = c.when_all("joined", f"n{n - 1}", t, others, 30)
        v = sorted(got.values())
        res["join_seen_by_all_s"] = round(v[-1], 3) if len(v) == len(others) else None
        res["join_p99_s"] = p99(v)
        time.sleep(4)
        if system == "ours":
            # Urgent record updates (a role or address change): 10 from each of
            # n1..n3, 0.5 s apart; seen by all when every other member has it.
            t = time.time()
            for _ in range(10):
                for w in ("n1", "n2", "n3"):
                    c.procs[w].send_signal(signal.SIGUSR2)
                time.sleep(0.5)
            time.sleep(2)
            lat, missing = c.update_seen_by_all({"n1", "n2", "n3"}, c.live(), t, time.time(), key="state")
            res["state_update_seen_by_all_p50_s"] = round(statistics.median(lat), 3) if lat else None
            res["state_update_seen_by_all_p99_s"] = p99(lat)
            res["state_updates_never_seen_by_all"] = missing
        # Over 60 s (two push-pull syncs per member on average): in a shorter
        # window a member that ran or answered a few more syncs than the
        # others reads well above its rate.
        mean, mx, busiest = bytes_per_member(n, METER_SECONDS)
        res["idle_bytes_per_s_per_member"] = mean
        res["idle_bytes_per_s_per_member_max"] = mx
        res["idle_busiest_member"] = busiest
        # Kill -9, three victims.
        kills = []
        for vi in (n - 1, n - 2, n - 3):
            victim = f"n{vi}"
            live = c.live() - {victim}
            t = time.monotonic()
            c.procs[victim].send_signal(signal.SIGKILL)
            got = c.when_all("dead", victim, t, live, 30)
            v = sorted(got.values())
            kills.append(round(v[-1], 3) if len(v) == len(live) else None)
            time.sleep(2)
        res["kill_dead_at_all_s"] = kills
        # Bring the victims back (new processes) for the rest.
        for vi in (n - 1, n - 2, n - 3):
            c.start(vi, publish=False)
        time.sleep(4)
        live = c.live()
        # Loss at the receivers.
        for pct in (5, 10):
            nft("add", "table", "inet", "chaos")
            nft("add", "chain", "inet", "chaos", "in", "{ type filter hook input priority 0; }")
            nft("add", "rule", "inet", "chaos", "in", "ip", "saddr", "127.0.0.0/8", "numgen", "random",
                "mod", "100", "<", str(pct), "drop")
            t = time.monotonic()
            time.sleep(loss_seconds)
            nft("delete", "table", "inet", "chaos")
            res[f"loss{pct}_{loss_seconds}s_false_deaths"] = c.count("dead", t, live)
            time.sleep(3)
        # One member CPU-starved: 5% of one CPU, shared with a busy loop.
        res.update(starve(c, "n2", live, loss_seconds))
        time.sleep(3)
        # 2 s freezes of one member.
        frozen = c.procs["n3"]
        t = time.monotonic()
        for _ in range(4):
            os.kill(frozen.pid, signal.SIGSTOP)
            time.sleep(2.0)
            os.kill(frozen.pid, signal.SIGCONT)
            time.sleep(4.0)
        res["freeze2s_x4_false_deaths"] = c.count("dead", t, live)
        if system == "ours":
            # Every member publishes its usage summary once a second.
            for i in range(1, n):
                c.procs[f"n{i}"].send_signal(signal.SIGKILL)
            time.sleep(0.5)
            c.procs["n0"].send_signal(signal.SIGKILL)
            time.sleep(0.5)
            c.events.clear()
            c.publishes.clear()
            c.updates.clear()
            c.start(0, join=False, publish=True)
            time.sleep(0.5)
            for i in range(1, n):
                c.start(i, publish=True)
                time.sleep(0.05)
            time.sleep(6)
            settled = time.time()  # every member has joined (agents' clocks: wall time)
            mean, mx, busiest = bytes_per_member(n, METER_SECONDS)
            res["usage_1s_bytes_per_s_per_member"] = mean
            res["usage_1s_bytes_per_s_per_member_max"] = mx
            res["usage_busiest_member"] = busiest
            # Updates seen by all: those published by n1..n3 once everyone had
            # joined, that had 3 s to spread (one never seen by all counts as
            # missing).
            lat, missing = c.update_seen_by_all({"n1", "n2", "n3"}, c.live(), settled, time.time() - 3)
            res["update_seen_by_all_p50_s"] = round(statistics.median(lat), 3) if lat else None
            res["update_seen_by_all_p99_s"] = p99(lat)
            res["update_seen_by_all_max_s"] = round(max(lat), 3) if lat else None
            res["updates_measured"] = len(lat)
            res["updates_never_seen_by_all"] = missing
        # Partition: a third of the members cut off for 60 s.
        live = c.live()
        cut = [addr(i) for i in range(n - n // 3, n)]
        rest = [addr(i) for i in range(0, n - n // 3)]
        nft("add", "table", "inet", "part")
        nft("add", "chain", "inet", "part", "in", "{ type filter hook input priority 0; }")
        nft("add", "rule", "inet", "part", "in", "ip", "saddr", "{" + ",".join(cut) + "}", "ip", "daddr",
            "{" + ",".join(rest) + "}", "drop")
        nft("add", "rule", "inet", "part", "in", "ip", "saddr", "{" + ",".join(rest) + "}", "ip", "daddr",
            "{" + ",".join(cut) + "}", "drop")
        time.sleep(60)
        t = time.monotonic()
        nft("delete", "table", "inet", "part")
        # Merged when every member has logged 'joined' for every member across.
        cut_names = {f"n{i}" for i in range(n - n // 3, n)}
        rest_names = live - cut_names
        deadline = t + 60
        merged = None
        while time.monotonic() < deadline:
            ok = True
            for s in cut_names:
                if len(c.when_all("joined", s, t, rest_names, 0)) < len(rest_names):
                    ok = False
                    break
            if ok:
                for s in rest_names:
                    if len(c.when_all("joined", s, t, cut_names, 0)) < len(cut_names):
                        ok = False
                        break
            if ok:
                merged = round(time.monotonic() - t, 3)
                break
            time.sleep(0.1)
        res["partition60s_merge_s"] = merged
    finally:
        c.stop()
        subprocess.run(["ip", "netns", "del", NS])
    print(json.dumps(res), flush=True)


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    bin_dir = sys.argv[1]
    opts = {"--members": "10,30", "--loss-seconds": "30", "--systems": "ours,serf"}
    a = sys.argv[2:]
    if any(x in ("-h", "--help") for x in a):
        print(__doc__)
        return 0
    if len(a) % 2 != 0:
        print(f"gossip bench: flag {a[-1]} needs a value", file=sys.stderr)
        return 2
    for k, v in zip(a[::2], a[1::2]):
        if k not in opts:
            print(f"gossip bench: unknown flag {k} (flags: {', '.join(opts)})", file=sys.stderr)
            return 2
        opts[k] = v
    try:
        sizes = [int(x) for x in opts["--members"].split(",")]
        loss_seconds = int(opts["--loss-seconds"])
    except ValueError:
        print("gossip bench: --members takes sizes like 10,30 and --loss-seconds a whole number", file=sys.stderr)
        return 2
    if any(n < 4 or n > 200 for n in sizes) or loss_seconds < 1:
        print("gossip bench: sizes must be 4..200 members (127.0.0.10 up) and --loss-seconds at least 1",
              file=sys.stderr)
        return 2
    systems = opts["--systems"].split(",")
    if not systems or any(x not in ("ours", "serf") for x in systems):
        print(f"gossip bench: --systems takes ours, serf or both, not {opts['--systems']}", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("gossip bench: needs root (network namespaces and nftables)", file=sys.stderr)
        return 2
    if "serf" in systems and subprocess.run(["which", "serf"], capture_output=True).returncode != 0:
        print(json.dumps({"system": "serf", "skipped": "serf not installed (apt-get install serf)"}))
        systems.remove("serf")
    # A SIGTERM (or ^C) unwinds like an error: members stopped, namespace deleted.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for n in sizes:
        for s in systems:
            run(s, n, bin_dir, loss_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
