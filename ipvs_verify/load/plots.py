"""A sweep's plots (matplotlib, PNG and SVG): failure share, connect delay and achieved connections/s against the
swept value, one line per combination of the other swept keys. Byte-stable: no dates or random ids in the files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ipvs_verify.load.sweep import Axis

PANELS = (
    ("failed_share", "failure share"),  # no route, refused, timed out, no free port, broken
    ("latency_mean_s", "mean connect latency (s)"),
    ("achieved_per_s", "achieved connections/s"),
)


def plot_sweep(title: str, axes: list[Axis], rows: list[dict[str, Any]], base: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams["svg.hashsalt"] = "ipvs-verify"  # stable ids in the SVG
    x_axis, others = axes[0], axes[1:]
    lines: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        lines.setdefault(tuple(row[a.key] for a in others), []).append(row)
    positions = {v: i for i, v in enumerate(x_axis.values)}
    fig, panels = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 4), constrained_layout=True)
    for ax, (column, label) in zip(panels, PANELS, strict=True):
        for key, points in lines.items():
            xs = [float(p[x_axis.key]) if x_axis.numeric else positions[p[x_axis.key]] for p in points]
            ys = [p[column] if p[column] is not None else float("nan") for p in points]
            name = ", ".join(f"{a.key}={v}" for a, v in zip(others, key, strict=True)) or points[0]["label"]
            ax.plot(xs, ys, marker="o", label=name)
        ax.set_xlabel(x_axis.key)
        ax.set_ylabel(label)
        if not x_axis.numeric:
            ax.set_xticks(range(len(x_axis.values)), x_axis.values)
        ax.grid(True, alpha=0.3)
    panels[0].legend(fontsize="small")
    fig.suptitle(title, fontsize="medium")
    png, svg = base.with_suffix(".png"), base.with_suffix(".svg")
    fig.savefig(png, dpi=100, metadata={"Software": None})
    fig.savefig(svg, metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return [png, svg]
