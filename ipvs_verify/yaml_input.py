"""Reading a user's YAML file so that every problem can name its line: text, parse, and where a value is.

ruamel.yaml keeps the line of every key and item; the schema (pydantic, strict) then checks plain values. Used
by the scenario files (ipvs_verify/scenario.py) and the patch files (ipvs_verify/patching/).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from ipvs_verify.errors import UserError


def read_text(path: Path, what: str) -> str:
    """The file's text; `what` says what it should have been ("a scenario YAML file")."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file (expected {what})") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory (expected {what})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror or e})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise UserError(f"{path}:{line}: column {col}: expected UTF-8 text, got the byte "
                        f"0x{data[e.start]:02x}") from None


def parse_yaml(path: Path, text: str, top: str) -> CommentedMap:
    """The file as ruamel's mapping; `top` says what the top level should be."""
    try:
        raw = YAML().load(text)
    except YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        context = getattr(e, "context_mark", None)
        last = max(len(text.splitlines()), 1)
        if mark is not None and context is not None and mark.line >= last:
            mark = context  # the file ended inside something: where that began
        where = f":{min(mark.line + 1, last)}" if mark is not None else ":1"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        if getattr(e, "context", None) and problem.startswith("but "):
            problem = f"{e.context} {problem}"  # type: ignore[attr-defined]
        raise UserError(f"{path}{where}: not valid YAML: {problem}") from None
    if raw is None:
        raise UserError(f"{path}:1: the top level: expected {top}, got an empty file")
    if not isinstance(raw, CommentedMap):
        line = raw.lc.line + 1 if isinstance(raw, CommentedSeq) else 1
        raise UserError(f"{path}:{line}: the top level: expected {top}, got {got(as_plain(raw))}")
    return raw


def line_of(node: Any, loc: tuple[Any, ...], transparent: tuple[str, ...] = ("[key]",)) -> int | None:
    """The line of the deepest part of `loc` the file has (a missing key: its mapping's line).

    `transparent`: parts of a pydantic location that are no key of the file (a union's tag, a key error's).
    """
    line = None
    for key in loc:
        if isinstance(node, CommentedMap) and key in node:
            try:
                line = node.lc.key(key)[0] + 1
            except (KeyError, TypeError):  # a key merged in (`<<: *anchor`): the mapping's line
                pass
            node = node[key]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
            line = node.lc.item(key)[0] + 1
            node = node[key]
        elif not isinstance(node, CommentedMap) or key not in transparent:
            break
    return line


def got(value: Any) -> str:
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    return f"a {type(value).__name__} ({value})"


def as_plain(node: Any) -> Any:
    """ruamel's round-trip objects as plain Python (pydantic's strict mode then checks exact types)."""
    if isinstance(node, dict):
        return {as_plain(k): as_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [as_plain(v) for v in node]
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def nulls(node: Any, loc: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Where the file leaves a value empty (`wait:`)."""
    found: list[tuple[Any, ...]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        if value is None:
            found.append((*loc, key))
        else:
            found.extend(nulls(value, (*loc, key)))
    return found


def token_at(raw: Any, loc: tuple[Any, ...], text: str) -> str | None:
    """The value's text as written (1.30, which YAML reads as the number 1.3)."""
    node = raw
    for key in loc[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return None
    try:
        line, col = node.lc.value(loc[-1]) if isinstance(node, CommentedMap) else node.lc.item(loc[-1])
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    lines = text.splitlines()
    if line >= len(lines):
        return None
    m = re.match(r"[^\s,\]}#]+", lines[line][col:])
    return m.group(0) if m else None




def place(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as the files' readers say it: `steps #2.closer` (items counted from 1)."""
    out = ""
    for key in loc:
        if key == "[key]":
            continue
        out += f" #{key + 1}" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out or "the top level"


def model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (Step in list[Step], Expect in the expectation union)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = model_in(arg)
        if found is not None:
            return found
    return None


M = TypeVar("M", bound=BaseModel)
Problem = tuple[tuple[Any, ...], str]  # where (a pydantic location) and what was expected


def validate(model: type[M], plain: Any, empty: Callable[[tuple[Any, ...]], str],
             message: Callable[[Any], Problem]) -> tuple[M | None, list[Problem]]:
    """`plain` as a `model`, and every problem: each empty value (`empty` says what it should hold) and each
    pydantic error (`message` words it)."""
    problems = [(loc, empty(loc)) for loc in nulls(plain)]
    try:
        return model.model_validate(plain), problems
    except ValidationError as e:
        return None, problems + [message(err) for err in e.errors()]


def first_problem(problems: list[Problem], line: Callable[[tuple[Any, ...]], int]) -> Problem:
    """The problem a file reports: the first in the file, a missing key last (it is often the misspelt one
    found elsewhere)."""
    return min(problems, key=lambda p: (p[1].startswith("missing"), line(p[0])))
