"""The agent that runs inside the UML guest, as its init's last process (python3 -I -S, stdlib only).

It reads one JSON command per line from the console and answers each with one line `@@R <json>`.
It builds a kube-proxy-like topology in network namespaces of the guest kernel and drives traffic:
a namespace is entered with setns() (ctypes) only to create a socket, or to fork a tool (ip, ipvsadm,
iptables) or open a /proc/sys file, which then belong to that namespace. Servers are one thread per pod.
Nothing here touches the host: the guest has no network device; every address lives in its namespaces.

Addresses: client N is 10.0.0.(N+1) unless the host names others (sh: an address in 10.0.0.0/16 whose
source hash is the model's bucket); port P is source port 40000+P-1; the node is 10.0.0.1, the VIP
10.96.0.10:80 sits on the dummy kube-ipvs0 (as kube-proxy does), pod i is 10.244.0.(i+2)/32 on its own
veth with a /32 route in the node (routed pod network, as several CNIs do).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import tty
from typing import Any

CLONE_NEWNET = 0x40000000
VIP = "10.96.0.10"
TCP_REPAIR = 19
TCP_CLOSE = 7
TCP_FIN_WAIT1 = 4
IP_RECVERR = 11  # linux/in.h
_libc = ctypes.CDLL(None, use_errno=True)
_HOME = os.open("/proc/self/ns/net", os.O_RDONLY)
OUT = sys.stdout.fileno()


def reply(obj: dict[str, Any]) -> None:
    data = ("@@R " + json.dumps(obj) + "\n").encode()
    while data:
        n = os.write(OUT, data)
        data = data[n:]


def setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


class netns:  # noqa: N801 - used as `with netns(name):`
    """Run the block in the named namespace (this thread only), then come back."""

    def __init__(self, name: str | None) -> None:
        self.name = name

    def __enter__(self) -> None:
        if self.name:
            fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
            try:
                setns(fd)
            finally:
                os.close(fd)

    def __exit__(self, *exc: object) -> None:
        if self.name:
            setns(_HOME)


TIMES: list[tuple[str, float]] = []  # (tool, seconds) of the current command, for diagnostics


def run(argv: list[str], ns: str | None = None, stdin: str | None = None, check: bool = True) -> str:
    # a forked child inherits the network namespace of the thread that forks it
    t0 = time.monotonic()
    with netns(ns):
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    TIMES.append((" ".join(argv[:3]), round(time.monotonic() - t0, 3)))
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {p.returncode}: {p.stderr.strip()[:300]}")
    return p.stdout


def write_sysctl(ns: str | None, key: str, value: int | str) -> None:
    with netns(ns):
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(f"{value}\n")


def tcp_state(s: socket.socket) -> int:
    info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    return info[0]


def fin_unanswered(s: socket.socket) -> bool:
    """FIN_WAIT1 and the FIN already retransmitted (struct tcp_info: tcpi_state, tcpi_ca_state, tcpi_retransmits):
    the close went through IPVS and got no answer; what follows is the orphan's own life, in the model's time."""
    info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    return info[0] == TCP_FIN_WAIT1 and info[2] >= 1


def silent_close(s: socket.socket) -> None:
    """Drop a socket without sending anything (TCP_REPAIR: no FIN, no RST), so IPVS sees nothing."""
    try:
        s.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
    except OSError:
        pass
    s.close()


# ------------------------------------------------------------------ `ip` lines through rtnetlink, in-process
class Rtnl:
    """The few `ip -batch` lines the topology needs, sent as the same rtnetlink requests iproute2 sends
    (RTM_NEWLINK with IFF_UP, RTM_NEWADDR, RTM_NEWROUTE), from a netlink socket created in the target
    namespace: a fork per namespace costs 50-100 ms in the guest. `ip_lines` falls back to `ip -batch`
    for any line it does not know."""

    NEWLINK, NEWADDR, NEWROUTE = 16, 20, 24
    REQ, ACK, EXCL, CREATE = 0x1, 0x4, 0x200, 0x400

    def __init__(self) -> None:
        self.s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # NETLINK_ROUTE, in this thread's netns
        self.seq = 0

    @staticmethod
    def _attr(kind: int, data: bytes) -> bytes:
        a = struct.pack("HH", 4 + len(data), kind) + data
        return a + b"\0" * (-len(a) % 4)

    def _send(self, kind: int, flags: int, body: bytes) -> None:
        self.seq += 1
        self.s.send(struct.pack("IHHII", 16 + len(body), kind, self.REQ | self.ACK | flags, self.seq, 0) + body)
        while True:
            data = self.s.recv(65536)
            off = 0
            while off < len(data):
                ln, typ, _, seq, _ = struct.unpack_from("IHHII", data, off)
                if typ == 2 and seq == self.seq:  # NLMSG_ERROR: 0 is the ACK
                    err = -struct.unpack_from("i", data, off + 16)[0]
                    if err:
                        raise OSError(err, os.strerror(err))
                    return
                off += (ln + 3) & ~3

    def link_up(self, dev: str) -> None:
        self._send(self.NEWLINK, 0, struct.pack("BBHiII", socket.AF_UNSPEC, 0, 0, socket.if_nametoindex(dev), 1, 1))

    def addr(self, dev: str, ip: str, plen: int) -> None:
        a = socket.inet_aton(ip)
        body = struct.pack("BBBBI", socket.AF_INET, plen, 0, 0, socket.if_nametoindex(dev))
        self._send(self.NEWADDR, self.CREATE | self.EXCL, body + self._attr(2, a) + self._attr(1, a))

    def route(self, dst: str, plen: int, dev: str, gw: str | None, scope: int) -> None:
        body = struct.pack("BBBBBBBBI", socket.AF_INET, plen, 0, 0, 254, 3, scope, 1, 0)  # main, boot, unicast
        if plen:
            body += self._attr(1, socket.inet_aton(dst))
        if gw:
            body += self._attr(5, socket.inet_aton(gw))
        body += self._attr(4, struct.pack("I", socket.if_nametoindex(dev)))
        self._send(self.NEWROUTE, self.CREATE | self.EXCL, body)

    def line(self, words: list[str]) -> bool:
        """Run one `ip` line; False if it is not one of the forms handled here (nothing was done)."""
        if words[:2] == ["link", "set"] and len(words) == 4 and words[3] == "up":
            self.link_up(words[2])
        elif words[:2] == ["addr", "add"] and len(words) == 5 and words[3] == "dev" and "/" in words[2]:
            ip, plen = words[2].split("/")
            self.addr(words[4], ip, int(plen))
        elif words[:2] == ["route", "add"] and len(words) in (5, 7) and words[3] == "dev" and words[2] != "default":
            if len(words) == 7 and words[5:] != ["scope", "link"]:
                return False
            dst, _, plen = words[2].partition("/")
            self.route(dst, int(plen or 32), words[4], None, 253)  # a route without gateway: scope link
        elif words[:4] == ["route", "add", "default", "via"] and len(words) == 7 and words[5] == "dev":
            self.route("0.0.0.0", 0, words[6], words[4], 0)
        else:
            return False
        return True


def ip_lines(ns: str, text: str) -> None:
    """`ip -n NS -batch -` with TEXT: in-process when every line is a known form, else by iproute2."""
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if all(_known(w) for w in lines):
        t0 = time.monotonic()
        with netns(ns):  # the socket and the interface names (if_nametoindex) are this namespace's
            nl = Rtnl()
            try:
                for w in lines:
                    nl.line(w)
            except OSError as e:
                raise RuntimeError(f"ip -n {ns}: {' '.join(w)}: {e}") from None
            finally:
                nl.s.close()
        TIMES.append((f"rtnetlink {ns}", round(time.monotonic() - t0, 3)))
        return
    run(["ip", "-n", ns, "-batch", "-"], stdin=text)


def _known(w: list[str]) -> bool:
    return ((w[:2] == ["link", "set"] and len(w) == 4 and w[3] == "up")
            or (w[:2] == ["addr", "add"] and len(w) == 5 and w[3] == "dev" and "/" in w[2])
            or (w[:2] == ["route", "add"] and w[2] != "default" and len(w) == 5 and w[3] == "dev")
            or (w[:2] == ["route", "add"] and len(w) == 7 and w[3] == "dev" and w[5:] == ["scope", "link"])
            or (w[:4] == ["route", "add", "default", "via"] and len(w) == 7 and w[5] == "dev"))


# ------------------------------------------------------------------ diagnostics: neighbours, counters
NUD = {0x01: "INCOMPLETE", 0x02: "REACHABLE", 0x04: "STALE", 0x08: "DELAY", 0x10: "PROBE", 0x20: "FAILED",
       0x40: "NOARP", 0x80: "PERMANENT"}  # include/uapi/linux/neighbour.h


def neighbours() -> dict[str, dict[str, Any]]:
    """The IPv4 neighbour table of this thread's namespace (RTM_GETNEIGH dump, what `ip -s neigh` prints):
    address -> NUD state and NDA_PROBES (probes sent so far in this resolution)."""
    out: dict[str, dict[str, Any]] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as s:
        s.send(struct.pack("IHHII", 16 + 12, 30, 0x1 | 0x300, 1, 0) + struct.pack("BBHiHBB", socket.AF_INET,
                                                                                     0, 0, 0, 0, 0, 0))
        while True:
            data = s.recv(65536)
            off = 0
            while off < len(data):
                ln, typ = struct.unpack_from("IH", data, off)
                if typ in (2, 3):  # NLMSG_ERROR / NLMSG_DONE
                    return out
                if typ == 28:  # RTM_NEWNEIGH
                    _, _, _, ifindex, state, _, _ = struct.unpack_from("BBHiHBB", data, off + 16)
                    a, dst, probes = off + 28, None, None
                    while a + 4 <= off + ln:
                        alen, kind = struct.unpack_from("HH", data, a)
                        if alen < 4:
                            break
                        if kind == 1 and alen == 8:
                            dst = socket.inet_ntoa(data[a + 4:a + 8])
                        elif kind == 4:
                            probes, = struct.unpack_from("I", data, a + 4)
                        a += (alen + 3) & ~3
                    if dst:
                        out[dst] = {"state": NUD.get(state, hex(state)), "probes": probes}
                off += (ln + 3) & ~3


def _stat_line(path: str, want: tuple[str, ...]) -> dict[str, int]:
    """/proc/net/stat/* (one hex row per CPU under a header): the named columns summed over CPUs."""
    with open(path) as f:
        head, *rows = f.read().split("\n")
    cols = head.split()
    tot = {k: 0 for k in want if k in cols}
    for r in rows:
        vals = r.split()
        if len(vals) == len(cols):
            for k in tot:
                tot[k] += int(vals[cols.index(k)], 16)
    return tot


def _timers(snap: dict[str, Any]) -> dict[str, int]:
    """Each IPVS entry (/proc/net/ip_vs_conn: Expires is the 9th column) and conntrack entry (the 5th
    column of /proc/net/nf_conntrack) with its countdown in seconds, keyed by the rest of its line."""
    out = {}
    for ln in snap.get("ipvs") or []:
        f = ln.split()
        if len(f) >= 9 and f[8].isdigit():
            out["ipvs " + " ".join(f[:8])] = int(f[8])
    for ln in snap.get("conntrack") or []:
        f = ln.split()
        if len(f) > 5 and f[4].isdigit():
            out["ct " + " ".join(f[:4] + f[5:])] = int(f[4])
    return out


def _snmp(path: str, group: str, want: tuple[str, ...]) -> dict[str, int]:
    with open(path) as f:
        lines = [ln.split() for ln in f if ln.startswith(group + ":")]
    names, vals = lines[0][1:], lines[1][1:]
    return {k: int(vals[names.index(k)]) for k in want if k in names}


# ------------------------------------------------------------------ the node's nat rule
class NatRules:
    """kube-proxy's KUBE-POSTROUTING-like rule (`-t nat -A POSTROUTING -m mark --mark 0x4000/0x4000 -j
    MASQUERADE`). iptables-legacy takes about 0.5 s per run in the guest, so it runs once; its ruleset is
    then read back (IPT_SO_GET_INFO/GET_ENTRIES, which give user-space names, as iptables-save reads it)
    and loaded into each later node namespace with IPT_SO_SET_REPLACE, as iptables-restore does: the same
    kernel interface and the same table. If that fails, iptables-legacy runs again."""

    SOL_IP, SET_REPLACE, GET_INFO, GET_ENTRIES = 0, 64, 64, 65  # linux/netfilter_ipv4/ip_tables.h

    def __init__(self) -> None:
        self.blob: tuple[int, int, bytes, bytes] | None = None  # valid_hooks, num_entries, hooks, entries

    def install(self, ns: str) -> None:
        if self.blob is not None:
            try:
                with netns(ns):
                    self._replace(*self.blob)
                return
            except OSError:
                self.blob = None
        run(["iptables-legacy", "-w", "-t", "nat", "-A", "POSTROUTING", "-m", "mark", "--mark", "0x4000/0x4000",
             "-j", "MASQUERADE"], ns=ns)
        try:
            with netns(ns):
                self.blob = self._read()
        except OSError:
            self.blob = None

    @classmethod
    def _sock(cls) -> socket.socket:
        return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)

    @classmethod
    def _get(cls, s: socket.socket, opt: int, buf: ctypes.Array[ctypes.c_char]) -> None:
        n = ctypes.c_uint(len(buf))
        if _libc.getsockopt(s.fileno(), cls.SOL_IP, opt, buf, ctypes.byref(n)) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))

    @classmethod
    def _info(cls, s: socket.socket) -> tuple[int, bytes, int, int]:
        info = ctypes.create_string_buffer(b"nat", 84)  # struct ipt_getinfo
        cls._get(s, cls.GET_INFO, info)
        valid, = struct.unpack_from("I", info.raw, 32)
        num, size = struct.unpack_from("II", info.raw, 76)
        return valid, info.raw[36:76], num, size  # hook_entry[5] + underflow[5]

    @classmethod
    def _read(cls) -> tuple[int, int, bytes, bytes]:
        with cls._sock() as s:
            valid, hooks, num, size = cls._info(s)
            buf = ctypes.create_string_buffer(b"nat", 40 + size)  # struct ipt_get_entries
            struct.pack_into("I", buf, 32, size)
            cls._get(s, cls.GET_ENTRIES, buf)
            return valid, num, hooks, buf.raw[40:40 + size]

    @classmethod
    def _replace(cls, valid: int, num: int, hooks: bytes, entries: bytes) -> None:
        with cls._sock() as s:
            _, _, old_num, _ = cls._info(s)  # creates this netns's nat table; its entry count is needed
            counters = ctypes.create_string_buffer(16 * old_num)  # struct xt_counters[old_num], filled in
            head = b"nat".ljust(32, b"\0") + struct.pack("III", valid, num, len(entries)) + hooks
            head += struct.pack("<IQ", old_num, ctypes.addressof(counters))  # struct ipt_replace (96 bytes)
            data = ctypes.create_string_buffer(head + entries, len(head) + len(entries))
            if _libc.setsockopt(s.fileno(), cls.SOL_IP, cls.SET_REPLACE, data, len(data)) != 0:
                e = ctypes.get_errno()
                raise OSError(e, os.strerror(e))


NAT_RULES = NatRules()


# ------------------------------------------------------------------ pods: one server thread each
class PodServer:
    """Serves VIP:80 traffic DNATed to the pod. Protocol: the client sends one byte, the plan:
    'S' the server answers its name and closes first; 'C' it answers and waits for the client's close;
    'H' it answers and holds: 'x' is echoed as 'y', 'S' makes it close first, EOF makes it close."""

    def __init__(self, ns: str, name: str) -> None:
        self.name = name
        self.stop = False
        with netns(ns):
            self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("0.0.0.0", 80))
        self.ls.listen(64)
        self.ls.setblocking(False)
        with netns(ns):
            self.us = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # UDP: each datagram gets the name back
        self.us.bind(("0.0.0.0", 80))
        self.us.setblocking(False)
        self.conns: dict[socket.socket, str] = {}  # socket -> plan ('' until read)
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self) -> None:
        while not self.stop:
            socks = [self.ls, self.us, *self.conns]
            try:
                ready, _, _ = select.select(socks, [], [], 0.05)
            except (OSError, ValueError):
                continue
            for s in ready:
                if self.stop:
                    break
                if s is self.us:
                    try:
                        _, peer = self.us.recvfrom(64)
                        self.us.sendto(self.name.encode() + b"\n", peer)
                    except OSError:
                        pass
                    continue
                if s is self.ls:
                    try:
                        c, _ = self.ls.accept()
                        c.setblocking(True)
                        self.conns[c] = ""
                    except OSError:
                        pass
                    continue
                self.serve(s)

    def serve(self, s: socket.socket) -> None:
        try:
            data = s.recv(64)
        except OSError:
            data = b""
        if not data:  # EOF (the client closed first) or an error: close our side
            self.conns.pop(s, None)
            s.close()
            return
        for ch in data.decode(errors="replace"):
            plan = self.conns.get(s, "")
            if plan == "":
                self.conns[s] = ch
                s.sendall(self.name.encode() + b"\n")
                if ch == "S":
                    self.conns.pop(s, None)
                    s.close()
                    return
            elif ch == "x":
                s.sendall(b"y")
            elif ch == "S":
                self.conns.pop(s, None)
                s.close()
                return

    def kill(self) -> None:
        """The pod's containers are gone: drop every socket without a packet (its link is already gone)."""
        self.stop = True
        self.thread.join(1.0)
        for s in list(self.conns):
            silent_close(s)
        self.conns.clear()
        silent_close(self.ls)
        self.us.close()


BRIDGE_MAC = "0a:58:0a:f4:00:01"  # a locally administered address for cni0 (any explicit one is NET_ADDR_SET)


# ------------------------------------------------------------------ one scenario's world
class World:
    def __init__(self, tag: str, pods: list[str], clients: int, ports: int, proto: str, bridge: bool = False) -> None:
        self.tag = tag
        self.bridge = bridge  # pods on a bridge with a subnet route, instead of a /32 route each
        self.proto = proto  # "tcp" or "udp": the service's protocol
        self.client_ips = [f"10.0.0.{i + 1}" for i in range(1, clients + 1)]
        self.flow_ports: dict[str, int] = {}  # a flow's source port, where the harness chose it (sh-port)
        self.pods = pods  # every pod name the scenario may use, in order (its IP is fixed by its index)
        self.clients = clients
        self.ports = ports
        self.client_ns = f"{tag}-c"
        self.node_ns = f"{tag}-n"
        self.servers: dict[str, PodServer] = {}
        self.socks: dict[str, socket.socket] = {}  # established client connections by flow
        self.pending: dict[str, list[Any]] = {}  # SYN_SENT by flow: [sock, plan, t0, retransmissions seen]
        self.t_start = time.monotonic()  # the world's clock for diagnostics (`watch`, `started`)
        self.finished: dict[str, dict[str, Any]] = {}  # connects a `watch` saw finish, for the next poll

    def pod_ip(self, pod: str) -> str:
        return f"10.244.0.{self.pods.index(pod) + 2}"

    def pod_ns(self, pod: str) -> str:
        return f"{self.tag}-p{pod}"

    def flow_addr(self, flow: str) -> tuple[str, int]:
        c, p = flow.split(":")
        ip = self.client_ips[int(c.split("-")[1]) - 1]
        return ip, self.flow_ports.get(flow, 40000 + int(p.split("-")[1]) - 1)

    def setup(self, sysctls: dict[str, int], nf_conntrack: bool, up: list[str], dests: list[list[Any]],
              persistence: int | None, timeouts: list[int] | None = None, scheduler: str = "rr",
              invalid_drop: bool = False) -> None:
        """The whole world in few processes: namespaces and veths, addresses and routes (one `ip -batch`
        per namespace), the nat rule, then the service and its real servers in one `ipvsadm -R`."""
        c, n = self.client_ns, self.node_ns
        root = f"netns add {c}\nnetns add {n}\nlink add eth0 netns {c} type veth peer name client0 netns {n}\n"
        root += "".join(f"netns add {self.pod_ns(p)}\nlink add eth0 netns {self.pod_ns(p)} type veth peer name n-{p} "
                        f"netns {n}\n" for p in up)
        root += f"link add kube-ipvs0 netns {n} type dummy\n" + (
            f"link add cni0 netns {n} type bridge\n" if self.bridge else "")
        run(["ip", "-batch", "-"], stdin=root)
        client_ips = "".join(f"addr add {ip}/16 dev eth0\n" for ip in self.client_ips)
        ip_lines(c, "link set lo up\nlink set eth0 up\n" + client_ips + "route add default via 10.0.0.1 dev eth0\n")
        ip_lines(n, "link set lo up\nlink set client0 up\naddr add 10.0.0.1/16 dev client0\n"
                 f"addr add {VIP}/32 dev kube-ipvs0\n"
                 # the cni bridge plugin sets the bridge's MAC (bridge.go ensureAddr), so that ports leaving do not
                 # change it (br_stp_recalculate_bridge_id), which would flush its neighbours (neigh_changeaddr)
                 + (f"link set cni0 address {BRIDGE_MAC}\nlink set cni0 up\naddr add 10.244.0.1/24 dev cni0\n"
                    if self.bridge else "")
                 + "".join(self._node_side(p) for p in up))
        for p in up:
            self._pod_side(p)
        write_sysctl(n, "net.ipv4.ip_forward", 1)
        # proxier.go NewProxier: the IPVS sysctls kube-proxy ensures (values chosen by the scenario's config)
        for key, val in sysctls.items():
            write_sysctl(n, f"net.ipv4.vs.{key}", val)
        if nf_conntrack:
            # kube-proxy always installs nat rules (KUBE-POSTROUTING: masquerade marked packets); a rule
            # with a conntrack user makes the netns track connections (nf_ct_netns_get), as on a real node
            # (Debian's UML kernel has no nf_tables ip family: iptables-legacy)
            NAT_RULES.install(n)
        if invalid_drop:
            # kube-proxy's iptables mode (KUBE-FORWARD) and Calico's felix drop what conntrack finds INVALID in
            # the filter table's FORWARD, before IPVS's reply hook; kube-proxy's IPVS mode does not
            run(["iptables-legacy", "-w", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP"],
                ns=n)
        proto = "-u" if self.proto == "udp" else "-t"
        # "sh-fallback-port": sh with --sched-flags sh-fallback,sh-port
        sched, *flags = scheduler.split("-")
        rules = (f"-A {proto} {VIP}:80 -s {sched}" + (" -b " + ",".join(f"sh-{f}" for f in flags) if flags else "")
                 + (f" -p {persistence}" if persistence else "") + "\n")
        rules += "".join(f"-a {proto} {VIP}:80 -r {ip}:80 -m -w {w}\n" for ip, w in dests)
        run(["ipvsadm", "-R"], ns=n, stdin=rules)
        if timeouts:  # kube-proxy --ipvs-tcp-timeout/--ipvs-tcpfin-timeout/--ipvs-udp-timeout (0: unchanged)
            run(["ipvsadm", "--set", *(str(t) for t in timeouts)], ns=n)
        for p in up:
            self.servers[p] = PodServer(self.pod_ns(p), p)

    def _node_side(self, pod: str) -> str:
        if self.bridge:  # bridge CNI: the pod's veth is a port of cni0 (10.244.0.0/24 is on-link)
            return f"link set n-{pod} master cni0\nlink set n-{pod} up\n"
        return f"link set n-{pod} up\naddr add 10.244.0.1/32 dev n-{pod}\nroute add {self.pod_ip(pod)}/32 dev n-{pod}\n"

    def _pod_side(self, pod: str) -> None:
        prefix = 24 if self.bridge else 32
        route = "" if self.bridge else "route add 10.244.0.1 dev eth0 scope link\n"
        ip_lines(self.pod_ns(pod), f"link set lo up\nlink set eth0 up\n"
                 f"addr add {self.pod_ip(pod)}/{prefix} dev eth0\n{route}route add default via 10.244.0.1 dev eth0\n")

    def pod_up(self, pod: str) -> None:
        ns, n = self.pod_ns(pod), self.node_ns
        run(["ip", "-batch", "-"], stdin=f"netns add {ns}\nlink add eth0 netns {ns} type veth peer name n-{pod} "
            f"netns {n}\n")
        self._pod_side(pod)
        ip_lines(n, self._node_side(pod))
        self.servers[pod] = PodServer(ns, pod)

    def pod_down(self, pod: str) -> None:
        # link first, so the pod's sockets can send nothing; then the sockets; then the namespace
        run(["ip", "-n", self.node_ns, "link", "del", f"n-{pod}"])
        srv = self.servers.pop(pod, None)
        if srv is not None:
            srv.kill()
        run(["ip", "netns", "del", self.pod_ns(pod)])

    def conntrack_insert(self, flow: str, pod: str, timeout: int) -> None:
        """A confirmed SYN_SENT entry for the flow whose reply tuple names the pod (what IPVS's DNAT of a failed
        connect leaves), made through ctnetlink as `conntrack -I` does."""
        ip, port = self.flow_addr(flow)
        run(["conntrack", "-I", "-p", "tcp", "-s", ip, "-d", VIP, "--sport", str(port), "--dport", "80",
             "-r", self.pod_ip(pod), "-q", ip, "--reply-port-src", "80", "--reply-port-dst", str(port),
             "--state", "SYN_SENT", "-t", str(timeout)], ns=self.node_ns)

    # -------------------------------------------------------------- client side
    def connect(self, flow: str, plan: str, window: float) -> dict[str, Any]:
        ip, port = self.flow_addr(flow)
        with netns(self.client_ns):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip, port))
        s.setblocking(False)
        t0 = time.monotonic()
        rc = s.connect_ex((VIP, 80))
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            return {"result": _err_name(rc), "errno": rc}
        self.pending[flow] = [s, plan, t0, 0]
        started = round(t0 - self.t_start, 3)
        done = self.poll(window, only=flow)
        if flow in done:
            return done[flow] | {"started": started}
        return {"result": "pending", "started": started}

    def poll(self, window: float, only: str | None = None, redrops: bool = True) -> dict[str, dict[str, Any]]:
        """Finish the connects that completed (within `window` seconds); the rest stay pending and, with
        `redrops`, are reported once per retransmission they outlived."""
        out: dict[str, dict[str, Any]] = {}
        for flow in [f for f in self.finished if only is None or f == only]:
            out[flow] = self.finished.pop(flow)
        deadline = time.monotonic() + window
        while True:
            for flow in [f for f in self.pending if only is None or f == only]:
                s, plan, t0, _ = self.pending[flow]
                _, w, _ = select.select([], [s], [], 0)
                if not w:
                    continue
                del self.pending[flow]
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                took = round(time.monotonic() - t0, 3)
                if err:
                    s.close()
                    out[flow] = {"result": _err_name(err), "errno": err, "took": took}
                else:
                    out[flow] = self._talk(flow, s, plan) | {"took": took}
            left = deadline - time.monotonic()
            if not self.pending or left <= 0 or (only is not None and only not in self.pending):
                return out | self._redropped() if redrops else out
            time.sleep(min(0.01, left))

    def _redropped(self) -> dict[str, dict[str, Any]]:
        """Connects still pending after another SYN retransmission (1, 3, 7, 15 .. s after the first SYN,
        TCP_TIMEOUT_INIT doubling) was due: that retransmission was dropped too."""
        out = {}
        for flow, p in self.pending.items():
            age = time.monotonic() - p[2]
            n = sum(1 for k in range(1, 7) if (1 << k) - 1 < age - 0.15)
            if n > p[3]:
                p[3] = n
                out[flow] = {"result": "pending", "retransmissions": n}
        return out

    def _talk(self, flow: str, s: socket.socket, plan: str) -> dict[str, Any]:
        s.setblocking(True)
        s.settimeout(2.0)
        s.sendall(plan.encode())
        buf = b""
        try:
            while b"\n" not in buf:
                chunk = s.recv(64)
                if not chunk:
                    break
                buf += chunk
        except OSError as e:
            silent_close(s)
            return {"result": "broken", "detail": str(e)}
        pod = buf.split(b"\n")[0].decode(errors="replace")
        if plan == "H":
            self.socks[flow] = s
            return {"result": "connected", "pod": pod}
        if plan == "R":
            self._reset(s)
            return {"result": "connected", "pod": pod, "closed": True}
        self._finish(s, server_first=plan == "S")
        return {"result": "connected", "pod": pod, "closed": True}

    @staticmethod
    def _reset(s: socket.socket) -> None:
        """close() with SO_LINGER {on, 0}: tcp_close -> tcp_disconnect sends a RST, the port is free at once."""
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        time.sleep(0.01)  # the RST has gone through IPVS

    def _finish(self, s: socket.socket, server_first: bool) -> None:
        """Close and wait until the last packet of the close went through IPVS (the socket is CLOSED)."""
        try:
            if server_first:  # the server's FIN: read to EOF
                while s.recv(64):
                    pass
            s.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                if not server_first:
                    try:
                        s.setblocking(False)
                        while s.recv(64):
                            pass
                    except (BlockingIOError, OSError):
                        pass
                if tcp_state(s) == TCP_CLOSE:
                    break
                if not server_first and fin_unanswered(s):
                    # waiting on would spend real seconds the scenario's clock does not count (C32)
                    break
                time.sleep(0.005)
        except OSError:
            pass
        s.close()
        time.sleep(0.01)

    def datagram(self, flow: str, timeout: float) -> dict[str, Any]:
        """One UDP datagram from the flow's port to VIP:80; the pod answers its name. IP_RECVERR makes an
        ICMP host unreachable (a non-fatal error for UDP otherwise) visible on the connected socket."""
        ip, port = self.flow_addr(flow)
        with netns(self.client_ns):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            s.bind((ip, port))
            s.connect((VIP, 80))
            s.settimeout(timeout)
            t0 = time.monotonic()
            s.send(b"q")
            try:
                data = s.recv(64)
            except TimeoutError:
                return {"result": "lost", "detail": f"no answer within {timeout} s"}
            except OSError as e:
                return {"result": _err_name(e.errno or 0), "errno": e.errno, "took": round(time.monotonic() - t0, 3)}
            return {"result": "answered", "pod": data.split(b"\n")[0].decode(errors="replace"),
                    "took": round(time.monotonic() - t0, 3)}
        finally:
            s.close()

    def send(self, flow: str) -> dict[str, Any]:
        s = self.socks.get(flow)
        if s is None:
            return {"result": "error", "detail": "no connection"}
        try:
            s.settimeout(0.6)
            s.sendall(b"x")
            if s.recv(1) == b"y":
                return {"result": "none"}
            detail = "eof"
        except OSError as e:
            detail = str(e)
        del self.socks[flow]
        silent_close(s)  # the client gives up on it without a packet (the model's "broken")
        return {"result": "broken", "detail": detail}

    def crash(self, flow: str) -> dict[str, Any]:
        """The client host loses the connection without a packet (TCP_REPAIR): the pod keeps its socket."""
        s = self.socks.pop(flow, None)
        if s is None:
            return {"result": "error", "detail": "no connection"}
        silent_close(s)
        return {"result": "none"}

    def close(self, flow: str, closer: str) -> dict[str, Any]:
        s = self.socks.pop(flow, None)
        if s is None:
            return {"result": "error", "detail": "no connection"}
        if closer == "reset":
            self._reset(s)
            return {"result": "closed"}
        try:
            s.settimeout(2.0)
            if closer == "server":
                s.sendall(b"S")
        except OSError as e:
            silent_close(s)
            return {"result": "broken", "detail": str(e)}
        self._finish(s, server_first=closer == "server")
        return {"result": "closed"}

    def state(self) -> dict[str, str]:
        """The node's IPVS tables as the kernel prints them: /proc/net/ip_vs_conn is the file `ipvsadm -lnc`
        reformats; /proc/net/ip_vs carries the same live weight, ActiveConn and InActConn as `ipvsadm -ln`
        (ip_vs_ctl.c ip_vs_info_seq_show; not the lagging --stats estimator). Read in-process: no fork."""
        out = {}
        with netns(self.node_ns):
            for key, name in (("conns", "ip_vs_conn"), ("dests", "ip_vs")):
                with open(f"/proc/thread-self/net/{name}") as f:
                    out[key] = f.read()
        return out

    def diag(self) -> dict[str, Any]:
        """What the node's conntrack and neighbour tables hold, and a few kernel counters. nf_conntrack lists
        only confirmed entries (the hash table; an unconfirmed one is on a per-cpu list until
        __nf_conntrack_confirm). Read in-process, no fork."""
        out: dict[str, Any] = {}
        with netns(self.node_ns):
            try:
                with open("/proc/thread-self/net/nf_conntrack") as f:
                    out["conntrack"] = [ln.strip() for ln in f if ln.strip()]
                out["ct_stat"] = _stat_line("/proc/thread-self/net/stat/nf_conntrack",
                                            ("invalid", "insert_failed", "drop", "clashres", "icmp_error"))
            except OSError:
                out["conntrack"] = None  # no nf_conntrack in this kernel
            out["neigh"] = {ip: v for ip, v in neighbours().items() if ip.startswith("10.244.")}
            out["node_icmp"] = _snmp("/proc/thread-self/net/snmp", "Icmp", ("OutDestUnreachs",))
            out["node_tcp"] = _snmp("/proc/thread-self/net/snmp", "Tcp", ("OutRsts", "InSegs"))
        # the neighbour tables' statistics exist in the initial namespace only (neigh_table_init), for all
        out["arp"] = _stat_line("/proc/thread-self/net/stat/arp_cache", ("res_failed", "unresolved_discards"))
        with netns(self.client_ns):
            out["client_icmp"] = _snmp("/proc/thread-self/net/snmp", "Icmp", ("InDestUnreachs",))
            out["client_tcp"] = _snmp("/proc/thread-self/net/snmp", "Tcp", ("RetransSegs", "InErrs", "EstabResets"))
            with open("/proc/thread-self/net/tcp") as f:  # the client's sockets: st 04 FIN_WAIT1, tr/retrnsmt
                out["client_socks"] = [" ".join(ln.split()[1:7]) for ln in list(f)[1:]]
        out["client_syn_retrans"] = {}
        for flow, p in self.pending.items():
            info = p[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
            out["client_syn_retrans"][flow] = struct.unpack_from("I", info, 100)[0]  # tcpi_total_retrans
        return out

    def watch(self, seconds: float, interval: float) -> dict[str, Any]:
        """Sleep `seconds`, sampling every `interval`: the IPVS entries, conntrack entries, neighbours,
        counters and pending connects. Returns the samples that differ from the one before (the world's
        clock in `t`); a connect that finishes meanwhile is kept for the next poll."""
        end = time.monotonic() + seconds
        samples: list[dict[str, Any]] = []
        last: Any = None
        last_timers: dict[str, int] = {}
        n = 0
        while True:
            # not the retransmission reports: they belong to the step's own poll, which the watch only delays
            for flow, r in self.poll(0.0, redrops=False).items():
                self.finished[flow] = r
            snap = self.diag() | {"ipvs": self.state()["conns"].splitlines()[1:],
                                  "finished": {f: r.get("result") for f, r in self.finished.items()}}
            timers = _timers(snap)  # countdowns aside, a sample is new when something else changed,
            key = json.dumps({k: v for k, v in snap.items() if k not in ("ipvs", "conntrack")} | {
                "timers": sorted(timers)}, sort_keys=True)
            rearmed = [k for k, v in timers.items() if k in last_timers and v > last_timers[k]]
            if key != last or rearmed:  # or a timer was re-armed (its countdown went up)
                samples.append({"t": round(time.monotonic() - self.t_start, 3), **snap, "rearmed": rearmed})
                last = key
            last_timers = timers
            n += 1
            left = end - time.monotonic()
            if left <= 0:
                return {"samples": samples, "iterations": n, "seconds": round(seconds, 3)}
            time.sleep(min(interval, left))

    def teardown(self) -> None:
        for srv in self.servers.values():
            srv.kill()
        for s in list(self.socks.values()) + [p[0] for p in self.pending.values()]:  # type: ignore[operator]
            silent_close(s)
        names = [self.client_ns, self.node_ns] + [self.pod_ns(p) for p in self.servers]
        # not waited for: the next world has other names; the kernel cleans a netns up asynchronously anyway
        p = subprocess.Popen(["ip", "-batch", "-"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, text=True)
        assert p.stdin is not None
        p.stdin.write("".join(f"netns del {x}\n" for x in names))
        p.stdin.close()
        _reap.append(p)


_reap: list[subprocess.Popen[str]] = []  # background teardowns


def _err_name(e: int) -> str:
    return {errno.ECONNREFUSED: "refused", errno.EHOSTUNREACH: "no-route", errno.ENETUNREACH: "no-route",
            errno.ETIMEDOUT: "timed-out", errno.ECONNRESET: "reset",
            errno.EADDRNOTAVAIL: "addr-not-available"}.get(e, f"errno-{e}")


# ------------------------------------------------------------------ the command loop
def main() -> None:
    tty.setraw(0)  # no echo, no CR/LF translation: the console is a clean byte channel
    moddir = sys.argv[2] if len(sys.argv) > 2 else sys.argv[1] + "/mods"
    # the kernel's own module requests would run modprobe without the AVX workaround's environment: load up front
    mods = ["ip_vs", "ip_vs_rr", "ip_vs_lc", "ip_vs_wlc", "ip_vs_sh", "nf_conntrack", "veth", "dummy", "ip_tables",
            "iptable_nat", "nf_nat", "xt_mark",
            "xt_MASQUERADE", "bridge", "iptable_filter", "xt_conntrack", "nf_conntrack_netlink"]
    p = subprocess.run(["modprobe", "-a", "-d", moddir, *mods], capture_output=True, text=True)
    loaded = [] if p.returncode == 0 else [["modprobe -a " + " ".join(mods), p.returncode, p.stderr.strip()]]
    reply({"ready": True, "uname": os.uname().release, "build": os.uname().version, "modules": loaded})
    worlds: dict[str, World] = {}
    buf = b""
    while True:
        chunk = os.read(0, 65536)
        if not chunk:
            time.sleep(0.05)
            continue
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            line = line.strip()
            if not line:
                continue
            try:
                cmd = json.loads(line)
            except ValueError:
                reply({"ok": False, "error": f"bad command {line[:80]!r}"})
                continue
            for done in [x for x in _reap if x.poll() is not None]:
                _reap.remove(done)
            if cmd.get("op") == "halt":
                reply({"ok": True, "id": cmd.get("id")})
                os.sync()
                _libc.reboot(0x4321FEDC)  # LINUX_REBOOT_CMD_POWER_OFF
                return
            try:
                TIMES.clear()
                res = handle(worlds, cmd)
                reply({"ok": True, "id": cmd.get("id"), "times": TIMES, **res})
            except Exception as e:  # noqa: BLE001 - every failure goes back to the host as one line
                reply({"ok": False, "id": cmd.get("id"), "error": f"{type(e).__name__}: {e}"})


def handle(worlds: dict[str, World], cmd: dict[str, Any]) -> dict[str, Any]:
    op = cmd["op"]
    if op == "exec":  # diagnostics: run a tool in a namespace
        with netns(cmd.get("ns")):
            p = subprocess.run(cmd["argv"], capture_output=True, text=True)
        return {"rc": p.returncode, "out": p.stdout, "err": p.stderr}
    if op == "setup":
        w = World(cmd["tag"], cmd["pods"], cmd["clients"], cmd["ports"], cmd.get("proto", "tcp"),
                  cmd.get("bridge", False))
        w.client_ips = cmd.get("client_ips") or w.client_ips
        w.flow_ports = cmd.get("flow_ports") or {}
        worlds[w.tag] = w
        w.setup(cmd["sysctls"], cmd["nf_conntrack"], cmd["up"], cmd["dests"], cmd.get("persistence"),
                cmd.get("timeouts"), cmd.get("scheduler", "rr"), cmd.get("invalid_drop", False))
        return {}
    w = worlds[cmd["tag"]]
    if op == "pod-up":
        w.pod_up(cmd["pod"])
        return {}
    if op == "conntrack-insert":
        w.conntrack_insert(cmd["flow"], cmd["pod"], cmd["seconds"])
        return {}
    if op == "pod-down":
        w.pod_down(cmd["pod"])
        return {}
    if op == "ipvsadm":
        return {"out": run(["ipvsadm", *cmd["args"]], ns=w.node_ns)}
    if op == "connect":
        return w.connect(cmd["flow"], cmd["plan"], cmd["window"])
    if op == "poll":
        return {"done": w.poll(cmd.get("window", 0.0))}
    if op == "send":
        return w.send(cmd["flow"])
    if op == "datagram":
        return w.datagram(cmd["flow"], cmd.get("wait", 0.5))
    if op == "close":
        return w.close(cmd["flow"], cmd["closer"])
    if op == "crash":
        return w.crash(cmd["flow"])
    if op == "state":
        return w.state()
    if op == "diag":
        return w.diag()
    if op == "watch":
        return w.watch(cmd["seconds"], cmd.get("interval", 0.05))
    if op == "teardown":
        w.teardown()
        del worlds[w.tag]
        return {}
    raise ValueError(f"unknown op {op}")


if __name__ == "__main__":
    main()
