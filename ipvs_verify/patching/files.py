"""Patch files: a declarative YAML file, or a Python module that replaces decision points (docs/patches.md).

Either form says what it is (id, title), what it is based on (a commit, a pull request, a report) and the base
it applies to (kernel variants or versions, a kube-proxy release); it becomes a model.patch.ModelPatch. Every
problem is one UserError `FILE:LINE: place: what was expected` (exit 2): a file that does not parse, an unknown
key, feature, setting or decision point, a decision point with the wrong parameters, or a change that
contradicts its base. Nothing falls back to the unpatched model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import pickle
import re
import sys
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

import ipvs_verify.model.ip_vs_ctl  # noqa: F401  (registers its decision points)
import ipvs_verify.model.ip_vs_in  # noqa: F401
import ipvs_verify.model.scheduler  # noqa: F401
from ipvs_verify.errors import UserError
from ipvs_verify.limits import MAX_IPVS_TIMEOUT, MAX_WAIT
from ipvs_verify.model.config import IPVSADM_SET_TIMEOUTS, make_config
from ipvs_verify.model.decision_points import DECISION_POINTS, Hook, PatchError
from ipvs_verify.model.kube_proxy import ReusePolicy, UnknownKubeProxy, kube_proxy_version
from ipvs_verify.model.patch import ModelPatch
from ipvs_verify.model.sysctls import SYSCTL_RANGES
from ipvs_verify.model.variants import Feature, UnknownKernel, resolve_variant
from ipvs_verify.yaml_input import as_plain, got, line_of, nulls, parse_yaml, place, read_text

MAX_SECONDS = MAX_WAIT  # 30 days, as the scenario files allow for waits and grace periods
ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$"
FEATURES = tuple(f.value for f in Feature)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Base(Strict):
    variants: list[str] = Field(min_length=1, description="a list of kernel variants or kernel versions in quotes "
                                "(e.g. [K46] or [\"4.19.0\"])")
    kube_proxy: str = Field(default="1.30", description="a kube-proxy release in quotes, e.g. \"1.30\"")


class KernelChange(Strict):
    add: list[str] = Field(default_factory=list, description="a list of kernel features: " + ", ".join(FEATURES))
    remove: list[str] = Field(default_factory=list, description="a list of kernel features: " + ", ".join(FEATURES))


class KubeProxyChange(Strict):
    graceful_termination: bool | None = Field(None, description="true or false (#66012: weight 0, then delete)")
    count_inactive: bool | None = Field(None, description="true or false (#71515: InActConn keeps a real server)")
    udp_immediate: bool | None = Field(None, description="true or false (#77802: UDP real servers deleted at once)")
    conn_reuse_mode: Literal["leave", "force-zero", "zero-below-5.9"] | None = Field(
        None, description="leave, force-zero (#71114) or zero-below-5.9 (#102122)")
    sets_nodest_and_quiescent: bool | None = Field(None, description="true or false (#71834: expire_nodest_conn "
                                                   "and expire_quiescent_template set to 1)")
    min_sync_period: int | None = Field(None, ge=0, le=3600, description="whole seconds 0..3600 "
                                        "(--ipvs-min-sync-period)")
    check_interval: int | None = Field(None, ge=1, le=3600, description="whole seconds 1..3600 (the graceful "
                                       "deletion re-check, rsCheckDeleteInterval)")
    ipvs_timeouts: dict[Literal["tcp", "tcpfin", "udp"], int] = Field(
        default_factory=dict, description="a mapping of tcp, tcpfin or udp to whole seconds (ipvsadm --set: "
        "--ipvs-tcp-timeout, --ipvs-tcpfin-timeout, --ipvs-udp-timeout); TIME_WAIT is not settable")


class Environment(Strict):
    clients: int | None = Field(None, ge=1, le=8, description="an integer 1..8 (client addresses, e.g. replicas)")
    ports: int | None = Field(None, ge=1, le=8, description="an integer 1..8 (ephemeral ports per client address)")
    prestop_sleep: int | None = Field(None, ge=0, le=MAX_SECONDS, description=(
        f"whole seconds 0..{MAX_SECONDS} (a preStop hook's sleep: the pod serves this long after its deletion)"))
    termination_grace_period: int | None = Field(None, ge=0, le=MAX_SECONDS, description=(
        f"whole seconds 0..{MAX_SECONDS} (terminationGracePeriodSeconds)"))


class PatchFile(Strict):
    id: str = Field(pattern=ID, description="a short name of letters, digits, '.', '_' and '-' (a commit prefix, "
                    "a PR number)")
    title: str = Field(min_length=1, description="one line: what the change does")
    based_on: str = Field(min_length=1, description="one line: the commit, pull request or report it follows")
    base: Base
    kernel: KernelChange | None = None
    sysctls: dict[Literal["conn_reuse_mode", "conntrack", "expire_nodest_conn", "expire_quiescent_template",
                          "conn_reuse_old_conntrack"], int] = Field(
        default_factory=dict, description="a mapping of IPVS sysctl to value: " + ", ".join(SYSCTL_RANGES))
    kube_proxy: KubeProxyChange | None = None
    environment: Environment | None = None


@dataclass(frozen=True)
class Patch:
    """A patch file, read and checked: what it says of itself, and the model change it makes."""

    id: str
    title: str
    based_on: str
    path: Path
    form: Literal["yaml", "python"]
    base_variants: tuple[str, ...]
    base_kube_proxy: str
    change: ModelPatch

    @property
    def digest(self) -> str:
        """sha256 of the file's bytes: the cell cache and the traces name the exact file."""
        return self.change.digest

    @property
    def summary(self) -> str:
        c = self.change
        parts = [f"+{f.value}" for f in sorted(c.add, key=lambda f: f.value)]
        parts += [f"-{f.value}" for f in sorted(c.remove, key=lambda f: f.value)]
        parts += [f"{k}={v}" for k, v in c.sysctls]
        parts += [f"kube-proxy {k}={getattr(v, 'value', v)}" for k, v in c.kube_proxy]
        parts += [f"{k}={v}" for k, v in c.timing + c.scope + c.ipvs_timeouts]
        parts += [f"replaces {h.point}" for h in c.hooks]
        return ", ".join(parts) or "no change"


