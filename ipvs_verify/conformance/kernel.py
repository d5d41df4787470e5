"""Run one scenario on the real kernel in the guest, step by step, and record what it did.

The scenario's clock is virtual whole seconds, as in the model; it is tied to real time: `wait: N`
really sleeps until N seconds later (plus a small slack, so a kernel timer due at that instant has
fired). What the model calls the environment runs here on the virtual clock: kube-proxy (a sync 1 s
after an endpoint change, the graceful-deletion check every 60 s from time 0), and the kubelet (a
deleted pod is destroyed when its grace period ends). kube-proxy's decisions read the kernel's own
counters (/proc/net/ip_vs, the columns of `ipvsadm -ln`); what they decide is the model's own
description of kube-proxy (model/graceful_termination.py, with the release's rs_deletable).

Client outcomes, from the client's socket: `connected` (the pod answered its name), `refused`
(ECONNREFUSED), `no-route` (EHOSTUNREACH), `dropped` (connect() not complete within 0.6 s: the first
SYN was dropped and the client waits for its 1 s retransmission), `queued` (not complete within 0.6 s while
the node resolves the address of the SYN's pod: a bridge pod network), `timed-out`, `broken` (no answer
on an established connection), `closed`; for UDP `answered` (the pod's name came back), `lost` (no
answer within 0.5 s), or the ICMP error. Client ports are bound explicitly (SO_REUSEADDR) so a
scenario's flow always uses the same source port.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from ipvs_verify.conformance.uml import Guest
from ipvs_verify.model import graceful_termination as gt
from ipvs_verify.model.config import Config
from ipvs_verify.model.tcp_states import SHORT
from ipvs_verify.scenario import MODIFIERS, Scenario

VIP = "10.96.0.10"
SYN_WINDOW = 0.6  # seconds: a connect() still pending after this had its SYN dropped (RTO is 1 s)
DGRAM_WAIT = 0.5  # seconds a UDP client waits for the answer before calling the datagram lost
HARNESS_STEPS = {"request", "connect", "send", "close", "datagram", "client_crash", "wait", "delete_pod", "add_pod",
                 "destroy_pod",
                 "crash_pod", "endpoint_gone", "sync", "check", "set_weight", "delete_dest", "add_dest",
                 "conntrack_insert"}
PACKET_STEPS = ("request", "connect", "send", "close", "datagram", "set_weight")
# the kernel's NUD states (include/uapi/linux/neighbour.h) as the model names them (model/state.py Neigh): DELAY
# and PROBE are one state there, and a FAILED entry is as good as none (the next packet resolves anew)
NEIGH_NAME = {"REACHABLE": "live", "STALE": "stale", "DELAY": "probing", "PROBE": "probing",
              "INCOMPLETE": "incomplete", "FAILED": "none"}
JIFFY_WAIT = 0.02  # seconds: 2 jiffies at HZ=100 (Debian's UML config)
FLUSH_WAIT = 0.05  # seconds for the 5.9+ expire_nodest_conn work after a dest deletion (1 jiffy + scheduling)
SLACK = 0.25  # seconds past each virtual instant before it is observed
HZ = 100  # CONFIG_HZ of Debian's UML kernel (/usr/share/doc/user-mode-linux/config.gz)
SYNC_DELAY = 1  # kube-proxy --ipvs-min-sync-period default (the model's Timing.sync_delay)
CHECK_INTERVAL = 60  # graceful_termination.go rsCheckDeleteInterval


@dataclass
class KernelStep:
    index: int
    line: int
    time: int
    what: str
    summary: str
    pod: str | None
    entry: dict[str, Any] | None
    dests: dict[str, dict[str, Any]]
    detail: str = ""
    events: list[str] = field(default_factory=list)  # what the harness did on the virtual clock
    # trace mode (bridge scenarios, or IPVS_VERIFY_TRACE=1): the node's conntrack entries of the step's
    # flow, its neighbours and counters after the step, and the samples taken while the step waited
    diag: dict[str, Any] | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)
    # bridge, TCP: the node's neighbour entry for each destroyed pod's address, in the model's words (NEIGH_NAME)
    neigh: dict[str, str] | None = None


@dataclass
class KernelRun:
    steps: list[KernelStep]
    seconds: float


# ------------------------------------------------------------------ parsing the kernel's IPVS tables
_CONN = re.compile(r"^(TCP|UDP)\s+([0-9A-F]{8})\s+([0-9A-F]{4})\s+([0-9A-F]{8})\s+([0-9A-F]{4})\s+([0-9A-F]{8})\s+"
                   r"([0-9A-F]{4})\s+(\S+)\s+(\d+)")
_DEST = re.compile(r"^\s+->\s+([0-9A-F]{8}):([0-9A-F]{4})\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)")
# ip_vs_proto_udp.c udp_state_name_table: IP_VS_UDP_S_NORMAL prints as "UDP"; the model calls it NORMAL
_STATE_NAMES = {("UDP", "UDP"): "NORMAL"}


def _ip(hexaddr: str) -> str:
    return ".".join(str(b) for b in bytes.fromhex(hexaddr))


def parse_conns(text: str) -> list[dict[str, Any]]:
    """/proc/net/ip_vs_conn (what `ipvsadm -lnc` prints), in table order: within a hash chain newest first."""
    out = []
    for line in text.splitlines():
        m = _CONN.match(line.strip())
        if m:
            out.append({"proto": m[1], "client": (_ip(m[2]), int(m[3], 16)), "vip": (_ip(m[4]), int(m[5], 16)),
                        "dest": _ip(m[6]), "state": _STATE_NAMES.get((m[1], m[8]), m[8]), "expires": int(m[9])})
    return out


_CT = re.compile(r"^ipv4\s+\d+\s+(\w+)\s+\d+\s+(\d+)\s+(?:([A-Z_0-9]+)\s+)?"
                 r"src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)(.*?)src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)(.*)$")


def parse_conntrack(line: str) -> dict[str, Any] | str:
    """One /proc/net/nf_conntrack line (every entry there is confirmed): protocol state, timeout left,
    original and reply tuples, status flags ([UNREPLIED], [ASSURED]); the raw line if it does not parse."""
    m = _CT.match(line)
    if not m:
        return line
    flags = re.findall(r"\[(\w+)\]", m[8] + m[13])
    return {"state": m[3] or m[1], "timeout": int(m[2]), "orig": f"{m[4]}:{m[6]}->{m[5]}:{m[7]}",
            "reply": f"{m[9]}:{m[11]}->{m[10]}:{m[12]}", "flags": flags}


def _mentions(line: str, addr: tuple[str, int]) -> bool:
    ip, port = addr
    return f"={ip} " in line and (f"sport={port} " in line or f"dport={port} " in line)


def parse_dests(text: str) -> dict[str, dict[str, int]]:
    """/proc/net/ip_vs real servers (the `ipvsadm -ln` columns): ip -> weight, active, inactive."""
    out = {}
    for line in text.splitlines():
        m = _DEST.match(line)
        if m:
            out[_ip(m[1])] = {"weight": int(m[4]), "active": int(m[5]), "inactive": int(m[6])}
    return out


# ------------------------------------------------------------------ the run
class KernelScenario:
    def __init__(self, guest: Guest, sc: Scenario, cfg: Config, tag: str) -> None:
        self.g = guest
        self.sc = sc
        self.cfg = cfg
        self.tag = tag
        scope = cfg.scope
        self.pods = list(scope.all_pods)
        self.listed = {p: p in scope.pods for p in self.pods}
        self.running = {p: p in scope.pods for p in self.pods}
        self.destroyed: set[str] = set()  # pods whose address is gone: the node's neighbour entry is compared
        self.graceful = {p: False for p in self.pods}
        self.flows = [f"client-{c + 1}:port-{p + 1}" for c in range(scope.clients) for p in range(scope.ports)]
        self.now = 0
        self.t0 = 0.0
        self.sync_at: int | None = None
        self.check_at = CHECK_INTERVAL
        self.grace_at: dict[str, int] = {}
        self.kp = cfg.kube_proxy
        sched = getattr(cfg, "scheduler", "rr")
        # the model's sh abstracts a client's address by its bucket (client_hash = client index):
        # the harness picks addresses that hash there
        self.client_ips = [sh_client_ip(c) if sched.startswith("sh") else f"10.0.0.{c + 2}"
                           for c in range(scope.clients)]
        # with sh-port the hash covers the source port: flow (c, p)'s port hashes to its flow index, as the
        # model abstracts it (model/scheduler.py SourceHashing)
        self.flow_ports = ({f"client-{c + 1}:port-{p + 1}": sh_port(self.client_ips[c], c * scope.ports + p, p)
                            for c in range(scope.clients) for p in range(scope.ports)}
                           if sched.endswith("-port") else {})
        self.proto = getattr(scope, "protocol", "tcp")  # the service's protocol (config.protocol)
        self.persistence: int = getattr(scope, "persistence", 0)  # sessionAffinity ClientIP: ipvsadm -p
        self.events: list[str] = []
        # entry -> (deadline bound, longest expiry, state)
        self.seen: dict[tuple[Any, ...], tuple[float, int, str]] = {}
        # trace mode: the bridge pod network, or IPVS_VERIFY_TRACE=1 for any scenario
        self.trace = sc.data.config.pod_network == "bridge" or os.environ.get("IPVS_VERIFY_TRACE") == "1"
        self.timeline: list[dict[str, Any]] = []
        self.syn_at: dict[str, float] = {}  # flow -> its last connect's SYN on the guest world's clock

    def ip(self, pod: str) -> str:
        return f"10.244.0.{self.pods.index(pod) + 2}"

    def pod_of(self, ip: str) -> str:
        m = re.fullmatch(r"10\.244\.0\.(\d+)", ip)
        i = int(m[1]) - 2 if m else -1
        return self.pods[i] if 0 <= i < len(self.pods) else ip

    def call(self, op: str, **kw: Any) -> dict[str, Any]:
        return self.g.call(op, tag=self.tag, **kw)

    def ipvsadm(self, *args: str) -> None:
        self.call("ipvsadm", args=list(args))
        if args[0] == "-d" and self.cfg.sysctls.expire_nodest_conn:
            # ip_vs_ctl.c __ip_vs_del_dest -> ip_vs_enqueue_expire_nodest_conns(): the flush runs from a
            # delayed work 1 jiffy later. The model fires that due flush before the next step (its fixed
            # due order); so does the harness, by letting a few jiffies pass (HZ=100 in Debian's UML).
            time.sleep(FLUSH_WAIT)

    def rs(self, pod: str) -> list[str]:
        return ["-u" if self.proto == "udp" else "-t", f"{VIP}:80", "-r", f"{self.ip(pod)}:80"]

    # -------------------------------------------------------------- setup and teardown
    def setup(self) -> None:
        sysctls = {k: v for k, v in self.cfg.sysctls.as_dict().items() if k != "conn_reuse_old_conntrack"}
        c = self.cfg.scope
        # kube-proxy's first sync adds the real servers in pod order (each at the list head: rr picks the last)
        self.call("setup", pods=self.pods, clients=c.clients, ports=c.ports, proto=self.proto, sysctls=sysctls,
                  nf_conntrack=self.cfg.nf_conntrack, up=list(c.pods), dests=[[self.ip(p), 1] for p in c.pods],
                  persistence=self.persistence, timeouts=self.timeouts(),
                  bridge=self.sc.data.config.pod_network == "bridge",
                  scheduler=getattr(self.cfg, "scheduler", "rr"),  # kube-proxy --ipvs-scheduler
                  invalid_drop=getattr(self.cfg, "invalid_drop", False),
                  client_ips=self.client_ips, flow_ports=self.flow_ports)
        self.t0 = time.monotonic()

    def timeouts(self) -> list[int] | None:
        """`ipvsadm --set TCP TCPFIN UDP` for the scenario's ipvs_timeouts (0 leaves one unchanged)."""
        t = getattr(self.sc.data.config, "ipvs_timeouts", None) or {}
        return [t.get("tcp", 0), t.get("tcpfin", 0), t.get("udp", 0)] if any(t.values()) else None

    def teardown(self) -> None:
        self.call("teardown")

    # -------------------------------------------------------------- observation
    def observe(self, flow: str | None) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]]]:
        st = self.call("state")
        entry = None
        conns = parse_conns(st["conns"])
        self._remember(conns)
        if flow is not None:
            addr = self.flow_addr(flow)
            for e in conns:
                if e["client"] == addr:
                    entry = {"state": e["state"], "dest": self.pod_of(e["dest"]), "expires_in": e["expires"]}
                    break  # the first of its chain is the newest (ip_vs_conn_hash: hlist_add_head_rcu)
        linked = parse_dests(st["dests"])
        dests = {}
        for p in self.pods:
            d = linked.get(self.ip(p))
            if d is not None:
                dests[p] = {**d, "deleted": False}
        return entry, dests

    @staticmethod
    def _key(e: dict[str, Any]) -> tuple[Any, ...]:
        return (e["proto"], e["client"], e["vip"], e["dest"])

    def _remember(self, conns: list[dict[str, Any]]) -> None:
        """Bound each entry's deadline from the kernel's readings: the expiry shown is whole seconds rounded
        down, so the deadline is before read time + shown + 1 s. Readings since its last re-arm tighten it.
        A new state is a re-arm with that state's timeout (ip_vs_conn_put after set_tcp_state): an
        ESTABLISHED entry's 900 s must not stand for its CLOSE_WAIT 60 s."""
        now = time.monotonic()
        seen = {}
        for e in conns:
            k, x = self._key(e), e["expires"]
            ub, top = now + x + 1, x
            old = self.seen.get(k)
            # not re-armed since: keep the bound. A late timer shows 0 (jiffies_delta_to_msecs clamps a past
            # deadline), which no re-arm (a whole timeout) shows.
            if old is not None and old[2] == e["state"] and (x == 0 or now + x < old[0]):
                ub, top = min(ub, old[0]), max(x, old[1])
            seen[k] = (ub, top, e["state"])
        self.seen = seen

    def settle_due_timers(self) -> None:
        """Let the entry timers that are due by now fire, as the model does between steps. The kernel's
        timer wheel fires a timer at the next tick of its level's granularity after the deadline
        (kernel/time/timer.c calc_index): a 120 s IPVS timer at HZ=100 up to 5.12 s late. An entry is
        certainly due when the time is past the bound `_remember` keeps from the kernel's readings; the
        harness then waits, up to that granularity, for it to go. Only the kernel's own
        readings are used here, never the model's."""
        # a fresh reading first: an entry re-armed since the last step (the orphan's FINs, C33) is not due
        self._remember(parse_conns(self.call("state")["conns"]))
        now = time.monotonic()
        due = {k: x for k, (ub, x, _) in self.seen.items() if now > ub}
        if not due:
            return
        until = now + max(wheel_granularity(x + 1) for x in due.values()) + 0.3
        while True:
            left = {self._key(e) for e in parse_conns(self.call("state")["conns"])} & set(due)
            if not left or time.monotonic() > until:
                break
            time.sleep(0.1)
        waited = time.monotonic() - now
        if waited > 0.05:
            self.events.append(f"{len(due)} due timer(s) fired after {waited:.1f} s (timer wheel)")

    def _tables(self) -> tuple[Any, ...]:
        st = self.call("state")
        conns = tuple(sorted((e["proto"], e["client"], e["vip"], e["dest"], e["state"]) for e in parse_conns(
            st["conns"])))
        return conns, tuple(sorted((ip, tuple(d.values())) for ip, d in parse_dests(st["dests"]).items()))

    def settle_jiffies(self) -> None:
        """Wait a few jiffies, then until two readings JIFFY_WAIT apart agree (entries and counters; the
        expiry countdown aside): work due at the next jiffy has run even if the guest was slow to get
        the CPU. Only the kernel's readings are used."""
        time.sleep(JIFFY_WAIT)
        before = self._tables()
        for _ in range(10):
            time.sleep(JIFFY_WAIT)
            now = self._tables()
            if now == before:
                return
            before = now

    def linked(self) -> dict[str, dict[str, int]]:
        d = parse_dests(self.call("state")["dests"])
        return {p: d[self.ip(p)] for p in self.pods if self.ip(p) in d}

    def flow_addr(self, flow: str) -> tuple[str, int]:
        c, p = flow.split(":")
        ip = self.client_ips[int(c.split("-")[1]) - 1]
        return ip, self.flow_ports.get(flow, 40000 + int(p.split("-")[1]) - 1)

    # -------------------------------------------------------------- kube-proxy and kubelet on the virtual clock
    def endpoints_changed(self) -> None:
        # informer event -> BoundedFrequencyRunner: syncProxyRules within --ipvs-min-sync-period
        if self.sync_at is None:
            self.sync_at = self.now + SYNC_DELAY

    def kp_views(self) -> tuple[gt.RsView, ...]:
        """kube-proxy's view of the real servers (model/graceful_termination.py), read from the kernel:
        linked and counters from `ipvsadm -ln`, desired and listed from the harness's kube-proxy state."""
        linked = self.linked()
        return tuple(gt.RsView(self.listed[p], p in linked, self.graceful[p], linked.get(p, {}).get("active", 0),
                               linked.get(p, {}).get("inactive", 0)) for p in self.pods)

    def kp_apply(self, ops: tuple[gt.RsOp, ...]) -> None:
        """kube-proxy's operations, as ipvsadm commands (what its netlink calls do) and its graceful list."""
        for o in ops:
            p = self.pods[o.pod]
            if o.op is gt.Op.ADD:
                self.ipvsadm("-a", *self.rs(p), "-m", "-w", str(o.weight))
                self.events.append(f"added {p}")
            elif o.op is gt.Op.QUIESCE:
                self.ipvsadm("-e", *self.rs(p), "-m", "-w", "0")
                self.events.append(f"quiesced {p}")
            elif o.op is gt.Op.DELETE:
                self.ipvsadm("-d", *self.rs(p))
                self.events.append(f"deleted {p}")
            else:
                self.graceful[p] = o.op is gt.Op.ENQUEUE

    def kp_sync(self, window: str | None = None) -> dict[str, Any] | None:
        """proxier.go syncEndpoint(), as the model decides it (graceful_termination.sync_endpoint). With a window,
        flow `window` connects between deleteRsFunc's read of the one real server it deletes after a read and
        that DeleteRealServer (the scenario's sync step checked there is one); returns the connect's result."""
        self.sync_at = None
        self.events.append("kube-proxy sync")
        views = self.kp_views()
        ops = gt.sync_endpoint(self.kp, self.proto == "udp", views)
        if window is None:
            self.kp_apply(ops)
            return None
        read = gt.read_deletes(self.kp, ops, views, False)[0]
        before, rest = gt.split_at_delete(ops, read)
        self.kp_apply(before)
        self.events.append(f"read {self.pods[read]}'s counters")
        r = self.call("connect", flow=window, plan="H", window=SYN_WINDOW)
        self.kp_apply(rest)
        return r

    def kp_check(self) -> None:
        """graceful_termination.go tryDeleteRs, every rsCheckDeleteInterval (graceful_termination.try_delete_rs)."""
        self.check_at += CHECK_INTERVAL
        self.events.append("kube-proxy check")
        self.kp_apply(gt.try_delete_rs(self.kp, self.proto == "udp", self.kp_views()))

    def destroy(self, pod: str) -> None:
        self.grace_at.pop(pod, None)
        self.running[pod] = False
        self.destroyed.add(pod)
        self.call("pod-down", pod=pod)
        self.events.append(f"destroyed {pod}")

    def _next_timer(self) -> tuple[int, int, str] | None:
        # the model's due order: SYNC, CHECK, GRACE_END (scenario._DUE_ORDER)
        cands: list[tuple[int, int, str]] = []
        if self.sync_at is not None:
            cands.append((self.sync_at, 0, "sync"))
        cands.append((self.check_at, 1, "check"))
        cands += [(t, 2, p) for p, t in sorted(self.grace_at.items())]
        return min(cands) if cands else None

    def fire_due(self) -> None:
        while True:
            nxt = self._next_timer()
            if nxt is None or nxt[0] > self.now:
                return
            self._fire(nxt)

    def _fire(self, timer: tuple[int, int, str]) -> None:
        _, kind, what = timer
        if kind == 0:
            self.kp_sync()
        elif kind == 1:
            self.kp_check()
        else:
            self.destroy(what)

    def sleep_until(self, v: int) -> None:
        left = self.t0 + v + SLACK - time.monotonic()
        if left > 0 and self.trace:  # the guest sleeps, sampling its tables every 50 ms
            r = self.call("watch", seconds=left, interval=0.05, timeout=left + 30)
            self.timeline += [self.compact(x) for x in r["samples"]]
            self.events.append(f"traced {r['seconds']:.2f} s in {r['iterations']} samples")
        elif left > 0:
            time.sleep(left)

    def compact(self, d: dict[str, Any]) -> dict[str, Any]:
        """A diag/watch sample, reduced to what concerns the scenario's flows, times after their SYN."""
        addrs = [self.flow_addr(f) for f in self.flows]
        out: dict[str, Any] = {}
        if "t" in d:
            out["t"] = d["t"]
            out["after_syn"] = {f: round(d["t"] - t, 3) for f, t in self.syn_at.items()}
        if "ipvs" in d:
            out["ipvs"] = [{"client": f"{e['client'][0]}:{e['client'][1]}", "state": e["state"],
                            "dest": self.pod_of(e["dest"]), "expires": e["expires"]}
                           for e in parse_conns("\n".join(d["ipvs"]))]
        if d.get("conntrack") is not None:
            out["conntrack"] = [parse_conntrack(ln) for ln in d["conntrack"] if any(_mentions(ln, a) for a in addrs)]
        for k in ("neigh", "ct_stat", "node_icmp", "client_icmp", "node_tcp", "client_tcp", "client_socks", "arp",
                  "client_syn_retrans", "finished",
                  "rearmed"):
            if d.get(k):
                out[k] = d[k]
        if "neigh" in out:
            out["neigh"] = {self.pod_of(ip): v for ip, v in out["neigh"].items()}
        return out

    def advance(self, seconds: int) -> None:
        target = self.now + seconds
        while True:
            nxt = self._next_timer()
            if nxt is not None and nxt[0] <= target:
                self.now = max(self.now, nxt[0])
                self.sleep_until(self.now)
                self._fire(nxt)
                continue
            self.now = target
            self.sleep_until(target)
            return

    # -------------------------------------------------------------- steps
    def run(self) -> KernelRun:
        start = time.monotonic()
        steps = []
        self.setup()
        try:
            for i, (step, line) in enumerate(zip(self.sc.data.steps, self.sc.lines, strict=True), 1):
                steps.append(self.run_step(i, line, step))
        finally:
            self.teardown()
        return KernelRun(steps, time.monotonic() - start)

    def run_step(self, i: int, line: int, step: Any) -> KernelStep:
        self.events = []
        self.timeline = []
        what = next(k for k, v in step.model_dump(exclude=set(MODIFIERS)).items()
                    if v is not None)
        summary, pod, detail = "none", None, ""
        flow: str | None = None
        before: dict[str, Any] | None = None
        if step.request or step.connect:
            flow = step.request or step.connect
            plan = "H" if step.connect else {"client": "C", "server": "S", "reset": "R"}[step.closer]
            before = self.observe(flow)[0]  # to tell a queued, challenged or dropped SYN apart
            r = self.call("connect", flow=flow, plan=plan, window=SYN_WINDOW)
            summary, pod, detail = self._outcome(r)
            if "started" in r:
                self.syn_at[flow] = r["started"]
        elif getattr(step, "datagram", None):
            flow = step.datagram
            r = self.call("datagram", flow=flow, wait=DGRAM_WAIT)
            summary, pod = r["result"], r.get("pod")
            detail = f"answered in {r['took']:.3f} s" if "took" in r else r.get("detail", "")
        elif step.send:
            flow = step.send
            r = self.call("send", flow=flow)
            summary, detail = r["result"], r.get("detail", "")
        elif step.close:
            flow = step.close
            r = self.call("close", flow=flow, closer=step.closer)
            summary, detail = r["result"], r.get("detail", "")
        elif step.client_crash:
            flow = step.client_crash
            r = self.call("crash", flow=flow)
            summary, detail = r["result"], r.get("detail", "")
        elif step.delete_pod:
            p = step.delete_pod
            self.listed[p] = False
            self.grace_at[p] = self.now + self.cfg.timing.grace_period
            self.endpoints_changed()
        elif step.add_pod:
            p = step.add_pod
            self.call("pod-up", pod=p)
            self.running[p] = self.listed[p] = True
            self.endpoints_changed()
        elif step.destroy_pod:
            self.destroy(step.destroy_pod)
        elif step.crash_pod:
            self.destroy(step.crash_pod)
        elif step.endpoint_gone:
            self.listed[step.endpoint_gone] = False
            self.endpoints_changed()
        elif step.set_weight:
            self.ipvsadm("-e", *self.rs(step.set_weight), "-m", "-w", str(step.weight or 0))
        elif step.delete_dest:
            self.ipvsadm("-d", *self.rs(step.delete_dest))
        elif step.add_dest:
            self.ipvsadm("-a", *self.rs(step.add_dest), "-m", "-w", str(1 if step.weight is None else step.weight))
        elif step.wait is not None:
            self.advance(step.wait)
        elif step.conntrack_insert:
            flow = step.conntrack_insert
            self.call("conntrack-insert", flow=flow, pod=step.reply_from, seconds=step.timeout)
        elif step.sync:
            raced = self.kp_sync(step.window)
            if raced is not None:
                flow = step.window
                summary, pod, detail = self._outcome(raced)
        elif step.check:
            self.advance(self.check_at - self.now)
        if what not in ("wait", "check"):
            self.fire_due()
        # connects whose SYN was dropped earlier may have completed by now (retransmission)
        done = self.call("poll", window=0.0)["done"]
        redropped, resent = flow, -1.0
        for f, r in sorted(done.items()):
            s, p, d = self._outcome(r)
            if summary in ("none", "closed") or s == "connected":
                summary, pod, detail = s, p, d
                if s == "dropped" and flow is None and f in self.syn_at:
                    # the last retransmission it outlived left 2^n - 1 s after its first SYN (TCP_TIMEOUT_INIT)
                    redropped, resent = f, self.syn_at[f] + (1 << r.get("retransmissions", 0)) - 1
        if what in ("wait", "check"):
            self.settle_due_timers()
        if what in PACKET_STEPS or (what == "sync" and step.window):
            # an entry expired "now" (ip_vs_conn_expire_now) goes at the next jiffy; the model has fired it
            self.settle_jiffies()
        entry, dests = self.observe(flow)
        diag = self.compact(self.call("diag")) if self.trace else None
        # a wait's retransmission went unanswered: what it met is told by its own flow's entry
        met = entry if redropped == flow else self.observe(redropped)[0]
        if (summary == "dropped" and entry is not None and before is not None and before["state"] == "ESTABLISHED"
                and entry["state"] == "CLOSE" and entry["dest"] == before["dest"]):
            # a SYN to a pod still holding the port's old connection: the pod's challenge ACK and the client's RST
            # passed IPVS (ESTABLISHED -> CLOSE); the client retransmits after its RTO
            summary, detail = "challenged", f"the entry went CLOSE: challenge ACK and reset ({detail})"
        if summary == "dropped" and diag is not None and met is not None and self._passed_ipvs(before, met):
            # a pending connect whose SYN passed IPVS to a pod whose address the node is still resolving (bridge):
            # the SYN was not dropped, it waits on the neighbour (net/core/neighbour.c __neigh_event_send)
            nud = self._nud_at(resent, met["dest"], diag)
            if nud == "INCOMPLETE":
                summary, detail = "queued", f"the SYN waits on the neighbour of pod {met['dest']} ({detail})"
            elif nud in ("REACHABLE", "STALE", "DELAY", "PROBE") and met["dest"] in self.destroyed:
                # a live entry for a gone pod: the SYN went out to its old MAC (neigh_output), nobody answers
                summary, detail = "lost", f"the SYN went to pod {met['dest']}'s old MAC ({nud}; {detail})"
        neighbours = None
        if diag is not None and self.sc.data.config.pod_network == "bridge" and self.proto == "tcp":
            table = diag.get("neigh", {})
            neighbours = {p: NEIGH_NAME.get(table.get(p, {}).get("state", "FAILED"), "?")
                          for p in sorted(self.destroyed)}
        return KernelStep(i, line, self.now, what, summary, pod, entry, dests, detail, self.events, diag,
                          self.timeline, neighbours)

    def _nud_at(self, t: float, pod: str, diag: dict[str, Any]) -> str | None:
        """The node's neighbour state for `pod` when a SYN left at `t` (the step's last sample at or before it),
        or now (t < 0): a wait's retransmission may have met a PROBE that has FAILED since."""
        neigh = diag.get("neigh", {}).get(pod)
        if t >= 0:
            for sample in self.timeline:
                if sample.get("t", t + 1) <= t:
                    neigh = sample.get("neigh", {}).get(pod)
        return neigh.get("state") if isinstance(neigh, dict) else None

    def _passed_ipvs(self, before: dict[str, Any] | None, after: dict[str, Any]) -> bool:
        """Did the connect's SYN pass IPVS (rather than being dropped by it)? A SYN that passes makes an entry or
        re-arms the one it meets to its state's full timeout (ip_vs_conn_put); a dropped one leaves the timer as
        it was (__ip_vs_conn_put). The expiry is shown in whole seconds: an entry that was already at its full
        timeout before the step cannot be told apart, and is taken to have passed."""
        if before is None or before["dest"] != after["dest"] or before["state"] != after["state"]:
            return True
        by_name = {v: k for k, v in SHORT.items()}
        full = self.cfg.timing.timeout(by_name[after["state"]]) - 1  # "expires" rounds down
        return bool(after["expires_in"] > before["expires_in"] or before["expires_in"] >= full)

    @staticmethod
    def _outcome(r: dict[str, Any]) -> tuple[str, str | None, str]:
        res = r["result"]
        took = r.get("took")
        detail = f"connect took {took:.3f} s" if isinstance(took, float) else r.get("detail", "")
        if res == "pending":
            n = r.get("retransmissions")
            why = f"{n} SYN retransmission(s) unanswered" if n else f"connect() not done after {SYN_WINDOW} s"
            return "dropped", None, why
        if res == "connected":
            return "connected", r.get("pod"), detail
        return res, None, detail


