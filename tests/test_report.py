"""One result format for every engine (ipvs_verify/runner/report.py): its JSON schema is committed and current, and
the explicit engine's and the Z3 engines' `matrix --json` both fit it, in the one status vocabulary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ipvs_verify import cli
from ipvs_verify.runner.report import STATUSES, MatrixReport, bmc_verdict, induction_verdict, schema

SCHEMA = Path(__file__).resolve().parent.parent / "docs" / "matrix.schema.json"


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:  # type: ignore[type-arg]
    with pytest.raises(SystemExit) as e:
        cli.main(list(args))
    out, err = capsys.readouterr()
    assert e.value.code == 0, err
    data = json.loads(out)
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(data)
    MatrixReport.model_validate(data)
    return data  # type: ignore[no-any-return]


def test_the_committed_schema_is_current() -> None:
    regen = "regenerate: python -m ipvs_verify.runner.report > "
    assert json.loads(SCHEMA.read_text()) == schema(), regen + str(SCHEMA)


def test_every_engine_writes_the_one_format(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # the scope the Z3 engines encode (no client crashes, an atomic kube-proxy), so that both runs are of one cell
    one = ("--variants", "K46", "--modes", "1", "--pod-network", "routed", "--no-client-crashes", "--no-kp-window",
           "--properties",
           "3,9,5", "-j", "1", "-q", "--out", str(tmp_path), "--json")
    explicit = _json(capsys, "matrix", *one)
    both = _json(capsys, "matrix", *one, "--engine", "all", "--depth", "3")
    assert explicit["engines"] == ["explicit"] and both["engines"] == ["explicit", "bmc", "induction"]
    e, b = explicit["cells"][0]["verdicts"]["explicit"], both["cells"][0]["verdicts"]
    assert e == b["explicit"], "--engine all runs the same explicit driver"
    assert b["bmc"]["no-syn-dropped-on-reuse"]["status"] == "violated"
    assert b["bmc"]["quiesced-dest-eventually-deleted"]["status"] == "unsupported"  # liveness: never a pass
    assert b["induction"]["no-syn-dropped-on-reuse"]["status"] == "violated"
    assert both["disagreements"] == []
    for cell in explicit["cells"] + both["cells"]:
        for verdicts in cell["verdicts"].values():
            assert {v["status"] for v in verdicts.values()} <= set(STATUSES)


def test_engine_words_map_without_claiming_more() -> None:
    """A depth bound only weakens: nothing found, or sometimes-checks unreached, up to depth k is bounded."""
    assert bmc_verdict("bounded", 8, "", None, None).status == "bounded"
    assert bmc_verdict("vacuous", 8, "", None, None).status == "bounded"
    assert bmc_verdict("vacuous", 8, "", None, None).bound == "depth 8"
    assert bmc_verdict("violated", 5, "", 5, "t.json").status == "violated"
    assert induction_verdict("proved", 1, "").status == "holds"
    assert induction_verdict("cti", 3, "").status == "undecided"
    assert induction_verdict("vacuous", 1, "").status == "vacuous"
