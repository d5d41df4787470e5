"""A change to the model: kernel features added or removed, settings, and replaced decision points (issue 16).

A patch is what a patch file says (ipvs_verify/patching/ reads them), applied to a configuration by
make_config in a fixed order: the variant's features and hooks, kube-proxy's settings and hooks, then the
sysctls (kernel defaults, kube-proxy's start-up sysctls, the cell's overrides, the patch's own sysctls), then
timing and scope. A patch that changes kube-proxy's start-up sysctls is compared with kube-proxy starting
last on both sides (`kube_proxy_last`: EnsureSysctl runs at every start of kube-proxy, over whatever the node
had), or the cell's own conn_reuse_mode would hide the change. The model never reads a patch file.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ipvs_verify.model.decision_points import DECISION_POINTS, Hook, PatchError
from ipvs_verify.model.kube_proxy import KubeProxyVersion
from ipvs_verify.model.variants import Feature, Variant, feature_problems

# the KubeProxyVersion fields that change which sysctls kube-proxy ensures at start-up (#71114, #102122, #71834)
SYSCTL_SETTINGS = ("reuse_policy", "sets_nodest_and_quiescent")


@dataclass(frozen=True)
class ModelPatch:
    id: str  # short, as it shows in a cell's label: a commit prefix, a PR number, a name
    origin: str  # the file it came from (blamed in errors)
    digest: str = ""  # sha256 of that file (a trace names the exact patch it was found with)
    add: frozenset[Feature] = frozenset()
    remove: frozenset[Feature] = frozenset()
    sysctls: tuple[tuple[str, int], ...] = ()
    kube_proxy: tuple[tuple[str, Any], ...] = ()  # KubeProxyVersion field -> value
    timing: tuple[tuple[str, int], ...] = ()  # Timing field -> seconds
    ipvs_timeouts: tuple[tuple[str, int], ...] = ()  # ipvsadm --set: tcp, tcpfin, udp -> seconds
    scope: tuple[tuple[str, int], ...] = ()  # Scope field -> value
    hooks: tuple[Hook, ...] = ()

    @property
    def changes_startup_sysctls(self) -> bool:
        return any(k in SYSCTL_SETTINGS for k, _ in self.kube_proxy) or any(
            h.point == "startup-sysctls" for h in self.hooks)

    def apply_variant(self, v: Variant) -> Variant:
        if self.add & v.features:
            raise PatchError(f"{self.origin}: kernel.add: {v.name} already has "
                             f"{', '.join(sorted(f.value for f in self.add & v.features))} (it contradicts its base)")
        if self.remove - v.features:
            missing = ", ".join(sorted(f.value for f in self.remove - v.features))
            raise PatchError(f"{self.origin}: kernel.remove: {v.name} has no {missing} (it contradicts its base)")
        features = (v.features | self.add) - self.remove
        problems = feature_problems(features)
        if problems:
            raise PatchError(f"{self.origin}: kernel: on {v.name} this is no kernel: {'; '.join(problems)}")
        taken = {h.point for h in v.hooks} & {h.point for h in self.hooks if _owner(h) == "kernel"}
        if taken:
            raise PatchError(f"{self.origin}: {', '.join(sorted(taken))}: already replaced by another patch")
        return replace(v, name=f"{v.name}+{self.id}", features=features,
                       hooks=v.hooks + tuple(h for h in self.hooks if _owner(h) == "kernel"))

    def apply_kube_proxy(self, kp: KubeProxyVersion) -> KubeProxyVersion:
        kp_hooks = tuple(h for h in self.hooks if _owner(h) == "kube-proxy")
        taken = {h.point for h in kp.hooks} & {h.point for h in kp_hooks}
        if taken:
            raise PatchError(f"{self.origin}: {', '.join(sorted(taken))}: already replaced by another patch")
        return replace(kp, **dict(self.kube_proxy), hooks=kp.hooks + kp_hooks)


def _owner(h: Hook) -> str:
    return DECISION_POINTS[h.point].owner
