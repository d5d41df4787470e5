"""The load simulation (ipvs_verify/load): its one-flow windows against the full model, determinism, the client's
port choice, and its configuration errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ipvs_verify.load.config import Clients, LoadShape, LoadSpec, model_config
from ipvs_verify.load.sim import US, Simulation
from ipvs_verify.model.actions import Act
from ipvs_verify.model.events import Ev
from ipvs_verify.model.state import State
from ipvs_verify.model.system import System
from ipvs_verify.patching.files import resolve_patch

ROOT = Path(__file__).resolve().parent.parent


def spec(**kw: object) -> LoadSpec:
    """A short run on 4 client ports: ports come back within seconds, so every reuse path is met."""
    load = kw.pop("load", LoadShape(mode="open", rate=1.0))
    clients = kw.pop("clients", Clients(port_range=[40000, 40003], port_selection="hint"))
    base = LoadSpec(name="t", duration=200.0, load=load, clients=clients)  # type: ignore[arg-type]
    return replace(base, **kw)  # type: ignore[arg-type]


def replay(s: LoadSpec) -> tuple[Simulation, int]:
    """Run `s`, and replay every step it takes through the full System (every flow): each step must be enabled
    there, give the same events and leave the same State. Returns the run and the number of steps compared."""
    full = System(model_config(s, clients=s.clients.replicas, ports=s.n_ports), "exact")
    box: dict[str, object] = {"st": full.initial_states()[0], "clock": 0, "n": 0}

    def on_step(sim: Simulation, action: tuple[int, int, int], events: tuple[tuple[int, int, int, int], ...]) -> None:
        st: State = box["st"]  # type: ignore[assignment]
        assert sim.now % US == 0
        t = sim.now // US
        if t > box["clock"]:  # type: ignore[operator]
            wait = (Act.WAIT, t - box["clock"], 0)  # type: ignore[operator]
            assert full.enabled(st, wait), f"at {t} s: time cannot pass: a timer is due ({full.actions(st)})"
            st, _ = full.step(st, wait)
            box["clock"] = t
        assert full.enabled(st, action), f"at {t} s: {action} is not enabled in the full model"
        st, ev = full.step(st, action)
        assert ev == events, f"at {t} s: {action}: events differ"
        assert st == sim.full_state(), f"at {t} s: {action}: states differ"
        box["st"] = st
        box["n"] += 1  # type: ignore[operator]

    sim = Simulation(s, on_step=on_step)
    sim.run()
    return sim, box["n"]  # type: ignore[return-value]


RUNS = {
    "K46-mode1-drops": spec(variant="K46", sysctls=(("conn_reuse_mode", 1),)),
    "K46-mode0-rolling": spec(variant="K46", sysctls=(("conn_reuse_mode", 0),), spare_pods=("c", "d"),
                              changes=((20.0, Act.ADD_POD, "c"), (20.0, Act.DELETE_POD, "a"),
                                       (90.0, Act.ADD_POD, "d"), (90.0, Act.DELETE_POD, "b"))),
    "K516-mode0-crash": spec(variant="K516", sysctls=(("conn_reuse_mode", 0),), spare_pods=("c",),
                            changes=((15.0, Act.CRASH_POD, "a"), (25.0, Act.ENDPOINT_GONE, "a"),
                                     (30.0, Act.ADD_POD, "c"))),
    "K516-client-closes-held": spec(variant="K516", load=LoadShape(mode="closed", workers=3, hold=2.0, think=1.0,
                                                                  retry_after=1.0, closer="client"),
                                    spare_pods=("c",), changes=((40.0, Act.DELETE_POD, "b"), (41.0, Act.ADD_POD, "c"))),
    "K46U-bridge": spec(variant="K46U", sysctls=(("conn_reuse_mode", 0),), pod_network="bridge",
                        changes=((10.0, Act.DELETE_POD, "a"),), grace_period=5),
    "K46-nodest0-no-graceful-patch": spec(variant="K46", sysctls=(("conn_reuse_mode", 0), ("expire_nodest_conn", 0)),
                                          patches=(resolve_patch("no-graceful").change,), patch_ids=("no-graceful",),
                                          load=LoadShape(mode="open", rate=1.0, hold=3.0),
                                          changes=((10.0, Act.DELETE_POD, "a"),)),
    "K41-mode1-two-clients": spec(variant="K41", sysctls=(("conn_reuse_mode", 1),),
                                  clients=Clients(replicas=2, port_range=[40000, 40001], port_selection="perturb"),
                                  load=LoadShape(mode="open", rate=1.0, hold=1.0)),
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_windows_step_as_the_full_model(name: str) -> None:
    sim, n = replay(RUNS[name])
    assert n > 50  # the run did something to compare
    st = sim.stats
    assert st.attempted > 50


def test_the_replays_meet_what_they_are_for() -> None:
    """The runs above reach the paths they are named after (else their equivalence proves little)."""
    drops = Simulation(RUNS["K46-mode1-drops"]).run()
    assert drops.drops[1] > 0
    rolling = Simulation(RUNS["K46-mode0-rolling"]).run()
    assert rolling.no_route > 0 and rolling.quiesced
    bridge = Simulation(RUNS["K46U-bridge"], record=True)
    bridge.run()
    kinds = {e[0] for _, _, evs in bridge.log for e in evs}
    # the destroyed pod's neighbour entry is still REACHABLE (the node was sending to it), then STALE, probed, FAILED
    assert {Ev.SYN_LOST, Ev.NEIGH_STALE, Ev.NEIGH_FAILED} <= kinds
    crash = Simulation(RUNS["K516-mode0-crash"], record=True)
    crash.run()
    assert any(a[0] == Act.FLUSH for _, a, _ in crash.log)
    nodest = Simulation(RUNS["K46-nodest0-no-graceful-patch"], record=True)
    nodest.run()
    assert any(e[0] == Ev.SYN_DROPPED for _, _, evs in nodest.log for e in evs)
    assert any(e[0] == Ev.BROKEN for _, _, evs in nodest.log for e in evs)
    closes = Simulation(RUNS["K516-client-closes-held"], record=True)
    closes.run()
    assert any(e[0] == Ev.TIME_WAIT_OVER for _, _, evs in closes.log for e in evs)
