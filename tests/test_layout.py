"""The package's layout: the semantics install under the project's namespace (ipvs_verify.model and
ipvs_verify.properties), so no module imports a top-level `model` or `properties` that could collide with
another project's, and the data the commands read by default ships inside the package."""

from __future__ import annotations

import re
from pathlib import Path

import ipvs_verify
from ipvs_verify.conformance.compare import SCENARIO_DIR
from ipvs_verify.runner.expected import MANIFEST

ROOT = Path(__file__).resolve().parent.parent
BARE = re.compile(r"^\s*(from|import) (model|properties)\b", re.MULTILINE)


def test_nothing_imports_a_top_level_model_or_properties() -> None:
    files = [p for d in ("ipvs_verify", "model", "properties", "tests", "benchmarks") for p in (ROOT / d).rglob("*.py")]
    assert len(files) > 40
    offenders = [f"{p.relative_to(ROOT)}: {m.group(0).strip()}" for p in files for m in BARE.finditer(p.read_text())]
    assert not offenders, offenders


def test_default_data_is_found_inside_the_package() -> None:
    pkg = Path(ipvs_verify.__file__).parent
    assert MANIFEST.parent == pkg and MANIFEST.is_file()
    assert SCENARIO_DIR == pkg / "scenarios"
    shipped = sorted(p.name for p in SCENARIO_DIR.glob("*.yaml"))
    assert shipped and shipped == sorted(p.name for p in (ROOT / "scenarios").glob("*.yaml"))
    assert (SCENARIO_DIR / "conformance").is_dir()


# What each layer may import from the project (besides itself and `errors`): the semantics at the bottom,
# then the trace format and its renderings, the engines, the runner that drives them, and the commands.
# presentation -> patching is one lazy import: a trace names its patch files, and loading it reads them.
LAYERS = {
    "model": set(),
    "properties": {"model"},
    "presentation": {"model", "properties", "patching"},
    "engines": {"model", "properties", "presentation"},
    "runner": {"model", "properties", "presentation", "engines"},
    "load": {"model", "patching", "yaml_input"},  # the load simulation: the model, and patch and YAML files
}
PROJECT_IMPORT = re.compile(r"^\s*from ipvs_verify\.([a-z_]+)", re.MULTILINE)


def test_each_layer_imports_only_the_layers_below_it() -> None:
    offenders = []
    for layer, allowed in LAYERS.items():
        files = sorted((ROOT / "ipvs_verify" / layer).rglob("*.py"))
        assert files, layer
        for p in files:
            for m in PROJECT_IMPORT.finditer(p.read_text()):
                if m.group(1) not in allowed | {layer, "errors"}:
                    offenders.append(f"{p.relative_to(ROOT)} imports ipvs_verify.{m.group(1)}")
    assert not offenders, offenders
