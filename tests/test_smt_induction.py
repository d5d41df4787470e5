"""The Z3 induction engine's unbounded proofs against the complete untimed explicit search (issue 4), apart
from tests/test_smt_engine.py so that the two long files run on different pytest-xdist workers
(`--dist loadfile` keeps a file on one)."""

from __future__ import annotations

import pytest

from ipvs_verify.engines.explicit import explore
from ipvs_verify.engines.induction import candidate_lemmas, run_induction
from ipvs_verify.engines.smt_encoding import Encoding
from tests.test_smt_engine import CELLS, FULL, SAFETY, cfg

# ---------------------------------------------------------------------- induction (unbounded proofs)
# the targets: K516/K46UW mode 0 property 1; K46U/K59/K516 mode 1 property 1. Property 3 was one too
# until the client's orphaned FIN_WAIT1 socket joined the model: its FINs keep the flow's conntrack entry
# confirmed, and the port's first SYN after it gives up is dropped at weight 0 (C33 on the real kernel)
PROOF_CELLS = [(c.variant, c.overrides[0][1]) for c in CELLS] if FULL else [("K516", 0), ("K46U", 1), ("K41", 0)]
REQUIRED = {("K516", 0, 1), ("K46UW", 0, 1), ("K46U", 1, 1), ("K59", 1, 1), ("K516", 1, 1)}


@pytest.mark.parametrize("variant,mode", PROOF_CELLS)
def test_induction_agrees_with_the_complete_untimed_search(variant: str, mode: int) -> None:
    """proved <=> the complete untimed search finds no violation and reaches every "sometimes" check;
    vacuous <=> no violation, a check never reached; violated <=> a violation. Never a cti at this scope."""
    config = cfg(variant, mode)
    run = run_induction(config, SAFETY)
    enc = Encoding(config, "untimed")
    ex = explore(enc.sys, SAFETY, 2_000_000)
    assert ex.complete
    for p, proof in zip(SAFETY, run.proofs, strict=True):
        missing = [r.name for r in p.sometimes if r.name not in ex.reached[p.name]]
        want = "violated" if p.name in ex.violations else "vacuous" if missing else "proved"
        assert proof.status == want, (p.name, proof.status, want, proof.detail, proof.cti[:1])
        if (variant, mode, p.number) in REQUIRED:
            assert proof.status == "proved"
    # the strengthening is proved inductive by Z3; cross-check it on every explicitly reachable untimed state
    for st in ex.states:
        values = candidate_lemmas(enc, enc.encode(st))
        assert all(values[name] for name in run.lemmas), [n for n in run.lemmas if not values[n]]