def sh_bucket(ip: str, port: int = 0) -> int:
    """ip_vs_sh.c ip_vs_sh_hashkey(): hash_32(ntohs(port) + ntohl(addr), 8), hash_32 = (v * 0x61C88647) >> 24
    (include/linux/hash.h GOLDEN_RATIO_32); the port is 0 without the sh-port flag."""
    a, b, c, d = (int(x) for x in ip.split("."))
    v = (port + ((a << 24) | (b << 16) | (c << 8) | d)) & 0xFFFFFFFF
    return ((v * 0x61C88647) & 0xFFFFFFFF) >> 24


def sh_client_ip(index: int) -> str:
    """The first client address in 10.0.0.0/16 (after the node's) whose sh bucket is `index`."""
    for n in range(2, 1 << 16):
        ip = f"10.0.{n >> 8}.{n & 255}"
        if sh_bucket(ip) == index % 256 and (n & 255) not in (0, 255):
            return ip
    raise AssertionError("unreachable: 65k addresses cover every bucket")


def sh_port(ip: str, bucket: int, index: int) -> int:
    """The first source port from 40000 + 1000 * index whose sh-port bucket (with `ip`) is `bucket`."""
    for port in range(40000 + 1000 * index, 65536):
        if sh_bucket(ip, port) == bucket % 256:
            return port
    raise AssertionError(f"no source port of {ip} hashes to bucket {bucket}")


def wheel_granularity(seconds: int, hz: int = HZ) -> float:
    """How late the timer wheel may fire a timer armed `seconds` ahead: the granularity of its level
    (kernel/time/timer.c: LVL_CLK_SHIFT 3, LVL_START(n) = 63 << 3(n-1), LVL_GRAN(n) = 8^n jiffies)."""
    j = seconds * hz
    lvl = 0
    while lvl < 8 and j >= (63 << (3 * lvl)):
        lvl += 1
    return (8 ** lvl) / hz


def run_on_kernel(guest: Guest, sc: Scenario, cfg: Config, tag: str) -> KernelRun:
    return KernelScenario(guest, sc, cfg, tag).run()
