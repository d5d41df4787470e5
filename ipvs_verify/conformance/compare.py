"""Run scenarios on the real kernel and through the model's variant for that kernel; compare step by step.

Compared at every step: the client's outcome (and the pod reached when connected), the newest IPVS
entry of the step's flow (state and dest; `ipvsadm -lnc`), and each real server's weight, ActiveConn and
InActConn (`ipvsadm -ln`; a deleted one is absent there). Entry expiry times are shown, not compared.
A scenario the model cannot express (UDP, persistence) is reported as not comparable, with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ipvs_verify.conformance.kernel import HARNESS_STEPS, KernelRun, KernelStep, run_on_kernel
from ipvs_verify.conformance.uml import Guest
from ipvs_verify.model.variants import variant_for_kernel
from ipvs_verify.scenario import MODIFIERS, Run, Scenario, StepResult, load_scenario, run_scenario, scenario_config

SCENARIO_DIR = Path(__file__).parent.parent / "scenarios"  # package data (a link to the repository's scenarios/)


FAST_WAIT = 4  # seconds of real waiting above which a scenario counts as slow (the default suite: < 60 s)


def real_wait(sc: Scenario) -> int:
    """Seconds the scenario sleeps on the kernel (a `check` step waits up to the 60 s check)."""
    return sum(s.wait or 0 for s in sc.data.steps) + 60 * sum(1 for s in sc.data.steps if s.check)


def is_slow(sc: Scenario) -> bool:
    return sc.data.conformance.slow or real_wait(sc) > FAST_WAIT


def default_scenarios(include_slow: bool = False) -> list[Path]:
    """scenarios/conformance/*.yaml and the incident scenarios scenarios/*.yaml; the slow ones (marked so,
    or waiting more than FAST_WAIT seconds in all) only when asked."""
    paths = sorted((SCENARIO_DIR / "conformance").glob("*.yaml")) + sorted(SCENARIO_DIR.glob("*.yaml"))
    return [p for p in paths if include_slow or not is_slow(load_scenario(p))]


def not_comparable(sc: Scenario) -> str | None:
    """Why the harness cannot run this scenario on the kernel (a step kind it does not implement), or None."""
    kinds = {k for step in sc.data.steps
             for k, v in step.model_dump(exclude=set(MODIFIERS)).items() if v is not None}
    missing = sorted(kinds - HARNESS_STEPS)
    if missing:
        return f"the kernel harness lacks the step kind(s) {', '.join(missing)}"
    return None


def kernel_only(sc: Scenario) -> bool:
    """Not comparable, but the kernel can run it: its run would be shown beside the model's, without a verdict.
    No scenario is that today (the model has both pod networks)."""
    return False


@dataclass
class StepDiff:
    kernel: KernelStep
    model: StepResult
    mismatches: list[str]


@dataclass
class Comparison:
    scenario: Scenario
    variant: str
    skipped: str | None = None  # not comparable: why
    steps: list[StepDiff] = field(default_factory=list)
    seconds: float = 0.0
    expectation_failures: list[str] = field(default_factory=list)  # the model's own expectations

    @property
    def ok(self) -> bool:
        return self.skipped is None and all(not s.mismatches for s in self.steps)

    @property
    def status(self) -> str:
        if self.skipped is not None:
            return "not comparable"
        return "match" if self.ok else "MISMATCH"


def compare_step(k: KernelStep, m: StepResult) -> list[str]:
    bad = []
    if k.summary != m.summary:
        bad.append(f"outcome: kernel {k.summary}, model {m.summary}")
    elif k.summary in ("connected", "answered") and k.pod != m.pod:
        bad.append(f"pod reached: kernel {k.pod}, model {m.pod}")
    if m.entry is not None or k.entry is not None:
        ks, kd = (k.entry or {}).get("state"), (k.entry or {}).get("dest")
        ms, md = (m.entry or {}).get("state"), (m.entry or {}).get("dest")
        if m.entry is None and k.entry is not None and m.what in ("wait", "check"):
            pass  # the model names no flow for a wait
        elif (ks, kd) != (ms, md):
            bad.append(f"entry: kernel {_entry(k.entry)}, model {_entry(m.entry)}")
    for pod in sorted(set(k.dests) | set(m.dests)):
        kd, md = k.dests.get(pod), m.dests.get(pod)
        m_live = md is not None and not md["deleted"]
        if kd is None and m_live:
            bad.append(f"dest {pod}: kernel has none (deleted), model {_dest(md)}")
        elif kd is not None and not m_live:
            bad.append(f"dest {pod}: kernel {_dest(kd)}, model {'deleted' if md else 'none'}")
        elif kd is not None and md is not None:
            for key in ("weight", "active", "inactive"):
                if kd[key] != md[key]:
                    bad.append(f"dest {pod} {key}: kernel {kd[key]}, model {md[key]}")
    if k.neigh is not None:  # bridge: the node's neighbour entry of every destroyed pod
        for pod in sorted(set(k.neigh) | set(m.neigh)):
            kn, mn = k.neigh.get(pod, "none"), m.neigh.get(pod, "none")
            if kn != mn:
                bad.append(f"neighbour of {pod}: kernel {kn}, model {mn}")
    return bad


def _entry(e: dict[str, Any] | None) -> str:
    return "none" if e is None else f"{e['state']}->{e['dest']}"


def _dest(d: dict[str, Any] | None) -> str:
    if d is None:
        return "-"
    if d.get("deleted"):
        return "deleted"
    return f"w{d['weight']} {d['active']}/{d['inactive']}"


def compare_scenario(guest: Guest, sc: Scenario, tag: str) -> Comparison:
    variant = variant_for_kernel(guest.uname).name
    cmp = Comparison(sc, variant)
    reason = not_comparable(sc)
    if reason is not None and not kernel_only(sc):
        cmp.skipped = reason
        return cmp
    model: Run = run_scenario(sc, variant)  # first: a scenario the model refuses never reaches the kernel
    kernel: KernelRun = run_on_kernel(guest, sc, scenario_config(sc, variant), tag)
    cmp = compare_runs(sc, variant, kernel, model)
    cmp.skipped = reason
    return cmp


def compare_runs(sc: Scenario, variant: str, kernel: KernelRun, model: Run) -> Comparison:
    cmp = Comparison(sc, variant, seconds=kernel.seconds)
    cmp.expectation_failures = [f"step {s.index} (line {s.line}): {f}" for s in model.steps for f in s.failures]
    for k, m in zip(kernel.steps, model.steps, strict=True):
        cmp.steps.append(StepDiff(k, m, compare_step(k, m)))
    return cmp


def run_conformance(guest: Guest, paths: list[Path]) -> list[Comparison]:
    scenarios = [load_scenario(p) for p in paths]  # all parsed before the first real run
    return [compare_scenario(guest, sc, f"s{i}") for i, sc in enumerate(scenarios, 1)]


# ------------------------------------------------------------------ output
def _outcome(summary: str, pod: str | None) -> str:
    return f"{summary} {pod}" if summary in ("connected", "answered") and pod else summary


def _dests(d: dict[str, dict[str, Any]]) -> str:
    return " ".join(f"{p}:{_dest(v)}" for p, v in sorted(d.items())) or "-"


def print_comparison(c: Comparison, console: Console) -> None:
    sc = c.scenario
    head = f"[bold]{sc.data.name}[/] ({sc.path.name}) on kernel variant {c.variant}"
    if c.skipped is not None and not c.steps:
        console.print(f"{head}: [yellow]not comparable: {c.skipped}[/]", highlight=False)
        return
    table = Table(title=head, title_justify="left", show_lines=False)
    for col in ("#", "t", "step", "kernel outcome", "model outcome", "kernel entry", "model entry",
                "kernel dests (w act/inact)", "model dests", ""):
        table.add_column(col)
    for s in c.steps:
        k, m = s.kernel, s.model
        what = k.what + (f" [{', '.join(k.events)}]" if k.events else "")
        mark = "differs" if c.skipped and s.mismatches else ("[red]MISMATCH[/]" if s.mismatches else "[green]ok[/]")
        table.add_row(str(k.index), str(k.time), what, _outcome(k.summary, k.pod), _outcome(m.summary, m.pod),
                      _entry(k.entry), _entry(m.entry), _dests(k.dests), _dests(m.dests), mark)
    console.print(table)
    for s in c.steps if c.skipped is None else []:
        for bad in s.mismatches:
            console.print(f"  [red]step {s.kernel.index} ({sc.path}:{s.kernel.line}): {bad}[/]", highlight=False)
    if sc.data.conformance.known_mismatch and not c.ok:
        console.print(f"  known mismatch: {sc.data.conformance.known_mismatch}", highlight=False)
    for f in c.expectation_failures:
        console.print(f"  [yellow]the model misses the file's own expectation at {f}[/]", highlight=False)
    if c.skipped is not None:
        console.print(f"  [yellow]not comparable: {c.skipped}[/]", highlight=False)
    console.print(f"  {c.status} ({c.seconds:.1f} s on the kernel)", highlight=False)


def comparison_json(c: Comparison, uname: str) -> dict[str, Any]:
    return {
        "scenario": c.scenario.data.name, "file": str(c.scenario.path), "kernel": uname, "variant": c.variant,
        "status": c.status, "not_comparable": c.skipped, "seconds": round(c.seconds, 2),
        "known_mismatch": c.scenario.data.conformance.known_mismatch,
        "model_expectation_failures": c.expectation_failures,
        "steps": [{
            "step": s.kernel.index, "line": s.kernel.line, "time": s.kernel.time, "action": s.kernel.what,
            "harness": s.kernel.events,
            "kernel": {"outcome": s.kernel.summary, "pod": s.kernel.pod, "detail": s.kernel.detail,
                       "ipvs_entry": s.kernel.entry, "dests": s.kernel.dests},
            "model": {"outcome": s.model.summary, "pod": s.model.pod, "ipvs_entry": s.model.entry,
                      "dests": s.model.dests},
            "mismatches": s.mismatches,
            **({"kernel_trace": {"after": s.kernel.diag, "while_waiting": s.kernel.timeline}}
               if s.kernel.diag is not None else {}),
        } for s in c.steps],
    }


def dumps(c: Comparison, uname: str) -> str:
    return json.dumps(comparison_json(c, uname))
