"""Conformance against a real Linux IPVS kernel (User-Mode Linux 6.1), and the harness's own checks.

The guest boots once per session; every scenario runs in it. If the kernel cannot be prepared (package
missing, boot failure) the kernel tests are skipped with the reason. Slow scenarios (minutes of real
waiting) run only when selected: `python -m pytest -m slow tests/test_conformance.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ipvs_verify.conformance.compare import (
    FAST_WAIT,
    SCENARIO_DIR,
    compare_runs,
    compare_step,
    default_scenarios,
    is_slow,
    not_comparable,
    real_wait,
)
from ipvs_verify.conformance.kernel import (
    KernelRun,
    KernelScenario,
    KernelStep,
    parse_conns,
    parse_dests,
    run_on_kernel,
)
from ipvs_verify.conformance.uml import Guest, KernelUnavailable, _xstate_filter
from ipvs_verify.model.variants import variant_for_kernel
from ipvs_verify.scenario import StepResult, load_scenario, run_scenario, scenario_config

CONFORMANCE = sorted((SCENARIO_DIR / "conformance").glob("*.yaml"))
FAST = default_scenarios(include_slow=False)
SLOW = [p for p in default_scenarios(include_slow=True) if p not in FAST]


# ------------------------------------------------------------------ without a kernel
def test_conformance_scenarios_meet_their_own_expectations_in_the_model() -> None:
    assert len(CONFORMANCE) >= 16
    for path in CONFORMANCE:
        sc = load_scenario(path)
        if not_comparable(sc):
            continue
        run = run_scenario(sc, sc.variant)
        failures = [f"{path.name} step {s.index}: {f}" for s in run.steps for f in s.failures]
        assert not failures, "\n".join(failures)


def test_slow_split() -> None:
    slow = [load_scenario(p) for p in SLOW]
    assert slow and all(is_slow(sc) for sc in slow)
    assert all(real_wait(load_scenario(p)) <= FAST_WAIT for p in FAST)
    assert any(sc.data.conformance.slow for sc in slow)  # S01/S02 are marked slow explicitly


def test_parse_proc_tables() -> None:
    conns = parse_conns(
        "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n"
        "TCP 0A000002 9C40 0A60000A 0050 0AF40003 0050 TIME_WAIT       119\n"
        "UDP 0A000002 9C41 0A60000A 0050 0AF40002 0050 UDP             299\n")
    assert conns == [
        {"proto": "TCP", "client": ("10.0.0.2", 40000), "vip": ("10.96.0.10", 80), "dest": "10.244.0.3",
         "state": "TIME_WAIT", "expires": 119},
        {"proto": "UDP", "client": ("10.0.0.2", 40001), "vip": ("10.96.0.10", 80), "dest": "10.244.0.2",
         "state": "NORMAL", "expires": 299},
    ]
    dests = parse_dests(
        "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\nTCP  0A60000A:0050 rr \n"
        "  -> 0AF40003:0050      Masq    0      1          2         \n"
        "  -> 0AF40002:0050      Masq    1      0          0         \n")
    assert dests == {"10.244.0.3": {"weight": 0, "active": 1, "inactive": 2},
                     "10.244.0.2": {"weight": 1, "active": 0, "inactive": 0}}


def test_compare_step_sees_each_kind_of_difference() -> None:
    dests = {"a": {"weight": 1, "active": 0, "inactive": 1, "deleted": False}}
    model = StepResult(1, 1, 0, "request", "", "connected", "a", {"state": "TIME_WAIT", "dest": "a"}, dests)
    same = KernelStep(1, 1, 0, "request", "connected", "a", {"state": "TIME_WAIT", "dest": "a"},
                      {"a": {"weight": 1, "active": 0, "inactive": 1, "deleted": False}})
    assert compare_step(same, model) == []
    for change, word in (({"summary": "no-route"}, "outcome"), ({"pod": "b"}, "pod reached"),
                         ({"entry": {"state": "SYN_RECV", "dest": "a"}}, "entry"),
                         ({"dests": {"a": {"weight": 0, "active": 0, "inactive": 1, "deleted": False}}}, "weight"),
                         ({"dests": {}}, "deleted"), ({"neigh": {"b": "live"}}, "neighbour of b")):
        k = KernelStep(**{**same.__dict__, **change})
        bad = compare_step(k, model)
        assert bad and word in bad[0], (change, bad)


def test_a_waits_retransmission_meets_the_neighbour_state_of_its_moment() -> None:
    """A retransmission during a wait met the entry as it was when it left (PROBE), not as it is at the
    wait's end (FAILED since): B10's lost SYN 7 s after the first one, 1 s before the probes failed."""
    k = KernelScenario.__new__(KernelScenario)  # only the timeline is used
    k.timeline = [{"t": 51.0, "neigh": {"b": {"state": "PROBE"}}}, {"t": 54.0}]
    now = {"neigh": {}}
    assert k._nud_at(53.0, "b", now) == "PROBE"
    assert k._nud_at(54.5, "b", now) is None  # the entry freed by then: nothing live to send to
    assert k._nud_at(-1.0, "b", {"neigh": {"b": {"state": "INCOMPLETE"}}}) == "INCOMPLETE"


def test_missing_kernel_is_reported_not_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    from ipvs_verify.conformance import uml

    monkeypatch.setattr(uml, "UML_BINARIES", ("/nonexistent/linux.uml",))
    with pytest.raises(KernelUnavailable, match="apt-get install user-mode-linux"):
        uml.find_uml()
    monkeypatch.setattr(uml, "UML_BINARIES", ("/bin/true",))
    monkeypatch.setattr(uml, "GUEST_TOOLS", ("/nonexistent/ipvsadm",))
    with pytest.raises(KernelUnavailable, match="apt-get install ipvsadm"):
        uml.find_uml()


def test_xstate_filter_is_a_complete_program() -> None:
    code = _xstate_filter()
    assert len(code) % 8 == 0 and len(code) // 8 == 11


# ------------------------------------------------------------------ on the real kernel
@pytest.fixture(scope="session")
def guest() -> Iterator[Guest]:
    try:
        g = Guest()
        g.boot()
    except KernelUnavailable as e:
        pytest.skip(f"real kernel unavailable: {e}")
    yield g
    g.close()


_runs: dict[tuple[Path, str], KernelRun] = {}


def _kernel_run(guest: Guest, path: Path, variant: str) -> KernelRun:
    if (path, variant) not in _runs:
        sc = load_scenario(path)
        _runs[(path, variant)] = run_on_kernel(guest, sc, scenario_config(sc, variant), f"t{len(_runs)}")
    return _runs[(path, variant)]


def _check(guest: Guest, path: Path) -> None:
    sc = load_scenario(path)
    reason = not_comparable(sc)
    if reason:
        pytest.skip(f"not comparable: {reason}")
    variant = variant_for_kernel(guest.uname).name
    cmp = compare_runs(sc, variant, _kernel_run(guest, path, variant), run_scenario(sc, variant))
    bad = [f"step {s.kernel.index} (line {s.kernel.line}): {m}" for s in cmp.steps for m in s.mismatches]
    if sc.data.conformance.known_mismatch:
        assert bad, f"{path.name} is marked as a known mismatch but the kernel now matches the model"
        pytest.xfail(f"known mismatch: {sc.data.conformance.known_mismatch}")
    assert not bad, f"kernel {guest.uname} vs model {variant}:\n" + "\n".join(bad)


@pytest.mark.conformance
def test_guest_is_the_kernel_the_model_names(guest: Guest) -> None:
    assert guest.uname.startswith("6.1.")
    assert variant_for_kernel(guest.uname).name == "K516"


@pytest.mark.conformance
@pytest.mark.parametrize("path", FAST, ids=lambda p: p.stem)
def test_kernel_matches_model(guest: Guest, path: Path) -> None:
    _check(guest, path)


@pytest.mark.conformance
def test_kernel_tells_variants_apart(guest: Guest) -> None:
    """The comparison can fail: C07's kernel run contradicts the pre-c95c07836fa4 model (K46)."""
    path = SCENARIO_DIR / "conformance" / "C07-weight0-running-mode0-nodest1.yaml"
    sc = load_scenario(path)
    variant = variant_for_kernel(guest.uname).name
    cmp = compare_runs(sc, "K46", _kernel_run(guest, path, variant), run_scenario(sc, "K46"))
    assert not cmp.ok and any("pod reached: kernel a, model b" in m for s in cmp.steps for m in s.mismatches)


