"""IPVS schedulers, as pure functions over the service's dest list and the scheduler's own state.

A scheduler is an object with `schedule` and `del_dest`; the model never looks inside its state (an int).
`schedule` gets the dest list head first, which dests are usable (weight > 0, not OVERLOAD), and, for the
schedulers that read them, the dests' weights, their connection overheads and the client's hash.
Source: net/netfilter/ipvs/ip_vs_{rr,lc,wlc,sh}.c of Linux 6.1 (sh with its sh-fallback and sh-port flags).
wrr and the rest are not modelled yet.
"""

from __future__ import annotations

from itertools import permutations
from typing import Any, Protocol

from ipvs_verify.model.decision_points import DecisionPoint, bools, decision, register
from ipvs_verify.model.variants import Variant

HEAD = -1  # the list head &svc->destinations: the rr cursor after ip_vs_rr_init_svc()
SH_TAB_SIZE = 256  # ip_vs_sh.c IP_VS_SH_TAB_SIZE (CONFIG_IP_VS_SH_TAB_BITS = 8)


class Scheduler(Protocol):
    name: str
    reads_load: bool  # reads weights, overheads or the client's hash (rr does not: they are not computed)
    hashes_port: bool  # the client's hash covers its source port (sh with the sh-port flag)

    def schedule(self, order: tuple[int, ...], usable: tuple[bool, ...], cursor: int,
                 weights: tuple[int, ...] = (), load: tuple[int, ...] = (), client_hash: int = 0) -> tuple[int, int]:
        """Pick a dest among `order` (head first); returns (dest or -1 for none, new cursor).

        `weights` and `load` (ip_vs_dest_conn_overhead) are given per entry of `order`.
        """
        ...

    def del_dest(self, order: tuple[int, ...], cursor: int, dest: int) -> int:
        """The new cursor once `dest` leaves `order` (called before it is unlinked)."""
        ...


class RoundRobin:
    """ip_vs_rr.c: the cursor is the list node of the last dest chosen (or the head)."""

    name = "rr"
    reads_load = False
    hashes_port = False

    def schedule(self, order: tuple[int, ...], usable: tuple[bool, ...], cursor: int,
                 weights: tuple[int, ...] = (), load: tuple[int, ...] = (), client_hash: int = 0) -> tuple[int, int]:
        # ip_vs_rr_schedule(): scan after the cursor to the end, then from the head up to the cursor itself;
        # skip weight 0 and OVERLOAD (usable). Nothing usable -> NULL, cursor unchanged.
        start = order.index(cursor) + 1 if cursor in order else 0
        n = len(order)
        for i in range(n):
            k = (start + i) % n
            if usable[k]:
                return order[k], order[k]
        return -1, cursor

    def del_dest(self, order: tuple[int, ...], cursor: int, dest: int) -> int:
        # ip_vs_rr_del_dest(): a cursor on the deleted dest steps back to the previous node
        if cursor != dest:
            return cursor
        i = order.index(dest)
        return order[i - 1] if i > 0 else HEAD


class LeastConnection:
    """ip_vs_lc.c (lc) and ip_vs_wlc.c (wlc): the least overhead, weighted or not; stateless."""

    def __init__(self, weighted: bool) -> None:
        self.weighted = weighted
        self.name = "wlc" if weighted else "lc"
        self.reads_load = True
        self.hashes_port = False

    def schedule(self, order: tuple[int, ...], usable: tuple[bool, ...], cursor: int,
                 weights: tuple[int, ...] = (), load: tuple[int, ...] = (), client_hash: int = 0) -> tuple[int, int]:
        best = -1
        for k in range(len(order)):
            if not usable[k]:
                continue
            if best < 0:
                best = k
            elif self.weighted:
                # ip_vs_wlc_schedule(): loh * w > doh * w_least (the first usable dest starts; ties keep it)
                if load[best] * weights[k] > load[k] * weights[best]:
                    best = k
            elif load[k] < load[best]:  # ip_vs_lc_schedule(): strictly less (the first wins ties)
                best = k
        return (order[best] if best >= 0 else -1), cursor

    def del_dest(self, order: tuple[int, ...], cursor: int, dest: int) -> int:
        return cursor


