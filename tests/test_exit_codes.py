"""Every command's documented exit codes (ipvs_verify.cli.EXIT_CODES), through the real entry point `main`:
0 as expected, 1 a result that differs, 2 bad input, 3 the environment lacks something, 130 interrupted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ipvs_verify import cli
from ipvs_verify.runner.expected import MANIFEST, load_manifest, write_manifest

ONE_CELL = ("matrix", "--variants", "K46", "--modes", "0", "--pod-network", "routed", "-j", "1", "-q")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        cli.main(list(args))
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def test_the_codes_are_documented_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    text = " ".join(out.split())
    for n in cli.EXIT_CODES:
        assert f"{n} " in text
    assert "--debug" in text


def test_matrix_as_the_manifest_says_is_0(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, *ONE_CELL, "--out", str(tmp_path), "--json")
    assert code == 0, err
    assert '"moved": []' in out


def test_matrix_with_a_moved_verdict_is_1_and_says_what_moved(capsys: pytest.CaptureFixture[str],
                                                               tmp_path: Path) -> None:
    entries = load_manifest()
    e = entries["K46-kp1.30-mode0"]
    e.verdicts["no-new-conn-to-destroyed-pod"] = "holds"  # the manifest now claims #81775 is fixed on K46
    manifest = tmp_path / "m.yaml"
    write_manifest(manifest, entries)
    code, _, err = run(capsys, *ONE_CELL, "--out", str(tmp_path), "--expect", str(manifest))
    assert code == 1
    assert "no-new-conn-to-destroyed-pod" in err and "holds" in err and "violated" in err
    assert "--update-expected" in err
    # --update-expected writes what the search found; the next run is then as expected
    code, _, err = run(capsys, *ONE_CELL, "--out", str(tmp_path), "--expect", str(manifest), "--update-expected")
    assert code == 0, err
    assert load_manifest(manifest)["K46-kp1.30-mode0"].verdicts == load_manifest(MANIFEST)[
        "K46-kp1.30-mode0"].verdicts
    assert run(capsys, *ONE_CELL, "--out", str(tmp_path), "--expect", str(manifest))[0] == 0


def test_a_cell_the_manifest_lacks_is_named_not_failed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "matrix", "--variants", "K46", "--modes", "2", "--pod-network", "routed", "-j", "1",
                       "-q", "--properties", "1", "--out", str(tmp_path))
    assert code == 0
    assert "not in the manifest" in err and "K46-kp1.30-mode2" in err


def test_a_capped_run_that_cannot_confirm_the_manifest_is_1(capsys: pytest.CaptureFixture[str],
                                                             tmp_path: Path) -> None:
    code, _, err = run(capsys, *ONE_CELL, "--out", str(tmp_path), "--max-states", "0", "--properties", "3")
    assert code == 1 and "bounded" in err


def test_bad_input_is_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "matrix", "--modes", "9")
    assert code == 2 and err.startswith("error: --modes")


def test_an_interrupted_matrix_is_130(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                      tmp_path: Path) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_matrix", interrupted)
    assert run(capsys, *ONE_CELL, "--out", str(tmp_path))[0] == 130


def test_engines_that_disagree_are_1(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import ipvs_verify.runner.smt as smt

    monkeypatch.setattr(smt, "engine_matrix", lambda *a, **k: 1)
    assert run(capsys, "matrix", "--variants", "K46", "--modes", "0", "--engine", "all")[0] == 1


def test_replay_codes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    good = Path("scenarios/T01-lifecycle-counters.yaml")
    assert run(capsys, "replay", str(good))[0] == 0
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(good.read_text().replace("outcome: connected, pod: b", "outcome: connected, pod: a"))
    code, out, _ = run(capsys, "replay", str(wrong))
    assert code == 1 and "pod" in out


def test_conformance_without_a_kernel_is_3(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from ipvs_verify.conformance import uml

    def no_kernel(self: object) -> None:
        raise uml.KernelUnavailable("no user-mode-linux here")

    monkeypatch.setattr(uml.Guest, "boot", no_kernel)
    code, _, err = run(capsys, "conformance", "scenarios/conformance/C01-reuse-mode0-healthy.yaml")
    assert code == 3 and "not available" in err


def test_the_installed_entry_point_keeps_the_code(tmp_path: Path) -> None:
    """The console script, not only main(): a failed expectation exits 1 from a real process."""
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(Path("scenarios/T01-lifecycle-counters.yaml").read_text().replace("pod: b", "pod: a", 1))
    r = subprocess.run([sys.executable, "-m", "ipvs_verify.cli", "replay", str(wrong)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1, r.stderr