# ---------------------------------------------------------------------- reading
def load_patch(path: Path) -> Patch:
    """Read and check one patch file (.yaml/.yml declarative, .py Python)."""
    if path.suffix == ".py":
        return _load_python(path)
    if path.suffix not in (".yaml", ".yml"):
        raise UserError(f"{path}: expected a patch file: .yaml (declarative) or .py (decision points)")
    return _load_yaml(path)


def _load_yaml(path: Path) -> Patch:
    text = read_text(path, "a patch YAML file")
    raw = parse_yaml(path, text, "a mapping with id, title, based_on and base")
    plain = as_plain(raw)
    for loc in nulls(plain):
        raise UserError(f"{path}:{line_of(raw, loc) or 1}: {place(loc)}: expected a value, got nothing")
    try:
        data = PatchFile.model_validate(plain)
    except ValidationError as e:
        errors = sorted(e.errors(), key=lambda x: (x["type"] == "missing", line_of(raw, tuple(x["loc"])) or 1))
        first = errors[0]
        loc = tuple(first["loc"])
        raise UserError(f"{path}:{line_of(raw, loc) or 1}: {place(loc)}: {_what(first)}") from None
    at = _Locator(path, raw)
    features_add = _features(data.kernel.add if data.kernel else [], ("kernel", "add"), at)
    features_remove = _features(data.kernel.remove if data.kernel else [], ("kernel", "remove"), at)
    for name, value in data.sysctls.items():
        lo, hi = SYSCTL_RANGES[name]
        if not lo <= value <= hi:
            raise at(("sysctls", name), f"expected {lo}..{hi}, got {got(value)}")
    kp: list[tuple[str, Any]] = []
    timing: list[tuple[str, int]] = []
    timeouts: tuple[tuple[str, int], ...] = ()
    if data.kube_proxy:
        k = data.kube_proxy
        for field in ("graceful_termination", "count_inactive", "udp_immediate", "sets_nodest_and_quiescent"):
            if getattr(k, field) is not None:
                kp.append((field, getattr(k, field)))
        if k.conn_reuse_mode is not None:
            kp.append(("reuse_policy", ReusePolicy(k.conn_reuse_mode)))
        if k.min_sync_period is not None:
            timing.append(("sync_delay", k.min_sync_period))
        if k.check_interval is not None:
            timing.append(("check_interval", k.check_interval))
        for key, seconds in k.ipvs_timeouts.items():
            if not 0 <= seconds <= MAX_IPVS_TIMEOUT:
                raise at(("kube_proxy", "ipvs_timeouts", key),
                         f"expected whole seconds 0..{MAX_IPVS_TIMEOUT}, got {seconds}")
        timeouts = tuple(sorted((str(key), s) for key, s in k.ipvs_timeouts.items()))
    scope: list[tuple[str, int]] = []
    if data.environment:
        env = data.environment
        scope += [(f, getattr(env, f)) for f in ("clients", "ports") if getattr(env, f) is not None]
        grace = env.termination_grace_period
        if env.prestop_sleep is not None:
            # kubelet runs the preStop hook, then SIGTERM; the model's pod serves until it is destroyed, which is
            # when the hook ends (an app that exits on SIGTERM) or the grace period does, whichever comes first
            grace = min(env.prestop_sleep, grace if grace is not None else 30)
        if grace is not None:
            timing.append(("grace_period", grace))
    change = ModelPatch(id=data.id, origin=str(path), digest=_digest(path), add=features_add, remove=features_remove,
                        sysctls=tuple(sorted(data.sysctls.items())), kube_proxy=tuple(kp), timing=tuple(timing),
                        ipvs_timeouts=timeouts, scope=tuple(scope))
    patch = Patch(data.id, data.title, data.based_on, path, "yaml", tuple(data.base.variants), data.base.kube_proxy,
                  change)
    _check_base(patch, at)
    return patch


