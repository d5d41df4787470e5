"""The verdict matrix: kernel variant x sysctl setting x kube-proxy release, every property per cell.

Cells run in worker processes (`jobs`); results are collected in cell order, so the verdicts, the
counterexample files and the JSON (apart from timings) are the same whatever the number of workers.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ipvs_verify.engines.explicit import SEARCHES, freeze_before_fork
from ipvs_verify.model.config import POD_NETWORKS, Config, Scope, make_config
from ipvs_verify.model.equivalence import model_key
from ipvs_verify.model.patch import ModelPatch
from ipvs_verify.model.system import System
from ipvs_verify.model.variants import DEFAULT_MATRIX_VARIANTS
from ipvs_verify.presentation.minimise import minimise
from ipvs_verify.presentation.story import story_markdown
from ipvs_verify.presentation.trace import build_trace, config_to_json
from ipvs_verify.presentation.trace_model import TraceFile
from ipvs_verify.properties.catalog import PROPERTIES, Property
from ipvs_verify.runner.report import CellReport, MatrixReport, PropertyRef, SearchReport, VerdictReport
from ipvs_verify.runner.verdicts import CellResult, Verdict, check_config

# the default matrix's clients: short requests and long-lived connections, and a client host may lose a
# connection without a packet and reuse its port (as real ones do: a crash, a container restart)
DEFAULT_SCOPE = Scope(long_lived=True, client_crashes=True, kp_window=True)
DEFAULT_MODES = (0, 1)
DEFAULT_KUBE_PROXY = ("1.30",)
DEFAULT_POD_NETWORKS = POD_NETWORKS  # the default matrix covers both: routed /32s and a bridge
EVENT_STATE_CAP = 120_000


# What a cell's clients do (a matrix dimension): `app` is the clients real services have (ephemeral ports, a FIN
# close by either side, a client host may crash: the default scope); `load-tester` binds its ports and closes
# with a RST (SO_LINGER 0), as load testers do (model/config.py Scope.bound_ports, client_resets)
CLIENTS: dict[str, dict[str, Any]] = {"app": {}, "load-tester": {"bound_ports": True, "client_resets": True}}


@dataclass(frozen=True)
class CellSpec:
    variant: str
    kube_proxy: str
    overrides: tuple[tuple[str, int], ...]
    protocol: str | None = None  # the service's protocol for this cell; None keeps the scope's
    persistence: int | None = None  # sessionAffinity ClientIP timeout (s), 0 for none; None keeps the scope's
    scheduler: str = "rr"
    pod_network: str = "routed"
    patches: tuple[ModelPatch, ...] = ()  # `check`: the patches under test, applied in order
    kube_proxy_last: bool = False  # the overrides are the node's before kube-proxy starts (its sysctls win)
    client: str = "app"  # CLIENTS
    invalid_drop: bool = False  # the node's FORWARD drops what conntrack finds INVALID (not kube-proxy's IPVS mode)

    def config(self, scope: Scope) -> Config:
        if CLIENTS[self.client]:
            scope = replace(scope, **CLIENTS[self.client])
        if self.protocol is not None:
            scope = replace(scope, protocol=self.protocol)
        if self.persistence is not None:
            scope = replace(scope, persistence=self.persistence)
        return make_config(self.variant, self.kube_proxy, dict(self.overrides), scope, scheduler=self.scheduler,
                           pod_network=self.pod_network, patches=self.patches,
                           kube_proxy_last=self.kube_proxy_last, invalid_drop=self.invalid_drop)

    @property
    def slug(self) -> str:
        over = "-".join(f"{k.replace('conn_reuse_mode', 'mode').replace('_', '')}{v}" for k, v in self.overrides)
        proto = "" if self.protocol in (None, "tcp") else f"-{self.protocol}"
        persist = f"-persist{self.persistence}" if self.persistence else ""
        sched = "" if self.scheduler == "rr" else f"-{self.scheduler}"
        net = "" if self.pod_network == "routed" else f"-{self.pod_network}"
        patched = "".join(f"+{p.id}" for p in self.patches)
        started = "-kplast" if self.kube_proxy_last else ""
        client = "" if self.client == "app" else f"-{self.client}"
        invalid = "-invaliddrop" if self.invalid_drop else ""
        return (f"{self.variant}{patched}-kp{self.kube_proxy}{started}" + (f"-{over}" if over else "") + proto
                + persist + sched + net + client + invalid)


def default_cells(
    variants: tuple[str, ...] = DEFAULT_MATRIX_VARIANTS,
    modes: tuple[int, ...] = DEFAULT_MODES,
    kube_proxies: tuple[str, ...] = DEFAULT_KUBE_PROXY,
    protocols: tuple[str, ...] = ("tcp",),
    persistence: int = 0,
    scheduler: str = "rr",
    pod_networks: tuple[str, ...] = DEFAULT_POD_NETWORKS,
    clients: tuple[str, ...] = ("app",),
    invalid_drop: bool = False,
) -> list[CellSpec]:
    return [CellSpec(v, kp, (("conn_reuse_mode", m),), proto, persistence, scheduler, net, client=c,
                     invalid_drop=invalid_drop)
            for c in clients for net in pod_networks for proto in protocols for v in variants for kp in kube_proxies
            for m in modes]


# ---------------------------------------------------------------------- workers
# (cell index, phase, states, transitions, depth, seconds)
MatrixProgress = Callable[[int, str, int, int, int, float], None]
_queue: Any = None
_direct: MatrixProgress | None = None


def _init(queue: Any, direct: MatrixProgress | None = None) -> None:
    global _queue, _direct
    _queue, _direct = queue, direct


def _run_cell(args: tuple[int, CellSpec, Scope, tuple[str, ...], int, str]) -> tuple[int, CellResult]:
    idx, spec, scope, prop_names, cap, search = args
    props = tuple(p for p in PROPERTIES if p.name in prop_names)

    def progress(phase: str, states: int, edges: int, depth: int, secs: float) -> None:
        if _queue is not None:
            _queue.put((idx, phase, states, edges, depth, secs))
        elif _direct is not None:  # one worker: the caller's own process
            _direct(idx, phase, states, edges, depth, secs)

    return idx, check_config(spec.config(scope), props, cap, progress, SEARCHES[search])


def run_matrix(
    cells: list[CellSpec],
    scope: Scope = DEFAULT_SCOPE,
    properties: tuple[Property, ...] = PROPERTIES,
    jobs: int = 0,
    cap: int = EVENT_STATE_CAP,
    on_progress: MatrixProgress | None = None,
    on_done: Callable[[int, CellResult], None] | None = None,
    search: str = "packed",
) -> list[CellResult]:
    """Every cell's verdicts, in parallel worker processes; `search` names the explicit search (SEARCHES)."""
    jobs = jobs or mp.cpu_count()
    names = tuple(p.name for p in properties)
    # cells that are one transition system (model/equivalence.py) are searched once: the first of them
    first: dict[Hashable, int] = {}
    same = [first.setdefault(model_key(c.config(scope)), i) for i, c in enumerate(cells)]
    work = [(i, c, scope, names, cap, search) for i, c in enumerate(cells) if same[i] == i]
    # the longest cells first, so that no worker is left with a long one at the end (bridge cells search the
    # most states); results keep the cells' order
    work.sort(key=lambda w: w[1].pod_network != "bridge")
    results: dict[int, CellResult] = {}

    def done_with(i: int, r: CellResult) -> None:
        for j in (j for j, k in enumerate(same) if k == i):
            results[j] = r if j == i else shared_result(r, cells[j].config(scope), cells[i].slug)
            if on_done:
                on_done(j, results[j])

    if jobs == 1:
        _init(None, on_progress)
        try:
            for w in work:
                done_with(*_run_cell(w))
        finally:
            _init(None)
    else:
        freeze_before_fork()
        ctx = mp.get_context("fork")
        manager = ctx.Manager()
        queue = manager.Queue()
        with ctx.Pool(min(jobs, len(work)), initializer=_init, initargs=(queue,)) as pool:
            pending = pool.imap_unordered(_run_cell, work)
            done = 0
            while done < len(work):
                while not queue.empty():
                    if on_progress:
                        on_progress(*queue.get())
                    else:
                        queue.get()
                try:
                    i, r = pending.next(timeout=0.2)  # type: ignore[attr-defined]
                except mp.TimeoutError:
                    continue
                done_with(i, r)
                done += 1
        manager.shutdown()
    return [results[i] for i in range(len(cells))]


