"""`matrix --html DIR`: the verdict table as a page (DIR/index.html) whose violated cells link to their
traces' pages, written beside it (DIR/STEM.html, STEM as the counterexample's file name), for a CI artifact.

Each trace page is rendered from the replay of the counterexample file just written, like `show --html`.
"""

from __future__ import annotations

from pathlib import Path

from ipvs_verify.errors import UserError
from ipvs_verify.presentation.html_page import MatrixCell, MatrixRow, matrix_page, trace_page, write_page
from ipvs_verify.presentation.trace import load_trace, replay_trace
from ipvs_verify.properties.catalog import Property
from ipvs_verify.runner.matrix import CellSpec, cell_key
from ipvs_verify.runner.verdicts import CellResult


def write_matrix_site(out: Path, cells: list[CellSpec], results: list[CellResult], properties: tuple[Property, ...],
                      paths: dict[tuple[int, str], Path], scope_text: str) -> Path:
    """Write DIR/index.html and a page per counterexample; returns the index's path."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--html: cannot create {out} ({e.strerror or e})") from None
    rows = []
    for i, (spec, res) in enumerate(zip(cells, results, strict=True)):
        s = res.config.sysctls
        sysctls = "/".join(str(int(x)) for x in (s.conn_reuse_mode, s.conntrack, s.expire_nodest_conn,
                                                 s.expire_quiescent_template))
        by_name = {v.prop_name: v.status for v in res.verdicts}
        row = []
        for p in properties:
            trace = paths.get((i, p.name))
            href = None
            if trace is not None:
                href = trace.name.removesuffix(".json") + ".html"
                write_page(out / href, trace_page(replay_trace(load_trace(trace), trace), trace.name, "index.html"),
                           "--html")
            row.append(MatrixCell(by_name[p.name], href))
        rows.append(MatrixRow(cell_key(spec, res.config.scope), sysctls, row))
    index = out / "index.html"
    page = matrix_page(f"Verdict matrix ({scope_text})", [(p.number, p.name, p.kind) for p in properties], rows)
    write_page(index, page, "--html")
    return index