def _load_python(path: Path) -> Patch:
    text = read_text(path, "a patch Python module")
    digest = _digest(path)
    name = f"ipvs_verify_patch_{path.stem.replace('-', '_').replace('.', '_')}_{digest[:12]}"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise UserError(f"{path}: cannot be imported as a Python module")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # the module's own error: where in it
            frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == str(path)]
            line = frames[-1].lineno if frames else getattr(e, "lineno", None) or 1
            raise UserError(f"{path}:{line}: importing it raised {type(e).__name__}: {e}") from None
        sys.modules[name] = module  # a worker process (fork) finds the hooks by their module's name

    def need(attr: str, kind: type, what: str) -> Any:
        if not hasattr(module, attr):
            raise UserError(f"{path}:1: {attr}: missing: expected {what}")
        value = getattr(module, attr)
        if not isinstance(value, kind) or (isinstance(value, str | dict) and not value):
            raise UserError(f"{path}:{_line(text, attr)}: {attr}: expected {what}, got {got(value)}")
        return value

    pid = need("ID", str, "a short name (a commit prefix, a PR number)")
    title = need("TITLE", str, "one line: what the change does")
    based_on = need("BASED_ON", str, "one line: the commit, pull request or report it follows")
    base = need("BASE", dict, "a mapping with variants (a list) and kube_proxy")
    decisions = need("DECISIONS", dict, "a mapping of decision point names to functions")
    try:
        base_m = Base.model_validate(base)
    except ValidationError as e:
        first = e.errors()[0]
        raise UserError(f"{path}:{_line(text, 'BASE')}: BASE.{place(tuple(first['loc']))}: "
                        f"{_what(first, Base)}") from None
    hooks: list[Hook] = []
    for point, fn in decisions.items():
        line = _line(text, f'"{point}"') if isinstance(point, str) else _line(text, "DECISIONS")
        if point not in DECISION_POINTS:
            raise UserError(f"{path}:{line}: DECISIONS: unknown decision point {got(point)} (expected one of: "
                            f"{', '.join(DECISION_POINTS)})")
        dp = DECISION_POINTS[point]
        if not callable(fn):
            raise UserError(f"{path}:{line}: DECISIONS.{point}: expected a function of ({', '.join(dp.params)}), "
                            f"got {got(fn)}")
        try:
            inspect.signature(fn).bind(*dp.params)
        except (TypeError, ValueError):
            fline = getattr(getattr(fn, "__code__", None), "co_firstlineno", line)
            raise UserError(f"{path}:{fline}: DECISIONS.{point}: {getattr(fn, '__name__', fn)} must take "
                            f"({', '.join(dp.params)}), the parameters of the function it replaces; it takes "
                            f"{_signature(fn)}") from None
        try:
            pickle.dumps(fn)  # worker processes receive the hooks by name
        except Exception:
            raise UserError(f"{path}:{line}: DECISIONS.{point}: expected a function defined at the module's top "
                            "level (worker processes find it by name), got a lambda or a nested function") from None
        hooks.append(Hook(point, fn, f"{path}: {getattr(fn, '__name__', point)}"))
    if not hooks:
        raise UserError(f"{path}:{_line(text, 'DECISIONS')}: DECISIONS: expected at least one decision point")
    if not _valid_id(pid):
        raise UserError(f"{path}:{_line(text, 'ID')}: ID: expected letters, digits, '.', '_' and '-' (at most 40), "
                        f"got {got(pid)}")
    change = ModelPatch(id=pid, origin=str(path), digest=digest, hooks=tuple(hooks))
    patch = Patch(pid, title, based_on, path, "python", tuple(base_m.variants), base_m.kube_proxy, change)
    _check_base(patch, lambda loc, what: UserError(f"{path}:{_line(text, 'BASE')}: BASE: {what}"))
    return patch