def shared_result(r: CellResult, config: Config, slug: str) -> CellResult:
    """The result of a cell that is the same transition system as the cell `slug` searched: its verdicts and
    evidence (the same actions, told with this cell's configuration), and the searches as that cell's, which
    took no time here."""
    verdicts = [replace(v, actions=list(v.actions)) for v in r.verdicts]
    searches = [replace(x, seconds=0.0, coverage=dict(x.coverage)) for x in r.searches]
    return CellResult(config, verdicts, searches, same_as=slug)


# ---------------------------------------------------------------------- counterexample files
def counterexample_trace(result: CellResult, v: Verdict) -> TraceFile:
    cfg = result.config
    actions = v.actions
    if v.prop.kind == "safety" and v.timing != "untimed":
        actions = minimise(System(cfg, "exact"), v.prop, actions)
    return build_trace(cfg, actions, v.prop, "explicit-bfs", v.timing, v.loop_start, v.pod, status=v.status)


def scope_tag(scope: Scope) -> str:
    """A file-name tag for a scope other than the default one, so that its traces never overwrite those."""
    base = replace(scope, protocol=DEFAULT_SCOPE.protocol, persistence=DEFAULT_SCOPE.persistence)
    if base == DEFAULT_SCOPE:
        return ""
    conns = "".join(k for k, on in (("s", scope.short_requests), ("l", scope.long_lived)) if on)
    return (f"-c{scope.clients}p{scope.ports}-pods{''.join(scope.pods)}+{''.join(scope.spare_pods)}"
            f"-ch{scope.changes}{'' if scope.crashes else '-nocrash'}"
            f"{'' if scope.client_crashes else '-noclientcrash'}{'-reset' if scope.client_resets else ''}"
            f"{'-bound' if scope.bound_ports else ''}{'' if scope.kp_window else '-atomickp'}-{conns}")


