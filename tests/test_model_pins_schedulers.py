"""The schedulers pinned against net/netfilter/ipvs/ip_vs_{rr,lc,wlc}.c of Linux 6.1 on small whole domains
(issue 19): every dest order of up to three dests, every OVERLOAD/weight assignment and cursor, and rr's cursor
after a delete. The expected picks come from transcriptions of the kernel's list walks here, not from the model.
"""

from __future__ import annotations

import itertools
from itertools import permutations

import pytest

from ipvs_verify.model.scheduler import HEAD, SCHEDULERS, LeastConnection, RoundRobin, choose, scheduler_for
from ipvs_verify.model.variants import VARIANTS

ORDERS = [o for n in range(0, 4) for o in permutations(range(3), n)]


def kernel_rr(order: tuple[int, ...], usable: tuple[bool, ...], cursor: int) -> tuple[int, int]:
    """ip_vs_rr.c:52-98. The list is circular through the head; `p` the cursor node (HEAD = &svc->destinations).
    list_for_each_entry_continue walks from the node after `dest` to the head (exclusive)."""
    ring = [HEAD, *order]
    p = cursor
    last = dest = p
    passes = 0
    while True:
        i = ring.index(dest) + 1
        while i < len(ring):  # :67-76
            dest = ring[i]
            if usable[order.index(dest)]:
                return dest, dest  # :73, :89 sched_data = &dest->n_list
            if dest == last:
                return -1, cursor  # :74-75 -> stop: NULL, sched_data unchanged
            i += 1
        dest = HEAD
        passes += 1  # :77
        if not (passes < 2 and p != HEAD):  # :81
            return -1, cursor


def kernel_rr_del_dest(order: tuple[int, ...], cursor: int, dest: int) -> int:
    """ip_vs_rr.c:33-46: a cursor on the deleted dest moves to p->next->prev, its predecessor (maybe the head)."""
    if cursor != dest:
        return cursor
    ring = [HEAD, *order]
    return ring[ring.index(dest) - 1]


@pytest.mark.parametrize("order", ORDERS, ids=str)
def test_rr_whole_domain(order: tuple[int, ...]) -> None:
    rr = SCHEDULERS["rr"]
    for usable in itertools.product((False, True), repeat=len(order)):
        for cursor in (HEAD, *order):
            assert rr.schedule(order, usable, cursor) == kernel_rr(order, usable, cursor), (usable, cursor)
            assert choose(VARIANTS["K516"], "rr", order, usable, cursor) == kernel_rr(order, usable, cursor)
            for d in order:
                assert rr.del_dest(order, cursor, d) == kernel_rr_del_dest(order, cursor, d), (cursor, d)


def test_rr_after_a_delete_goes_on_from_the_predecessor() -> None:
    """a, b, c; b chosen last, then b deleted: the cursor steps back to a, so c is next (not a again)."""
    rr = RoundRobin()
    cur = rr.schedule((0, 1, 2), (True, True, True), 0)[1]
    assert cur == 1
    cur = rr.del_dest((0, 1, 2), cur, 1)
    assert cur == 0
    assert rr.schedule((0, 2), (True, True), cur) == (2, 2)
    assert rr.del_dest((0, 1, 2), 0, 0) == HEAD
    assert rr.schedule((1, 2), (True, True), HEAD) == (1, 1)


def kernel_lc(overload: tuple[bool, ...], weights: tuple[int, ...], oh: tuple[int, ...]) -> int:
    """ip_vs_lc.c:39-50: skip OVERLOAD or weight 0; `!least || doh < loh`."""
    least = -1
    for k in range(len(weights)):
        if overload[k] or weights[k] == 0:  # :42-44
            continue
        if least < 0 or oh[k] < oh[least]:  # :46
            least = k
    return least


def kernel_wlc(overload: tuple[bool, ...], weights: tuple[int, ...], oh: tuple[int, ...]) -> int:
    """ip_vs_wlc.c:50-75: the first dest neither OVERLOAD nor weight 0 starts; the rest skip only OVERLOAD and
    replace it when loh * w_dest > doh * w_least."""
    first = next((k for k in range(len(weights)) if not overload[k] and weights[k] > 0), -1)  # :50-57
    if first < 0:
        return -1
    least = first
    for k in range(first + 1, len(weights)):  # :64-75
        if overload[k]:
            continue
        if oh[least] * weights[k] > oh[k] * weights[least]:
            least = k
    return least


@pytest.mark.parametrize("weighted", [False, True])
def test_lc_wlc_whole_domain(weighted: bool) -> None:
    s = SCHEDULERS["wlc" if weighted else "lc"]
    assert isinstance(s, LeastConnection) and s.reads_load and s.name == ("wlc" if weighted else "lc")
    ref = kernel_wlc if weighted else kernel_lc
    for n in range(0, 4):
        order = tuple(range(n))
        for overload in itertools.product((False, True), repeat=n):
            for weights in itertools.product((0, 1, 2, 3), repeat=n):
                usable = tuple(not o and w > 0 for o, w in zip(overload, weights, strict=True))
                for oh in itertools.product((0, 1, 2, 5), repeat=n):
                    k = ref(overload, weights, oh)
                    want = (order[k] if k >= 0 else -1, 7)
                    assert s.schedule(order, usable, 7, weights, oh) == want, (overload, weights, oh)
                    assert s.del_dest(order, 7, 0) == 7 if n else True


def test_scheduler_table() -> None:
    assert sorted(SCHEDULERS) == ["lc", "rr", "sh", "sh-fallback", "sh-fallback-port", "sh-port", "wlc"]
    assert not SCHEDULERS["rr"].reads_load
    assert all(SCHEDULERS[n].reads_load for n in ("lc", "wlc", "sh", "sh-fallback", "sh-port", "sh-fallback-port"))
    # only the sh-port flag puts the source port in the hash (ip_vs_sh_schedule: IP_VS_SVC_F_SCHED_SH_PORT)
    assert [n for n, s in sorted(SCHEDULERS.items()) if s.hashes_port] == ["sh-fallback-port", "sh-port"]
    assert {n: s.name for n, s in SCHEDULERS.items()} == {n: n for n in SCHEDULERS}
    assert scheduler_for(VARIANTS["K516"], "wlc") is SCHEDULERS["wlc"]
