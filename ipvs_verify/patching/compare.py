"""`check`: every property with and without the patches, per cell, and what changed (docs/patches.md).

Every cell's result is cached by content (the model's source, the cell, each patch file's digest, the scope,
the search's cap): checking a second patch on the same base costs only its patched cells, and checking the
same patch again costs nothing.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from ipvs_verify.model.config import Scope
from ipvs_verify.patching.files import Patch
from ipvs_verify.properties.catalog import Property
from ipvs_verify.runner.matrix import CellSpec, MatrixProgress, run_matrix
from ipvs_verify.runner.verdicts import CellResult

Change = Literal["fixed", "still violated", "regression", "weakened", "now holds", "changed", "unchanged"]
CHANGES: tuple[Change, ...] = ("fixed", "still violated", "regression", "weakened", "now holds", "changed",
                               "unchanged")
BAD = ("violated", "undecided", "bounded")


def classify(base: str, patched: str) -> Change:
    """What the patch did to one property in one cell, never claiming more than the two verdicts show."""
    if base == patched:
        return "still violated" if base == "violated" else "unchanged"
    if base == "violated" and patched == "holds":
        return "fixed"
    if base == "holds" and patched == "violated":
        return "regression"  # a real, exactly timed counterexample where the base had a proof
    if base == "holds":
        return "weakened"  # no longer proved (undecided, bounded, vacuous): not a proof that it broke
    if patched == "holds":
        return "now holds"  # proved now, where the base was undecided or bounded
    return "changed"


@dataclass
class CellDiff:
    base_cell: str
    patched_cell: str
    prop: str
    base: str
    patched: str
    change: Change


def base_cells(patches: list[Patch], variants: tuple[str, ...], kube_proxy: str, modes: tuple[int, ...],
               pod_networks: tuple[str, ...]) -> list[CellSpec]:
    """The base's cells. For a patch that changes kube-proxy's start-up sysctls, kube-proxy starts last on both
    sides (the cell's conn_reuse_mode is the node's before it starts), or the cell's mode would hide the patch."""
    last = any(p.change.changes_startup_sysctls for p in patches)
    return [CellSpec(v, kube_proxy, (("conn_reuse_mode", m),), None, None, "rr", net, kube_proxy_last=last)
            for net in pod_networks for v in variants for m in modes]


def patched(cells: list[CellSpec], patches: list[Patch]) -> list[CellSpec]:
    return [replace(c, patches=tuple(p.change for p in patches)) for c in cells]


# ---------------------------------------------------------------------- the baseline cache
def model_digest() -> str:
    """The semantics' source: a change to any of it makes every cached baseline stale."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for sub in ("model", "properties", "engines", "runner", "presentation"):
        for f in sorted((root / sub).rglob("*.py")):
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ipvs-verify" / "baselines"


def _key(digest: str, spec: CellSpec, scope: Scope, props: tuple[Property, ...], cap: int, search: str) -> str:
    # a patch by its file's digest (its hooks' repr holds memory addresses)
    patches = tuple((p.id, p.digest) for p in spec.patches)
    text = repr((digest, replace(spec, patches=()), patches, scope, tuple(p.name for p in props), cap, search))
    return hashlib.sha256(text.encode()).hexdigest()


def run_with_cache(cells: list[CellSpec], scope: Scope, props: tuple[Property, ...], jobs: int, cap: int,
                   cache: Path | None, on_progress: MatrixProgress | None = None,
                   on_done: Callable[[int, CellResult], None] | None = None,
                   search: str = "packed") -> tuple[list[CellResult], int]:
    """The cells' results, from the cache where it has them; returns (results, cache hits)."""
    digest = model_digest() if cache is not None else ""
    paths = [cache / f"{_key(digest, spec, scope, props, cap, search)}.pickle" if cache else None for spec in cells]
    results: dict[int, CellResult] = {}
    todo: list[int] = []
    for i, path in enumerate(paths):
        if path is not None and path.is_file():
            try:
                results[i] = pickle.loads(path.read_bytes())
                if on_done:
                    on_done(i, results[i])
                continue
            except Exception:  # a damaged or foreign cache file: recompute it
                pass
        todo.append(i)
    hits = len(cells) - len(todo)
    if todo:

        def progress(j: int, *rest: object) -> None:
            if on_progress:
                on_progress(todo[j], *rest)  # type: ignore[arg-type]

        def done(j: int, r: CellResult) -> None:
            if on_done:
                on_done(todo[j], r)

        fresh = run_matrix([cells[i] for i in todo], scope, props, jobs, cap, progress, done, search)
        for i, r in zip(todo, fresh, strict=True):
            results[i] = r
            path = paths[i]
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(pickle.dumps(r))
                tmp.replace(path)
    return [results[i] for i in range(len(cells))], hits


def diff(base: list[CellSpec], after: list[CellSpec], status: dict[str, dict[str, str]],
         props: tuple[Property, ...]) -> list[CellDiff]:
    """`status`: cell slug -> property name -> verdict, for the base and the patched cells."""
    out = []
    for b, a in zip(base, after, strict=True):
        for p in props:
            bs, ps = status[b.slug][p.name], status[a.slug][p.name]
            out.append(CellDiff(b.slug, a.slug, p.name, bs, ps, classify(bs, ps)))
    return out
