"""Bad input gets one clear line naming the file and place, exit code 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ipvs_verify.cli", *args], capture_output=True, text=True,
                          timeout=120)


def write(tmp: Path, text: str) -> Path:
    p = tmp / "s.yaml"
    p.write_text(text)
    return p


GOOD_HEAD = "name: x\nconfig:\n  variant: K46\nsteps:\n"


@pytest.mark.parametrize("text, expected", [
    ("name: x\nconfig:\n  variant: K46\n  colour: red\nsteps:\n  - wait: 1\n", "s.yaml:4: config.colour"),
    (GOOD_HEAD + "  - wait: -3\n", "s.yaml:5: steps.0.wait"),
    (GOOD_HEAD + "  - jump: 3\n", "s.yaml:5: steps.0.jump"),
    ("name: x\nconfig:\n  variant: K99\nsteps:\n  - wait: 1\n", "neither a variant"),
    ("name: x\nconfig:\n  kernel: 2.6.32\nsteps:\n  - wait: 1\n", "predates"),
    ("name: x\nconfig:\n  variant: K46\n  sysctls: {conn_reuse_mode: x}\nsteps:\n  - wait: 1\n", "s.yaml:4"),
    ("name: [\n", "not valid YAML"),
    (GOOD_HEAD + "  - request: client-9:port-1\n", "unknown flow"),
])
def test_bad_scenario(tmp_path: Path, text: str, expected: str) -> None:
    r = cli("replay", str(write(tmp_path, text)))
    assert r.returncode == 2, r.stdout + r.stderr
    assert expected in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_trace_file(tmp_path: Path) -> None:
    p = tmp_path / "t.json"
    p.write_text("{\"format\": \"something-else\"}")
    r = cli("show", str(p))
    assert r.returncode == 2 and "t.json" in r.stderr and "Traceback" not in r.stderr
    p.write_text("{not json")
    r = cli("show", str(p))
    assert r.returncode == 2 and "t.json:1" in r.stderr


def test_bad_matrix_options() -> None:
    r = cli("matrix", "--variants", "K46,4.x")
    assert r.returncode == 2 and "kernel version" in r.stderr
    r = cli("matrix", "--modes", "7")
    assert r.returncode == 2 and "0..3" in r.stderr
    r = cli("matrix", "--properties", "no-such-property")
    assert r.returncode == 2 and "unknown property" in r.stderr


@pytest.mark.parametrize("args, expected", [
    (("matrix", "-j", "x"), "'-j' / '--jobs'"),
    (("matrix", "--frob"), "No such option: --frob"),
    (("matrix", "--persistence", "-1"), "'--persistence'"),
    (("matrix", "--protocols", "sctp"), "--protocols: expected"),
    (("matrix", "--search", "fast"), "--search: expected one of packed, packed-python, plain"),
])
def test_bad_command_line(args: tuple[str, ...], expected: str) -> None:
    r = cli(*args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert expected in r.stderr and "Traceback" not in r.stderr