@pytest.mark.conformance
@pytest.mark.slow
@pytest.mark.parametrize("path", SLOW, ids=lambda p: p.stem)
def test_kernel_matches_model_slow(path: Path, request: pytest.FixtureRequest) -> None:
    expr = request.config.option.markexpr or ""
    if "slow" not in expr or "not slow" in expr:
        pytest.skip(f"slow ({real_wait(load_scenario(path))} s of real waiting): select with -m slow")
    _check(request.getfixturevalue("guest"), path)


@pytest.mark.conformance
@pytest.mark.slow
def test_qemu_backend_matches_model(request: pytest.FixtureRequest) -> None:
    """The second backend: Debian's x86 6.1 kernel under qemu TCG runs the same scenarios (about 25 s)."""
    expr = request.config.option.markexpr or ""
    if "slow" not in expr or "not slow" in expr:
        pytest.skip("slow (qemu TCG boot): select with -m slow")
    from ipvs_verify.conformance.compare import compare_scenario
    from ipvs_verify.conformance.qemu import QemuGuest

    try:
        g = QemuGuest()
        g.boot()
    except KernelUnavailable as e:
        pytest.skip(f"qemu backend unavailable: {e}")
    try:
        assert g.uname.startswith("6.1.") and variant_for_kernel(g.uname).name == "K516"
        names = ("C03-81775-weight0-destroyed-mode0-nodest0", "C07-weight0-running-mode0-nodest1",
                 "U02-udp-weight0-destroyed", "P01-persistence-quiescent-off")
        for i, name in enumerate(names):
            cmp = compare_scenario(g, load_scenario(SCENARIO_DIR / "conformance" / f"{name}.yaml"), f"q{i}")
            assert cmp.ok, [m for s in cmp.steps for m in s.mismatches]
    finally:
        g.close()
