"""The reasons events report, pinned against the kernel code that drops or breaks (issue 19).

A dropped SYN or datagram names the block that dropped it, and a broken connection why it broke; traces,
stories and diagrams print these reasons. Which block drops follows ipvs-kernel.md's pseudocode of ip_vs_in
(lines 144-181: the port-reuse block's NF_DROP, f719e3754ee2; the server-status block's NF_DROP before 5.9)
and, from 5.9, 6.1's ip_vs_core.c:2050-2067 (a deleted dest's entry is expired and the packet rescheduled).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ipvs_verify import scenario as sc_mod
from ipvs_verify.model.events import BrokenWhy, DropWhy, Ev, Event

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def events_of(name: str, variant: str, monkeypatch: pytest.MonkeyPatch) -> list[Event]:
    """Every event of every step of the scenario's run (System.step, recorded)."""
    seen: list[Event] = []
    real = sc_mod.System.step

    def step(self, st, action):  # type: ignore[no-untyped-def]
        st2, ev = real(self, st, action)
        seen.extend(ev)
        return st2, ev

    monkeypatch.setattr(sc_mod.System, "step", step)
    run = sc_mod.run_scenario(sc_mod.load_scenario(SCENARIOS / name), variant)
    assert run.ok, [s.failures for s in run.steps if s.failures]
    return seen


def reasons(events: list[Event], kind: Ev) -> set[int]:
    return {e[2] for e in events if e[0] == kind}


def test_reuse_drop_names_the_port_reuse_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """T02, K46 mode 1: f719e3754ee2 drops the reusing SYN in the port-reuse block (the 1 s of #70747)."""
    assert reasons(events_of("T02-reuse-delay-mode1.yaml", "K46", monkeypatch), Ev.SYN_DROPPED) == {DropWhy.REUSE}


def test_no_drop_with_unconfirmed_conntrack(monkeypatch: pytest.MonkeyPatch) -> None:
    """T02 on K46U: f0a5e4d7 reschedules at once (the TIME_WAIT conntrack was reopened, not confirmed)."""
    assert reasons(events_of("T02-reuse-delay-mode1.yaml", "K46U", monkeypatch), Ev.SYN_DROPPED) == set()


def test_deleted_dest_drop_names_the_server_status_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """T07, K46 mode 0: the reuse block is off (mode 0); the server-status block drops the SYN."""
    assert reasons(events_of("T07-deleted-dest-reuse.yaml", "K46", monkeypatch), Ev.SYN_DROPPED) == {DropWhy.NODEST}
    assert reasons(events_of("T07-deleted-dest-reuse.yaml", "K516", monkeypatch), Ev.SYN_DROPPED) == set()


def test_udp_deleted_dest_drop(monkeypatch: pytest.MonkeyPatch) -> None:
    """T10b: before 5.9 the server-status block drops the datagram; from 5.9 nothing is dropped."""
    ev = events_of("T10b-udp-deleted-dest.yaml", "K46", monkeypatch)
    assert reasons(ev, Ev.DGRAM_DROPPED) == {DropWhy.NODEST}
    assert reasons(events_of("T10b-udp-deleted-dest.yaml", "K59", monkeypatch), Ev.DGRAM_DROPPED) == set()


def test_broken_connection_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    """T08: before 5.9 the server-status block drops the data (DEST_DELETED); from 5.9 the entry is gone and the
    node's own stack answers RST (RESET)."""
    assert reasons(events_of("T08-deleted-dest-established.yaml", "K46", monkeypatch), Ev.BROKEN) == {
        BrokenWhy.DEST_DELETED}
    assert reasons(events_of("T08-deleted-dest-established.yaml", "K59", monkeypatch), Ev.BROKEN) == {
        BrokenWhy.RESET}
