"""Tell a trace as a story: numbered steps (time, actor, action, outcome) and, under each, what changed.

`show` passes the replay's own trace (presentation.trace.Replay.trace), so what is told is what the model did.
"""

from __future__ import annotations

from typing import Any

from ipvs_verify.presentation.trace_model import Params, StateView, TraceFile


def _flatten(view: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, val in view.items():
        path = f"{prefix}{key}"
        if key == "entries" and isinstance(val, list):
            for e in val:
                out[f"{path}[{e['flow']} -> {e['dest']}]"] = (
                    f"{e['state']}, expires at {e['expires_at']}" + ("" if e["nfct"] else ", NFCT cleared")
                )
        elif isinstance(val, dict):
            out.update(_flatten(val, path + "."))
        elif isinstance(val, list):
            out[path] = ", ".join(str(v) for v in val) or "(empty)"
        else:
            out[path] = str(val)
    return out


def _view(state: StateView) -> dict[str, Any]:
    return state.model_dump(mode="json", exclude_unset=True)


def diff(before: StateView, after: StateView) -> list[str]:
    a, b = _flatten(_view(before)), _flatten(_view(after))
    lines = []
    for key in sorted(set(a) | set(b)):
        if key not in b:
            lines.append(f"- {key}")
        elif key not in a:
            lines.append(f"+ {key}: {b[key]}")
        elif a[key] != b[key]:
            lines.append(f"  {key}: {a[key]} -> {b[key]}")
    return lines


def _params(params: Params) -> str:
    return " ".join(f"{k}={v}" for k, v in params.given().items())


def header(trace: TraceFile) -> list[str]:
    cfg = trace.config
    sysctls = " ".join(f"{k}={v}" for k, v in cfg.sysctls.items())
    title = trace.property or "scenario"
    status = trace.status.upper()
    lines = [
        f"{title} (#{trace.property_number}): {status}" if trace.property else title,
        f"kernel variant {cfg.variant} (kernel {cfg.kernel}), kube-proxy {cfg.kube_proxy}",
        f"sysctls: {sysctls}",
        f"found by: {trace.engine} ({trace.search_timing} timing)"
        + (f", seed {trace.seed}" if trace.seed is not None else ""),
    ]
    if trace.search_timing == "untimed":
        lines.append("note: untimed search: timers may fire in any order; times below are not meaningful")
    return lines


def story_lines(trace: TraceFile) -> list[str]:
    lines = header(trace)
    lines.append("")
    prev = trace.initial_state
    loop = trace.loop_start
    for step in trace.steps:
        n = step.step
        if loop is not None and n == loop + 1:
            lines.append(f"--- the cycle starts here (it repeats forever; pod {trace.pod}) ---")
        lines.append(f"{n:>3}. t={step.time:<5} {step.actor:<22} {step.action} {_params(step.params)}")
        lines.append(f"      => {step.outcome}")
        for d in diff(prev, step.state):
            lines.append(f"         {d}")
        prev = step.state
    if loop is not None:
        lines.append(f"--- back to the state after step {loop} ---")
    return lines


def story_markdown(trace: TraceFile) -> str:
    head = header(trace)
    out = [f"# {head[0]}", ""] + [f"- {h}" for h in head[1:]] + ["", "| step | time | actor | action | outcome |",
                                                                  "|---|---|---|---|---|"]
    loop = trace.loop_start
    for step in trace.steps:
        mark = " ⟲" if loop is not None and step.step == loop + 1 else ""
        out.append(f"| {step.step}{mark} | {step.time} | {step.actor} | {step.action} "
                   f"{_params(step.params)} | {step.outcome} |")
    if loop is not None:
        out += ["", f"⟲ marks where the cycle starts; after the last step the state equals the state after "
                f"step {loop}, so the cycle repeats forever."]
    out += ["", "## What changed at each step", ""]
    prev = trace.initial_state
    for step in trace.steps:
        changes = diff(prev, step.state)
        out.append(f"{step.step}. **{step.action}** {_params(step.params)}")
        out += [f"    - `{c.strip()}`" for c in changes] or ["    - (nothing visible)"]
        prev = step.state
    return "\n".join(out) + "\n"
