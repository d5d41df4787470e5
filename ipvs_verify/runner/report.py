"""One result format for every engine: the verdict matrix as JSON (`matrix --json`, with any `--engine`).

Each cell holds, per engine, one verdict per property in one vocabulary (STATUSES), with the bound that stopped
the search when it did not settle, and the counterexample when there is one. The pydantic models below are the
format; its JSON schema is docs/matrix.schema.json (`python -m ipvs_verify.runner.report > docs/matrix.schema.json`),
and tests/test_report.py checks that the committed copy is current and that every engine's output fits it.

How each engine's own words map to the shared vocabulary, never claiming more than the engine showed:
* explicit: its labels are the vocabulary (ipvs_verify/runner/verdicts.py says what each needs);
* bmc: a violation at depth d is "violated"; none up to depth k is "bounded" (never "holds"), and so is
  "sometimes checks not reached within depth k" (its own "vacuous<=k": vacuity within a bound is not vacuity);
* induction: "proved" is "holds" (every depth, every timing); a counterexample to induction is "undecided"
  (neither proved nor refuted); "violated", "vacuous" (proved unreachable) and "unsupported" as they are.
"""

from __future__ import annotations

import json
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

FORMAT: Final = "ipvs-verify-matrix"
VERSION: Final = 2
STATUSES = ("holds", "violated", "undecided", "bounded", "vacuous", "n/a", "unsupported")
Status = Literal["holds", "violated", "undecided", "bounded", "vacuous", "n/a", "unsupported"]
Engine = Literal["explicit", "bmc", "induction"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VerdictReport(Strict):
    status: Status
    text: str = Field(description="the label as the table shows it, e.g. VIOLATED, bounded<=8, cti(k=2)")
    bound: str = Field(default="", description="what stopped the search before it settled (a state cap, a depth); "
                                       "empty when the verdict is settled")
    detail: str = ""
    steps: int | None = Field(default=None, description="the counterexample's length, when there is one")
    depth: int | None = Field(default=None, description="bmc: the depth reached or violated at; induction: k")
    timing: str | None = Field(default=None, description="explicit: the search that produced the evidence")
    counterexample: str | None = Field(default=None, description="the trace file written for it")


class SearchReport(Strict):
    timing: str
    states: int
    transitions: int
    depth: int
    complete: bool
    bound: str
    seconds: float
    loop: str
    coverage: dict[str, int]


class CellReport(Strict):
    cell: str = Field(description="the cell's name: its slug and the tag of a non-default scope")
    config: dict[str, Any] = Field(description="the configuration, as a trace file records it")
    verdicts: dict[Engine, dict[str, VerdictReport]] = Field(description="engine -> property name -> verdict")
    searches: list[SearchReport] = Field(default_factory=list, description="the explicit engine's searches")
    seconds: dict[Engine, float] = Field(default_factory=dict)
    lemmas: list[str] | None = Field(default=None, description="induction: the inductive lemmas it kept")
    same_model_as: str | None = Field(default=None, description="explicit: the cell searched for this one, the "
                                      "same transition system (model/equivalence.py); its searches took no time here")


class PropertyRef(Strict):
    number: int
    name: str
    kind: Literal["safety", "liveness"]


class Moved(Strict):
    cell: str
    what: str
    expected: str
    got: str


class ExpectedReport(Strict):
    manifest: str
    moved: list[Moved]
    not_pinned: list[str]


class MatrixReport(Strict):
    format: Literal["ipvs-verify-matrix"] = FORMAT
    version: Literal[2] = VERSION
    engines: list[Engine]
    scope: str
    depth: int | None = Field(default=None, description="bmc's depth bound, when it ran")
    properties: list[PropertyRef]
    cells: list[CellReport]
    expected: ExpectedReport | None = Field(default=None, description="the comparison with the manifest (explicit)")
    disagreements: list[str] = Field(default_factory=list, description="--engine all: where engines disagree")
    seconds: float | None = None

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_none=True), indent=1)


# ---------------------------------------------------------------------- each engine's words, mapped
def bmc_verdict(status: str, depth: int, detail: str, steps: int | None, trace: str | None) -> VerdictReport:
    if status == "violated":
        return VerdictReport(status="violated", text=f"VIOLATED@{depth}", detail=detail, steps=steps, depth=depth,
                             counterexample=trace)
    if status in ("bounded", "vacuous"):
        why = "no violation" if status == "bounded" else "its sometimes checks not reached"
        return VerdictReport(status="bounded", text=f"{status}<={depth}", bound=f"depth {depth}",
                             detail=f"{why} up to depth {depth}" + (f"; {detail}" if detail else ""), depth=depth)
    return VerdictReport(status="n/a" if status == "n/a" else "unsupported", text=status, detail=detail)


_INDUCTION = {"proved": "holds", "cti": "undecided", "violated": "violated", "vacuous": "vacuous",
              "unsupported": "unsupported", "n/a": "n/a"}


def induction_verdict(status: str, k: int, detail: str) -> VerdictReport:
    return VerdictReport(status=_INDUCTION[status],  # type: ignore[arg-type]
                         text=f"cti(k={k})" if status == "cti" else status, detail=detail, depth=k)


# ---------------------------------------------------------------------- `check`: a patch's verdict diff
Change = Literal["fixed", "still violated", "regression", "weakened", "now holds", "changed", "unchanged"]


class PatchReport(Strict):
    id: str
    title: str
    based_on: str
    file: str
    sha256: str
    form: Literal["yaml", "python"]
    change: str = Field(description="what it changes, in one line")


class DiffReport(Strict):
    base_cell: str
    patched_cell: str
    property: str
    base: VerdictReport
    patched: VerdictReport
    change: Change = Field(description="fixed (violated -> holds), regression (holds -> violated), weakened "
                           "(holds -> not proved), now holds (not proved -> holds), still violated, changed, "
                           "unchanged")


class CheckReport(Strict):
    format: Literal["ipvs-verify-check"] = "ipvs-verify-check"
    version: Literal[1] = 1
    patches: list[PatchReport] = Field(description="applied in this order")
    scope: str
    properties: list[PropertyRef]
    cells: list[DiffReport]
    counts: dict[Change, int]
    must_fix: list[str] = Field(default_factory=list, description="properties that must hold in every patched "
                                "cell (--must-fix)")
    failures: list[str] = Field(default_factory=list, description="why the check exits 1: each regression and "
                                "each --must-fix property that does not hold")
    baseline_cache_hits: int = 0
    seconds: float | None = None

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_none=True), indent=1)


def schema() -> dict[str, Any]:
    return MatrixReport.model_json_schema()


def check_schema() -> dict[str, Any]:
    return CheckReport.model_json_schema()


if __name__ == "__main__":  # python -m ipvs_verify.runner.report [check] > docs/matrix.schema.json (check.schema.json)
    import sys

    print(json.dumps(check_schema() if sys.argv[1:] == ["check"] else schema(), indent=1))
