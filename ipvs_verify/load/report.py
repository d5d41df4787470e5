"""A load run's result: one JSON-ready dict (deterministic: no wall-clock time in it) and its table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from ipvs_verify.load.config import LoadSpec
from ipvs_verify.load.sim import US, Simulation, Stats


def _percentile(hist: dict[int, int], q: float) -> float | None:
    """Nearest-rank percentile of a histogram of ticks, in seconds."""
    n = sum(hist.values())
    if not n:
        return None
    rank = max(1, -(-int(q * n * 1000) // 1000))  # ceil(q * n), without float surprises at q = 0.5
    seen = 0
    for value in sorted(hist):
        seen += hist[value]
        if seen >= rank:
            return value / US
    return max(hist) / US


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def result(sim: Simulation) -> dict[str, Any]:
    """The run as one JSON-ready dict."""
    spec: LoadSpec = sim.spec
    st: Stats = sim.stats
    cfg = sim.config
    pods = sim.system.pod_names
    duration = spec.duration
    rto = cfg.timing.syn_rto
    tail_start = int(0.75 * duration)  # the last quarter, in whole seconds: after the run's start-up
    tail = sum(n for second, n in st.completions.items() if second >= tail_start)
    tail_secs = duration - tail_start
    lingers = {}
    for p, t in sorted(st.quiesced.items()):
        deleted = st.deleted.get(p)
        lingers[f"pod-{pods[p]}"] = {
            "quiesced_at": t / US, "deleted_at": None if deleted is None else deleted / US,
            "lingered": round(((deleted if deleted is not None else sim.now) - t) / US, 6),
            "still_there": deleted is None}
    return {
        "name": spec.name,
        "config": {
            "label": spec.label, "variant": cfg.variant.name, "kernel": cfg.kernel, "kube_proxy": cfg.kube_proxy.text,
            "sysctls": cfg.sysctls.as_dict(), "nf_conntrack": cfg.nf_conntrack, "pod_network": cfg.pod_network,
            "scheduler": cfg.scheduler, "patches": list(spec.patch_ids), "seed": spec.seed, "duration": duration,
            "load": spec.load.model_dump(), "clients": spec.clients.model_dump(),
            "changes": [{"at": at, "action": kind.name.lower().replace("_", "-"), "pod": pod}
                        for at, kind, pod in spec.changes],
            **({"swept": spec.extra} if spec.extra else {}),
        },
        "connections": {
            "attempted": st.attempted, "connected": st.connected, "completed": st.completed, "broken": st.broken,
            "no_route": st.no_route, "refused": st.refused, "timed_out": st.timed_out, "no_port": st.no_port,
            "reached_destroyed_pod": st.to_dead_pod, "sent_to_weight0": st.to_weight0,
            "first_syn_lost": sum(st.drops.values()),
        },
        "rates": {
            "achieved_per_s": round(st.completed / duration, 3),
            "last_quarter_per_s": round(tail / tail_secs, 3) if tail_secs > 0 else 0.0,
            "attempted_per_s": round(st.attempted / duration, 3),
        },
        # completed connections in each whole second (a run of at most an hour): the collapse of #70747 shows here
        "completed_per_second": [st.completions.get(i, 0) for i in range(int(-(-duration // 1)))]
        if duration <= 3600 else None,
        "shares": {
            "no_route": _share(st.no_route, st.attempted), "refused": _share(st.refused, st.attempted),
            "first_syn_lost": _share(sum(st.drops.values()), st.attempted),
            "timed_out": _share(st.timed_out, st.attempted), "no_port": _share(st.no_port, st.attempted),
            "failed": _share(st.no_route + st.refused + st.timed_out + st.no_port + st.broken, st.attempted),
        },
        "syn_losses": {f"+{(2 ** k - 1) * rto} s": n for k, n in sorted(st.drops.items())},
        "connect_latency_s": {"mean": round(sum(v * n for v, n in st.latency.items()) / st.connected / US, 6)
                              if st.connected else None, "p50": _percentile(st.latency, 0.5),
                              "p99": _percentile(st.latency, 0.99),
                              "max": max(st.latency) / US if st.latency else None},
        "new_connections_per_pod": [
            {"from": b * sim.bucket / US, **{f"pod-{pods[p]}": row[p] for p in range(len(pods)) if row[p]}}
            for b, row in sorted(st.per_pod.items())],
        "quiesced_real_servers": lingers,
        "simulation": {"model_steps": st.steps, "distinct_windows": st.memo_size, "memo_hits": st.memo_hits,
                       "ports_scanned": st.ports_scanned},
    }


def print_result(r: dict[str, Any], out: Console) -> None:
    c = r["connections"]
    rates, shares, lat = r["rates"], r["shares"], r["connect_latency_s"]
    cfg = r["config"]
    table = Table(title=f"{r['name']}: {cfg['label']}, {cfg['duration']:g} s, seed {cfg['seed']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("share", justify="right")

    def row(name: str, value: Any, share: float | None = None) -> None:
        table.add_row(name, str(value), "" if share is None else f"{share:.2%}")

    row("connections attempted", c["attempted"])
    row("connected", c["connected"])
    row("completed", c["completed"])
    row("achieved connections/s", rates["achieved_per_s"])
    row("connections/s, last quarter", rates["last_quarter_per_s"])
    row("no route to host", c["no_route"], shares["no_route"])
    row("refused", c["refused"], shares["refused"])
    row("first SYN lost", c["first_syn_lost"], shares["first_syn_lost"])
    for delay, n in r["syn_losses"].items():
        row(f"  connected {delay} late (or failed after)", n)
    row("timed out", c["timed_out"], shares["timed_out"])
    row("no free source port", c["no_port"], shares["no_port"])
    row("broken while open", c["broken"])
    row("SYN reached a destroyed pod", c["reached_destroyed_pod"])
    row("SYN sent to a weight-0 real server", c["sent_to_weight0"])
    for q in ("mean", "p50", "p99", "max"):
        row(f"connect latency {q} (s)", "-" if lat[q] is None else f"{lat[q]:g}")
    out.print(table)
    per_pod = r["new_connections_per_pod"]
    if per_pod:
        names = sorted({k for b in per_pod for k in b if k != "from"})
        pods = Table(title="new connections per pod (share of each bucket)")
        pods.add_column("from (s)", justify="right")
        for name in names:
            pods.add_column(name, justify="right")
        for b in per_pod:
            total = sum(v for k, v in b.items() if k != "from")
            pods.add_row(f"{b['from']:g}", *(f"{b.get(n, 0) / total:.1%}" if total else "-" for n in names))
        out.print(pods)
    for pod, q in r["quiesced_real_servers"].items():
        end = "still there at the end" if q["still_there"] else f"deleted at {q['deleted_at']:g} s"
        out.print(f"{pod}: weight 0 at {q['quiesced_at']:g} s, {end}: lingered {q['lingered']:g} s", highlight=False)