def cell_key(spec: CellSpec, scope: Scope) -> str:
    """A cell's name: its slug, and the tag of a non-default scope (`scope` is the cell's own, config.scope).
    What the cell's client kind sets belongs to the cell, named by its slug."""
    preset = CLIENTS[spec.client]
    if preset:
        scope = replace(scope, **{k: getattr(DEFAULT_SCOPE, k) for k in preset})
    return spec.slug + scope_tag(scope)


def save_counterexamples(cells: list[CellSpec], results: list[CellResult], out: Path) -> dict[tuple[int, str], Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[tuple[int, str], Path] = {}
    for i, (spec, res) in enumerate(zip(cells, results, strict=True)):
        for v in res.verdicts:
            if v.status not in ("violated", "undecided") or not v.actions:
                continue
            paths[(i, v.prop.name)] = write_trace(out, f"{cell_key(spec, res.config.scope)}--{v.prop.name}",
                                                  counterexample_trace(res, v))
    return paths


def write_trace(out: Path, stem: str, trace: TraceFile) -> Path:
    """A counterexample as STEM.json and its story as STEM.md (not Path.with_suffix: a stem has dots, kp1.30)."""
    path = out / f"{stem}.json"
    path.write_text(trace.to_json())
    (out / f"{stem}.md").write_text(story_markdown(trace))
    return path


def explicit_verdict(v: Verdict, res: CellResult, path: Path | None) -> VerdictReport:
    """An explicit verdict in the shared format (ipvs_verify/runner/report.py)."""
    bound = "; ".join(f"{s.timing} search: {s.bound}" for s in res.searches if not s.complete)
    return VerdictReport(status=v.status, text=v.status, bound=bound if v.status == "bounded" else "",  # type: ignore
                         detail=v.detail, steps=len(v.actions) if v.actions else None,
                         timing=v.timing if v.actions else None, counterexample=str(path) if path else None)


def explicit_cell(spec: CellSpec, res: CellResult, paths: dict[str, Path]) -> CellReport:
    """One cell of the explicit engine as the shared format has it; `paths`: property name -> its trace."""
    return CellReport(
        cell=cell_key(spec, res.config.scope), config=config_to_json(res.config),
        verdicts={"explicit": {v.prop_name: explicit_verdict(v, res, paths.get(v.prop_name)) for v in res.verdicts}},
        searches=[SearchReport(timing=s.timing, states=s.states, transitions=s.transitions, depth=s.depth,
                               complete=s.complete, bound=s.bound, seconds=round(s.seconds, 3), loop=s.loop,
                               coverage=s.coverage) for s in res.searches],
        seconds={"explicit": round(sum(s.seconds for s in res.searches), 3)},
        same_model_as=res.same_as or None,
    )


def property_refs() -> list[PropertyRef]:
    return [PropertyRef(number=p.number, name=p.name, kind=p.kind) for p in PROPERTIES]  # type: ignore[arg-type]


def matrix_report(
    cells: list[CellSpec], results: list[CellResult], paths: dict[tuple[int, str], Path], scope: Scope
) -> MatrixReport:
    """The explicit engine's matrix in the one result format every engine shares (ipvs_verify/runner/report.py)."""
    rows = [explicit_cell(spec, res, {name: p for (ci, name), p in paths.items() if ci == i})
            for i, (spec, res) in enumerate(zip(cells, results, strict=True))]
    return MatrixReport(engines=["explicit"], scope=scope.describe(), properties=property_refs(), cells=rows)


def markdown_table(cells: list[CellSpec], results: list[CellResult], properties: tuple[Property, ...]) -> str:
    """The verdict table in Markdown (violated in capitals), for reports and the README."""
    head = "| cell | mode/ct/nodest/quiesc | " + " | ".join(str(p.number) for p in properties) + " |"
    lines = [head, "|" + "---|" * (len(properties) + 2)]
    for spec, res in zip(cells, results, strict=True):
        s = res.config.sysctls
        sysctls = "/".join(str(int(x)) for x in (s.conn_reuse_mode, s.conntrack, s.expire_nodest_conn,
                                                 s.expire_quiescent_template))
        by_name = {v.prop_name: v.status for v in res.verdicts}
        marks = [("VIOLATED" if by_name[p.name] == "violated" else by_name[p.name]) for p in properties]
        lines.append(f"| {spec.slug} | {sysctls} | " + " | ".join(marks) + " |")
    return "\n".join(lines) + "\n"
