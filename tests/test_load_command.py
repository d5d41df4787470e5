"""`ipvs-verify load`: its exit codes, its located errors on bad load files and options, determinism of its
numbers and files, the client's port choice, and what the field reports' runs show (docs/load.md)."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from ipvs_verify import cli
from ipvs_verify.load.client_ports import PortAllocator
from ipvs_verify.load.config import Clients, LoadShape, LoadSpec, load_spec
from ipvs_verify.load.run import run_one
from ipvs_verify.model.actions import Act

ROOT = Path(__file__).resolve().parent.parent
LOADS = ROOT / "loads"

GOOD = """\
name: t
duration: 20
variant: K46
sysctls: {conn_reuse_mode: 1}
load: {mode: open, rate: 200}
clients: {port_range: [40000, 40999]}
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        cli.main(list(args))
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def test_a_run_is_0_and_prints_its_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "good.yaml"
    f.write_text(GOOD)
    code, out, err = run(capsys, "load", str(f), "--json", "-q")
    assert code == 0, err
    r = json.loads(out)
    c = r["connections"]
    assert c["attempted"] == 4000  # 200/s for 20 s, uniform arrivals
    assert c["completed"] + c["no_route"] + c["refused"] + c["timed_out"] + c["no_port"] + c["broken"] <= 4000
    # 1000 ports, of which 500 even: they come back after 2.5 s, within IPVS's TIME_WAIT: K46 mode 1 drops
    assert r["shares"]["first_syn_lost"] > 0.5
    assert "+1 s" in r["syn_losses"]


BAD = [
    ("name: t\nduration: 20\nload: {mode: open, rate: 200}\ncolour: red\n", ":4: colour: unknown key 'colour'"),
    ("name: t\nduration: 20\nload: {mode: open, rate: -5}\n", ":3: load.rate: expected connections per second"),
    ("name: t\nduration: 20\nload: {mode: open, rate: 5}\nclients:\n  port_range: [60999, 32768]\n",
     ":5: clients.port_range: expected [low, high] with low <= high, got [60999, 32768] (upside down)"),
    ("name: t\nduration: 20\nvariant: K99\nload: {mode: open, rate: 5}\n", ":3: variant: "),
    ("name: t\nduration: 20\nload: {mode: open}\n", ":3: load: expected a rate above 0"),
    ("name: t\nduration: 20\nload: {mode: closed}\n", ":3: load: expected at least 1 worker"),
    ("name: t\nduration: 20\nkube_proxy: 1.30\nload: {mode: open, rate: 5}\n", "(write it in quotes: \"1.30\")"),
    ("name: t\nduration: 20\nscheduler: wlc\nload: {mode: open, rate: 5}\n", ":3: scheduler: scheduler 'wlc'"),
    ("name: t\nduration: 20\nload: {mode: open, rate: 5}\nchanges:\n  - {at: 5, delete-pod: z}\n",
     ":5: changes #1.delete-pod: unknown pod 'z'"),
    ("name: t\nduration: 20\nload: {mode: open, rate: 5}\nchanges:\n  - {at: 5, add-pod: a}\n",
     "pod 'a' is running: add-pod needs it absent"),
    ("name: t\nduration: 20\nload: {mode: open, rate: 5}\nsysctls: {conn_reuse_mode: 7}\n",
     ":4: sysctls.conn_reuse_mode: expected 0..3"),
    ("name: t\nload: {mode: open, rate: 5}\n", ":1: duration: missing"),
    ("name: t\nduration: 20\nload: {mode: closed, workers: 5}\n", ":3: load: expected hold or think above 0"),
    ("name: t\nduration: 20\nload: {mode: open, rate: 5}\npatches: [no-such-patch]\n", ":4: patches #1: "),
]