# ---------------------------------------------------------------------- checks and helpers
class _Locator:
    def __init__(self, path: Path, raw: Any) -> None:
        self.path, self.raw = path, raw

    def __call__(self, loc: tuple[Any, ...], what: str) -> UserError:
        return UserError(f"{self.path}:{line_of(self.raw, loc) or 1}: {place(loc)}: {what}")


def _features(names: list[str], loc: tuple[str, ...], at: _Locator) -> frozenset[Feature]:
    out = []
    for i, n in enumerate(names):
        if n not in FEATURES:
            raise at((*loc, i), f"unknown kernel feature {got(n)} (expected one of: {', '.join(FEATURES)})")
        out.append(Feature(n))
    return frozenset(out)


def _check_base(patch: Patch, at: Any) -> None:
    """The base must exist, and the patch must apply to each of its variants: build one configuration each."""
    loc_base = ("base", "variants")
    for i, v in enumerate(patch.base_variants):
        try:
            resolve_variant(v)
        except UnknownKernel as e:
            raise at((*loc_base, i), str(e)) from None
    try:
        kube_proxy_version(patch.base_kube_proxy)
    except UnknownKubeProxy as e:
        raise at(("base", "kube_proxy"), str(e)) from None
    for i, v in enumerate(patch.base_variants):
        variant = resolve_variant(v)
        if "conn_reuse_old_conntrack" in dict(patch.change.sysctls) and \
                Feature.TENCENT_OLD_CT not in variant.features | patch.change.add:
            raise at(("sysctls", "conn_reuse_old_conntrack"), f"only the TencentOS kernel (PR #17) has "
                     f"conn_reuse_old_conntrack, not {variant.name} (it contradicts its base)")
        try:
            make_config(v, patch.base_kube_proxy, patches=(patch.change,))
        except PatchError as e:
            raise at((*loc_base, i), f"on base {variant.name}: {_without_origin(str(e), patch)}") from None


def _without_origin(message: str, patch: Patch) -> str:
    prefix = f"{patch.change.origin}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _what(err: Any, root: type[BaseModel] | None = None) -> str:
    kind, loc = err["type"], tuple(err["loc"])
    if root is Base:
        loc = ("base", *loc)
    if kind == "missing":
        return "missing: expected " + _description(loc)
    if kind == "extra_forbidden":
        return f"unknown key '{loc[-1]}' (expected one of: {', '.join(_fields_at(loc[:-1]))})"
    if loc[-1:] == ("[key]",):
        return f"unknown key {got(loc[-2])} (expected one of: {', '.join(_allowed_keys(loc[:-2]))})"
    value = err.get("input")
    hint = ""
    if kind == "string_type" and isinstance(value, int | float) and not isinstance(value, bool):
        hint = " (write it in quotes)"
    return f"expected {_description(loc)}, got {got(value)}{hint}"


