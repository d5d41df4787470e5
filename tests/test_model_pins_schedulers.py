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


# ---------------------------------------------------------------------- sh (ip_vs_sh.c, 6.1)
SH_TAB_SIZE = 256  # IP_VS_SH_TAB_BITS 8


def kernel_sh_buckets(order: tuple[int, ...], weights: tuple[int, ...]) -> list[int | None]:
    """ip_vs_sh.c:163-201 ip_vs_sh_reassign: walk the dest list (head first) around and around, a dest filling
    buckets until ++d_count >= its weight (so a weight-0 dest takes one). An empty list leaves them NULL."""
    if not order:
        return [None] * SH_TAB_SIZE
    out: list[int | None] = []
    i = d_count = 0
    for _ in range(SH_TAB_SIZE):
        out.append(i)  # the index in `order` of the bucket's dest
        d_count += 1
        if d_count >= weights[i]:
            i, d_count = (i + 1) % len(order), 0
    return out


def kernel_sh(order: tuple[int, ...], usable: tuple[bool, ...], buckets: list[int | None], ihash: int,
              fallback: bool) -> int:
    """ip_vs_sh_get (:103-111) and ip_vs_sh_get_fallback (:120-157); is_unavailable (:74-78) is `not usable`.
    ihash is hash_32(port + addr) & mask; ip_vs_sh_hashkey(.., offset) adds offset to it (:84-98)."""
    first = buckets[ihash]
    if first is None:
        return -1
    if usable[first]:
        return order[first]
    if not fallback:
        return -1
    for offset in range(SH_TAB_SIZE):
        roffset = (offset + ihash) % SH_TAB_SIZE
        k = buckets[(roffset + ihash) & (SH_TAB_SIZE - 1)]
        if k is None:
            break
        if usable[k]:
            return order[k]
    return -1


HASHES = sorted({*range(0, SH_TAB_SIZE, 37), 1, 2, 3, 127, 128, 129, 254, 255})


@pytest.mark.parametrize("fallback", [False, True])
def test_sh_whole_domain(fallback: bool) -> None:
    """Every order of up to three dests, weights 0-2, every availability; a spread of hashes (the model's
    client_hash is the kernel's ihash); the cursor is neither read nor written."""
    names = ["sh-fallback", "sh-fallback-port"] if fallback else ["sh", "sh-port"]
    for order in ORDERS:
        for weights in itertools.product(range(3), repeat=len(order)):
            buckets = kernel_sh_buckets(order, weights)
            for usable in itertools.product((False, True), repeat=len(order)):
                for h in HASHES:
                    want = kernel_sh(order, usable, buckets, h, fallback)
                    # the port flag changes the hash's input, not the walk: its twin is checked on the ends
                    for name in names if h in (0, SH_TAB_SIZE - 1) else names[:1]:
                        got = SCHEDULERS[name].schedule(order, usable, 5, weights, (0,) * len(order), h)
                        assert got == (want, 5), (name, order, weights, usable, h)
    # the model reduces a hash modulo the table: a client_hash of 256 + h is h
    assert SCHEDULERS["sh"].schedule((0, 1), (True, True), 0, (1, 1), (0, 0), 257) == \
        SCHEDULERS["sh"].schedule((0, 1), (True, True), 0, (1, 1), (0, 0), 1)


def test_sh_keeps_no_state_on_delete() -> None:
    """ip_vs_sh_del_dest (:261-272) rebuilds the table from the list: nothing like rr's cursor moves."""
    for name in ("sh", "sh-fallback", "sh-port", "sh-fallback-port"):
        for order in ORDERS:
            for d in order:
                assert SCHEDULERS[name].del_dest(order, 7, d) == 7


def test_a_patched_schedulers_choice_is_checked() -> None:
    """A patch's scheduler-choice hook returns (dest, cursor): -1 is "none", below it is refused."""
    from ipvs_verify.model.scheduler import _check_choice

    assert _check_choice((-1, 0)) == (-1, 0)
    assert _check_choice((2, HEAD)) == (2, HEAD)
    for bad, err in (((-2, 0), ValueError), ((1,), TypeError), ([1, 0], TypeError), ((True, 0), TypeError),
                     ((1, 0.5), TypeError)):
        with pytest.raises(err):
            _check_choice(bad)


def test_the_scheduler_decisions_domain_is_every_rr_input_of_up_to_three_dests() -> None:
    """What a patch's scheduler-choice hook is compared on (issue 16): every order of 1-3 of the default
    scope's three pods, every usable set, every cursor (the head or a listed dest)."""
    from ipvs_verify.model.scheduler import _rr_domain

    v = VARIANTS["K516"]
    got = list(_rr_domain(v, None))
    want = [(v, "rr", o, u, c) for o in ORDERS if o for u in itertools.product((False, True), repeat=len(o))
            for c in (HEAD, *o)]
    assert sorted(got, key=repr) == sorted(want, key=repr)
