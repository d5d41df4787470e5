"""When two configurations are the same transition system: the key that lets the matrix search one cell for
several (in the default matrix, K41, K46, K46U and KT17 in conn_reuse_mode 0 are one model, and so are K59
and K516 in mode 1).

A kernel variant reaches the model only through three kernel decision points, which model/core.py calls
(the port-reuse block, the server-status block, the deleted-dest flush) and which call the others; nothing
else in model/ reads the variant's features (tests/test_model_pins_equivalence.py checks the source). So two
unpatched variants whose three points give the same result on every input of their finite domains, under the
same effective sysctls, give the same `System.step` on every state; with the
rest of the configuration equal (kube-proxy, scope, timing, scheduler, pod network), the searches, verdicts and
counterexamples are the same, action for action. A patched variant (hooks) is keyed by itself.
"""

from __future__ import annotations

from collections.abc import Hashable

from ipvs_verify.model.config import Config
from ipvs_verify.model.decision_points import DECISION_POINTS, unpatched

# the kernel decision points through which the System reads a variant (model/core.py); the scheduler's reads
# no feature, and new-conn-expected and drop-predicate are reached only through port-reuse and server-status
VARIANT_POINTS = ("port-reuse", "server-status", "deleted-dest-flush")


def decision_tables(config: Config) -> tuple[tuple[str, tuple[object, ...]], ...]:
    """Each variant-reading decision point's results over its whole domain, in the domain's order."""
    v, s = config.variant, config.sysctls
    out = []
    for name in VARIANT_POINTS:
        point, fn = DECISION_POINTS[name], unpatched(name)
        assert point.domain is not None
        out.append((name, tuple(fn(*args) for args in point.domain(v, s))))
    return tuple(out)


def model_key(config: Config) -> Hashable:
    """Equal keys: the same transition system. The kernel's version string and the sysctl overrides matter
    only through the effective sysctls, which are part of the key."""
    kernel: Hashable = config.variant if config.variant.hooks else decision_tables(config)
    return (kernel, config.kube_proxy, config.sysctls, config.scope, config.timing, config.scheduler,
            config.nf_conntrack, config.invalid_drop, config.pod_network, config.patches)
