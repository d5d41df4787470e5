"""pytest plugin of the Hypothesis stateful suite (tests/test_stateful.py): profiles, options, markers, summary.

Profiles (pytest --hypothesis-profile=NAME):
  ci        the default under pytest: derandomized, no example database, a small fixed budget
  thorough  long, wide searches: every cell, topologies the explicit engine cannot finish, hours of time
Options:
  --variant K46,K41       only these variants' cells (all of their cells, not only the default subset)
  --stateful-full         every (variant, mode, safety property) cell of the default matrix
  --hypothesis-traces DIR where found counterexamples are saved (default .traces/hypothesis, gitignored;
                          also IPVS_VERIFY_TRACES=DIR); counterexamples/hypothesis/ holds the committed ones
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from ipvs_verify.engines.stateful import CI, THOROUGH
from ipvs_verify.model.variants import DEFAULT_MATRIX_VARIANTS

settings.register_profile("ci", CI)  # budgets and their reasons: ipvs_verify/engines/stateful.py
settings.register_profile("thorough", THOROUGH)
settings.load_profile("ci")  # the default under pytest; --hypothesis-profile loads another one after this

DEFAULT_TRACE_DIR = Path(".traces/hypothesis")
REPORT_PROPERTY = "ipvs_verify_stateful"  # a test's summary entry, carried in its report's user_properties
_reports: list[dict[str, Any]] = []  # gathered from the reports: in the controller under pytest-xdist


def variant_marker(variant: str) -> str:
    return variant.lower()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ipvs-verify stateful", "ipvs-verify Hypothesis stateful suite")
    group.addoption("--variant", action="store", default="",
                    help="comma-separated kernel variants whose stateful cells run (all of their cells)")
    group.addoption("--stateful-full", action="store_true", default=False,
                    help="run every (variant, mode, safety property) cell, not only the default subset")
    group.addoption("--hypothesis-traces", action="store", default="",
                    help="directory for found counterexamples (default $IPVS_VERIFY_TRACES or .traces/hypothesis)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "stateful: a Hypothesis stateful-suite test")
    config.addinivalue_line("markers", "stateful_matrix: a stateful cell outside the default subset "
                                       "(runs with --stateful-full, --variant or the thorough profile)")
    for v in DEFAULT_MATRIX_VARIANTS:
        config.addinivalue_line("markers", f"{variant_marker(v)}: stateful cells of kernel variant {v}")
    _reports.clear()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        _reports.extend(value for name, value in report.user_properties if name == REPORT_PROPERTY)


def profile_name() -> str:
    return settings.get_current_profile_name()


def run_seed(config: pytest.Config) -> int:
    """The seed of every search in this session: --hypothesis-seed, else 0 (thorough: a fresh one, shown)."""
    given = config.getoption("hypothesis_seed", default=None)
    if given not in (None, ""):
        try:
            return int(given)
        except ValueError:
            raise pytest.UsageError(f"--hypothesis-seed={given!r}: expected an integer") from None
    if profile_name() == "thorough":
        if not hasattr(config, "_ipvs_seed"):
            config._ipvs_seed = int.from_bytes(os.urandom(4), "big")  # type: ignore[attr-defined]
        return int(config._ipvs_seed)  # type: ignore[attr-defined]
    return 0


def trace_dir(config: pytest.Config) -> Path:
    given = config.getoption("hypothesis_traces") or os.environ.get("IPVS_VERIFY_TRACES", "")
    path = Path(given) if given else DEFAULT_TRACE_DIR
    return path if path.is_absolute() else Path(str(config.rootpath)) / path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = {v.strip().upper() for v in config.getoption("variant").split(",") if v.strip()}
    unknown = wanted - set(DEFAULT_MATRIX_VARIANTS)
    if unknown:
        raise pytest.UsageError(f"--variant: unknown variant(s) {', '.join(sorted(unknown))} "
                                f"(expected some of {', '.join(DEFAULT_MATRIX_VARIANTS)})")
    full = config.getoption("stateful_full") or profile_name() == "thorough" or bool(wanted)
    keep, drop = [], []
    for item in items:
        if item.get_closest_marker("stateful") is None:
            keep.append(item)
            continue
        variants = {v for v in DEFAULT_MATRIX_VARIANTS if item.get_closest_marker(variant_marker(v))}
        if wanted and not variants & wanted:
            drop.append(item)
        elif item.get_closest_marker("stateful_matrix") and not full:
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    reports = sorted(_reports, key=lambda r: r["test"])  # the workers' order is not the tests' order
    if not reports:
        return
    tr = terminalreporter
    tr.section(f"Hypothesis stateful suite: profile {profile_name()}, seed {run_seed(config)}")
    for r in reports:
        tr.write_line(f"{r['test']}: expected {r['expected']} ({r['source']}); {r['outcome']}")
        cov = r["coverage"]
        tr.write_line(
            f"    {cov['examples']} examples, {cov['steps']} steps, {cov['steps_per_second']} steps/s, "
            f"runs up to {cov['max_simulated_seconds']} s of simulated time"
        )
        for name, hits in cov["sometimes"].get(r["property"], {}).items():
            tr.write_line(f"    sometimes '{name}': {hits} transitions")
        if r.get("trace"):
            tr.write_line(f"    counterexample: {r['trace']}")