class SourceHashing:
    """ip_vs_sh.c: 256 buckets filled by cycling the dest list, each dest taking max(weight, 1) buckets.

    The table is rebuilt on every add, edit and delete (ip_vs_sh_reassign), so it is a function of the
    dest list and the weights: no state is kept. A weight-0 dest keeps its bucket; without the sh-fallback
    flag a client hashing to it is refused even when other dests are fine (T12).

    The bucket is ip_vs_sh_hashkey(addr, port): the port is the client's source port with the sh-port flag
    (IP_VS_SVC_F_SCHED_SH_PORT, ip_vs_sh_schedule), 0 without it. The model abstracts the hash by the bucket
    itself: client c's bucket is c, and with sh-port flow (c, p)'s bucket is its flow index (the harness picks
    addresses and source ports that hash there: conformance/kernel.py sh_bucket).
    """

    def __init__(self, fallback: bool, port: bool = False) -> None:
        self.fallback = fallback
        self.hashes_port = port
        # the names kube-proxy's --ipvs-scheduler and our scenarios use: sh, then its flags
        self.name = "sh" + ("-fallback" if fallback else "") + ("-port" if port else "")
        self.reads_load = True

    @staticmethod
    def _bucket_owner(order: tuple[int, ...], weights: tuple[int, ...], bucket: int) -> int:
        # ip_vs_sh_reassign(): "Don't move to next dest until filling weight" (a weight-0 dest: one bucket)
        runs = [max(w, 1) for w in weights]
        k = bucket % sum(runs)
        for i, r in enumerate(runs):
            if k < r:
                return i
            k -= r
        raise AssertionError("unreachable")

    def schedule(self, order: tuple[int, ...], usable: tuple[bool, ...], cursor: int,
                 weights: tuple[int, ...] = (), load: tuple[int, ...] = (), client_hash: int = 0) -> tuple[int, int]:
        if not order:
            return -1, cursor
        h = client_hash % SH_TAB_SIZE
        k = self._bucket_owner(order, weights, h)
        if usable[k]:
            return order[k], cursor
        if not self.fallback:
            return -1, cursor  # ip_vs_sh_get(): the bucket's dest is unavailable -> NULL
        for offset in range(SH_TAB_SIZE):
            # ip_vs_sh_get_fallback(): probes ip_vs_sh_hashkey(addr, port, (offset + ihash) % size),
            # i.e. bucket (2 * ihash + offset) mod 256
            k = self._bucket_owner(order, weights, (2 * h + offset) % SH_TAB_SIZE)
            if usable[k]:
                return order[k], cursor
        return -1, cursor

    def del_dest(self, order: tuple[int, ...], cursor: int, dest: int) -> int:
        return cursor


SCHEDULERS: dict[str, Scheduler] = {
    s.name: s for s in (RoundRobin(), LeastConnection(False), LeastConnection(True), SourceHashing(False),
                        SourceHashing(True), SourceHashing(False, port=True), SourceHashing(True, port=True))
}


# ---------------------------------------------------------------------- as a decision point (issue 16)
@decision("scheduler-choice")
def choose(v: Variant, name: str, order: tuple[int, ...], usable: tuple[bool, ...], cursor: int,
           weights: tuple[int, ...] = (), load: tuple[int, ...] = (), client_hash: int = 0) -> tuple[int, int]:
    """The scheduler's pick (ip_vs_<name>_schedule); weights and load are given to the schedulers that read them."""
    return SCHEDULERS[name].schedule(order, usable, cursor, weights, load, client_hash)


class PatchedScheduler:
    """A scheduler whose choice a patch replaced; what a deleted dest does to its state stays the kernel's."""

    def __init__(self, base: Scheduler, v: Variant) -> None:
        self.base, self.v = base, v
        self.name, self.reads_load, self.hashes_port = base.name, base.reads_load, base.hashes_port

    def schedule(self, order: tuple[int, ...], usable: tuple[bool, ...], cursor: int,
                 weights: tuple[int, ...] = (), load: tuple[int, ...] = (), client_hash: int = 0) -> tuple[int, int]:
        return choose(self.v, self.name, order, usable, cursor, weights, load, client_hash)

    def del_dest(self, order: tuple[int, ...], cursor: int, dest: int) -> int:
        return self.base.del_dest(order, cursor, dest)


def scheduler_for(v: Variant, name: str) -> Scheduler:
    """The configuration's scheduler: the kernel's, or its choice as a patch replaced it."""
    base = SCHEDULERS[name]
    return PatchedScheduler(base, v) if v.hook("scheduler-choice") else base


def _check_choice(value: Any) -> tuple[int, int]:
    if (not isinstance(value, tuple) or len(value) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in value)):
        raise TypeError("expected (dest, cursor): the dest chosen (-1 for none) and the scheduler's new state")
    if value[0] < -1:
        raise ValueError("the dest must be a position of the dest list, or -1 for none")
    return value


def _rr_domain(v: Variant, s: object) -> Any:
    """rr's inputs for up to three dests (the default scope's pods): every list order, usable set and cursor."""
    for n in range(1, 4):
        for order in permutations(range(3), n):
            for usable in bools(n):
                for cursor in (HEAD, *order):
                    yield v, "rr", order, usable, cursor


register(DecisionPoint(
    "scheduler-choice", "kernel", ("v", "name", "order", "usable", "cursor", "weights", "load", "client_hash"),
    "which dest a new connection goes to, and the scheduler's new state (ip_vs_rr.c, ip_vs_lc.c, ip_vs_wlc.c, "
    "ip_vs_sh.c: <name>_schedule)", _check_choice, _rr_domain))