@pytest.mark.parametrize("text,expected", BAD)
def test_bad_load_file_is_2_with_its_place(capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str,
                                           expected: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    code, out, err = run(capsys, "load", str(f), "-q")
    assert code == 2
    assert err.startswith(f"error: {f}:"), err
    assert expected in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("sweep,expected", [
    ("speed=1,2", "KEY one of rate, workers"),
    ("rate=10,-1", "--sweep rate: expected"),
    ("port_range=40000-39999", "upside down"),
    ("variant=K46,K99", "--sweep variant: "),
    ("rate=", "at least one value"),
])
def test_bad_sweep_is_2(capsys: pytest.CaptureFixture[str], tmp_path: Path, sweep: str, expected: str) -> None:
    f = tmp_path / "good.yaml"
    f.write_text(GOOD)
    code, _, err = run(capsys, "load", str(f), "--sweep", sweep, "-q", "--out", str(tmp_path / "o"))
    assert code == 2
    assert expected in err, err
    assert not (tmp_path / "o").exists()


def _digests(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def test_same_seed_same_numbers_and_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "good.yaml"
    f.write_text(GOOD.replace("rate: 200", "rate: 200, arrivals: poisson"))
    outs = []
    for name in ("a", "b"):
        code, out, err = run(capsys, "load", str(f), "--sweep", "rate=100,300", "--sweep", "variant=K46,K516",
                             "-j", "2", "-q", "--json", "--out", str(tmp_path / name))
        assert code == 0, err
        outs.append(out)
    assert outs[0] == outs[1]
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    assert {p.suffix for p in (tmp_path / "a").iterdir()} == {".csv", ".json", ".png", ".svg"}
    # another seed draws other arrivals and port offsets
    spec = load_spec(f)
    assert run_one(spec) == run_one(spec)
    assert run_one(replace(spec, seed=2))["connections"] != run_one(spec)["connections"]


def test_hint_walks_the_even_ports_then_the_odd_ones() -> None:
    alloc = PortAllocator(100, 109, "hint", random.Random(1))
    busy: set[int] = set()
    picked = []
    for _ in range(11):
        k = alloc.pick(lambda i: i in busy)
        picked.append(k)
        if k >= 0:
            busy.add(k)
    evens = sorted(k for k in picked[:5])
    assert evens == [0, 2, 4, 6, 8]  # low's parity first, each once
    assert all(picked[i + 1] == (picked[i] + 2) % 10 for i in range(4))  # one after the other (stride 2)
    assert sorted(picked[5:10]) == [1, 3, 5, 7, 9]
    assert picked[10] == -1  # EADDRNOTAVAIL


def test_perturb_strides_by_2_to_16() -> None:
    alloc = PortAllocator(0, 28231, "perturb", random.Random(3))
    ks = [alloc.pick(lambda i: False) for _ in range(2000)]
    steps = {(b - a) % 28232 for a, b in zip(ks, ks[1:], strict=False)}
    assert steps <= set(range(2, 17, 2)) and len(steps) == 8
    assert all(k % 2 == 0 for k in ks)


def test_an_odd_range_is_made_even() -> None:
    alloc = PortAllocator(0, 4, "hint", random.Random(0))  # 5 ports, remaining 4 (kernel: remaining &= ~1)
    busy: set[int] = set()
    for _ in range(5):
        k = alloc.pick(lambda i: i in busy)
        assert 0 <= k <= 4
        busy.add(k)
    assert alloc.pick(lambda i: i in busy) == -1


def test_the_70747_collapse_and_its_fix() -> None:
    """conn_reuse_mode=1 with conntrack before f0a5e4d7: every reused port's first SYN is dropped (+1 s), and a
    closed-loop load test's rate falls to workers / (1 s + hold); K59 keeps it (a shorter run than the docs')."""
    spec = replace(load_spec(LOADS / "70747-load-test.yaml"), duration=6.0)
    k46 = run_one(spec)
    k59 = run_one(replace(spec, variant="K59", kernel=None, sysctls=()))
    assert k46["rates"]["last_quarter_per_s"] < 1600
    assert k59["rates"]["achieved_per_s"] > 29_000
    assert k59["shares"]["first_syn_lost"] == 0


def test_81775_more_replicas_fewer_destroyed_pods() -> None:
    spec = replace(load_spec(LOADS / "81775-rolling-update.yaml"), duration=120.0)
    shares = [run_one(replace(spec, clients=spec.clients.model_copy(update={"replicas": n})))["shares"]["no_route"]
              for n in (1, 4, 16)]
    assert shares[0] > shares[1] > shares[2] == 0
    fixed = run_one(replace(spec, variant="K516", kernel=None))
    assert fixed["shares"]["no_route"] == 0


def test_quiesced_real_server_linger_is_reported() -> None:
    # 50/s over 28232 ports: no port comes back within IPVS's TIME_WAIT (120 s)
    spec = LoadSpec(name="t", duration=200.0, load=LoadShape(mode="open", rate=50.0), clients=Clients(),
                    variant="K516", changes=((10.0, Act.DELETE_POD, "a"),))
    q = run_one(spec)["quiesced_real_servers"]["pod-a"]
    # quiesced by the sync 1 s after the delete; deleted by the first 60 s check after its last TIME_WAIT entry
    # (made by about 11 s) is gone at about 131 s
    assert q["quiesced_at"] == 11.0
    assert q["deleted_at"] == 180.0 and q["lingered"] == 169.0
    # on 1000 ports each port comes back within 20 s; mode 1 (5.9+) reschedules it and expires the old entry, so
    # pod a drains by the first check
    small = replace(spec, clients=Clients(port_range=[40000, 40999]))
    assert run_one(small)["quiesced_real_servers"]["pod-a"]["deleted_at"] == 60.0


def test_shipped_load_files_load() -> None:
    files = sorted(LOADS.glob("*.yaml"))
    assert len(files) >= 2
    pkg = Path(cli.__file__).parent / "loads"  # package data: an installed copy finds them too
    assert sorted(p.name for p in pkg.glob("*.yaml")) == [f.name for f in files]
    for f in files:
        load_spec(f)


def test_an_interrupted_run_is_130(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                   tmp_path: Path) -> None:
    from ipvs_verify.load import sim

    def interrupted(self: object, progress: object = None) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(sim.Simulation, "run", interrupted)
    f = tmp_path / "good.yaml"
    f.write_text(GOOD)
    assert run(capsys, "load", str(f), "-q")[0] == 130
