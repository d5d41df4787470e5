"""The node's INVALID drop (Config.invalid_drop): a SYN scheduled past a live conntrack entry that names another
pod gets an answer conntrack finds INVALID (scenarios/conformance/C35, C36 on the real kernel). Found by search:
K41 and KT17 reschedule without dropping while such an entry lives; kube-proxy's IPVS mode installs no such
rule, so without it their verdicts stand."""

from __future__ import annotations

import pytest

from ipvs_verify.model.config import make_config
from ipvs_verify.model.events import Ev
from ipvs_verify.model.system import System
from ipvs_verify.properties.catalog import BY_NAME
from ipvs_verify.runner.matrix import DEFAULT_SCOPE
from ipvs_verify.runner.verdicts import check_config

P3 = (BY_NAME["no-syn-dropped-on-reuse"],)


@pytest.mark.parametrize("variant", ["K41", "KT17"])
def test_a_search_finds_the_dropped_answer_and_only_with_the_rule(variant: str) -> None:
    with_rule = make_config(variant, "1.30", {"conn_reuse_mode": 1}, DEFAULT_SCOPE, invalid_drop=True)
    found = check_config(with_rule, P3, 200_000).verdicts[0]
    assert found.status == "violated"
    sys = System(with_rule)
    st = sys.initial_states()[0]
    events = []
    for a in found.actions:
        st, events = sys.step(st, a)
    assert any(e[0] == Ev.REPLY_INVALID for e in events)  # the violating step: the answer, not IPVS, is dropped
    assert not any(e[0] == Ev.SYN_DROPPED for e in events)
    without = make_config(variant, "1.30", {"conn_reuse_mode": 1}, DEFAULT_SCOPE)
    assert check_config(without, P3, 200_000).verdicts[0].status == "holds"


def test_the_rule_without_conntrack_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid_drop needs nf_conntrack"):
        make_config("K516", "1.30", {}, DEFAULT_SCOPE, nf_conntrack=False, invalid_drop=True)


def test_without_the_rule_the_pod_a_conntrack_entry_names_is_not_kept() -> None:
    """Off, Flow.ct_live is 0 or 1 (the pod is not part of the state: no state is split by it)."""
    cfg = make_config("K41", "1.30", {"conn_reuse_mode": 1}, DEFAULT_SCOPE)
    sys = System(cfg)
    seen = set()
    frontier = sys.initial_states()
    for _ in range(4):
        nxt = []
        for st in frontier:
            for a in sys.actions(st):
                post, _ = sys.step(st, a)
                seen |= {fl.ct_live for fl in post.flows}
                nxt.append(post)
        frontier = nxt[:200]
    assert seen <= {0, 1} and 1 in seen