def _model_at(loc: tuple[Any, ...]) -> tuple[type[BaseModel] | None, Any]:
    model: type[BaseModel] | None = PatchFile
    info = None
    for key in loc:
        if model is None or not isinstance(key, str) or key not in model.model_fields:
            return None, info
        info = model.model_fields[key]
        ann = info.annotation
        model = next((a for a in (ann, *getattr(ann, "__args__", ())) if isinstance(a, type)
                      and issubclass(a, BaseModel)), None)
    return model, info


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    model, _ = _model_at(loc)
    return list(model.model_fields) if model is not None else []


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    return {"sysctls": list(SYSCTL_RANGES), "ipvs_timeouts": list(IPVSADM_SET_TIMEOUTS)}.get(str(loc[-1]), [])


def _description(loc: tuple[Any, ...]) -> str:
    clean = tuple(k for k in loc if not isinstance(k, int))
    model, info = _model_at(clean)
    if info is not None and info.description and not (loc and isinstance(loc[-1], int)):
        return str(info.description)
    if model is not None:
        return f"a mapping of {', '.join(model.model_fields)}"
    if info is not None and info.description:
        return str(info.description)
    return "a valid value"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _line(text: str, needle: str) -> int:
    """The first line that assigns `needle` (a module constant) or, for a quoted key, holds it."""
    pattern = re.compile(rf"^{re.escape(needle)}\s*[:=]" if needle.isidentifier() else re.escape(needle))
    for i, line in enumerate(text.splitlines(), 1):
        if pattern.search(line):
            return i
    return 1


def _signature(fn: Any) -> str:
    try:
        return str(inspect.signature(fn))
    except (TypeError, ValueError):
        return "an unknown signature"


def _valid_id(text: str) -> bool:
    return re.match(ID, text) is not None


def with_base(patch: Patch, variants: tuple[str, ...] | None, kube_proxy: str | None) -> Patch:
    """The patch on another base (`check --base`): checked again against it."""
    p = replace(patch, base_variants=variants or patch.base_variants,
                base_kube_proxy=kube_proxy or patch.base_kube_proxy)
    _check_base(p, lambda loc, what: UserError(f"--base: {what}"))
    return p


# ---------------------------------------------------------------------- the shipped patches
SHIPPED = Path(__file__).resolve().parent.parent / "patches"  # package data: the repository's patches/
SHIPPED_PREFIX = "shipped:"


def _shipped_files() -> list[Path]:
    return sorted(p for p in SHIPPED.iterdir() if p.suffix in (".yaml", ".py")) if SHIPPED.is_dir() else []


def shipped_patches() -> list[Patch]:
    """Every patch in patches/, in file-name order."""
    return [_load_shipped(p) for p in _shipped_files()]


def _load_shipped(path: Path) -> Patch:
    """A shipped patch names itself `shipped:FILE` (the same on every machine, in every trace)."""
    patch = load_patch(path)
    origin = SHIPPED_PREFIX + path.name
    hooks = tuple(replace(h, origin=h.origin.replace(str(path), origin)) for h in patch.change.hooks)
    return replace(patch, change=replace(patch.change, origin=origin, hooks=hooks))


def resolve_patch(arg: str) -> Patch:
    """A patch named on the command line: a file, or the id (or file name) of a shipped patch."""
    path = Path(arg)
    if path.is_file():
        return load_patch(path)
    name = arg.removeprefix(SHIPPED_PREFIX)
    for p in _shipped_files():
        if name in (p.name, p.stem):
            return _load_shipped(p)
    known = [p.stem for p in _shipped_files()]
    if path.suffix in (".yaml", ".yml", ".py") or "/" in arg:
        raise UserError(f"{arg}: no such file (expected a patch file, or a shipped patch: {', '.join(known)})")
    raise UserError(f"'{arg}' is neither a patch file nor a shipped patch (expected one of: {', '.join(known)}; "
                    "`ipvs-verify patches` lists them)")


def find_patch(pid: str, file: str, sha256: str) -> Patch:
    """The patch a trace was made with: the same file, byte for byte, or a located refusal."""
    patch = resolve_patch(file)
    if patch.digest != sha256:
        raise UserError(f"{file}: patch {pid} has changed since the trace was made (sha256 {patch.digest[:12]}, "
                        f"the trace's {sha256[:12]}); check it again to get a trace of this version")
    return patch
