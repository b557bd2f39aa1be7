"""YAML loading with line numbers, ``${ENV}`` interpolation, ``--set`` overrides and one-line errors.

Shared by the curation recipe, the train recipe and the eval recipe. Two trees come out of a load:
``resolved`` (every ``${VAR}`` replaced: what the code runs with) and ``public`` (secret-looking
variables such as ``${OPENAI_API_KEY}`` kept as the literal reference, and literal values under
secret-looking keys masked). Only the public tree is ever written to a manifest, a cache key or a log.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .errors import RecipeError

M = TypeVar("M", bound=BaseModel)

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.I)
_SECRET_FIELD = re.compile(r"(^|_)(api_?key|token|password|passwd|secret|authorization|credentials?)$", re.I)
REDACTED = "***redacted***"


@dataclass
class Loaded:
    path: Path
    resolved: dict[str, Any]
    public: dict[str, Any]
    lines: dict[tuple, int]


def _compose_lines(text: str, path: Path) -> dict[tuple, int]:
    """Map each key path (tuple of str/int) to its 1-based line number in the YAML text."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RecipeError(f"{path}{where}: invalid YAML: {problem}") from None
    lines: dict[tuple, int] = {}

    def walk(node: Any, prefix: tuple) -> None:
        lines.setdefault(prefix, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = (*prefix, k.value)
                lines[key] = k.start_mark.line + 1
                walk(v, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, (*prefix, i))

    if root is not None:
        walk(root, ())
    return lines


def _interpolate(obj: Any, path: Path, lines: dict[tuple, int], loc: tuple = ()) -> tuple[Any, Any]:
    """Return (resolved, public) copies of ``obj`` with ``${VAR}`` / ``${VAR:-default}`` expanded."""
    if isinstance(obj, dict):
        r, p = {}, {}
        for k, v in obj.items():
            rv, pv = _interpolate(v, path, lines, (*loc, k))
            r[k] = rv
            p[k] = _public_secret(v) if (_SECRET_FIELD.search(str(k)) and isinstance(v, str)) else pv
        return r, p
    if isinstance(obj, list):
        pairs = [_interpolate(v, path, lines, (*loc, i)) for i, v in enumerate(obj)]
        return [a for a, _ in pairs], [b for _, b in pairs]
    if isinstance(obj, str) and "${" in obj:

        def sub(m: re.Match, public: bool) -> str:
            name, default = m.group(1), m.group(2)
            if public and _SECRET_NAME.search(name):
                return m.group(0)
            val = os.environ.get(name, default)
            if val is None:
                line = lines.get(loc)
                where = f":{line}" if line else ""
                raise RecipeError(
                    f"{path}{where}: {_dotted(loc)} uses ${{{name}}} but the environment variable is not set"
                )
            return val

        return _ENV.sub(lambda m: sub(m, False), obj), _ENV.sub(lambda m: sub(m, True), obj)
    return obj, obj


def _public_secret(raw: str) -> str:
    """A value under a secret-looking key: keep a ``${VAR}`` reference as written, mask a literal."""
    refs = _ENV.findall(raw)
    return "".join(f"${{{name}}}" for name, _ in refs) if refs else REDACTED


def _dotted(loc: tuple) -> str:
    return ".".join(str(x) for x in loc) or "<root>"


def parse_override(item: str) -> tuple[list[str | int], Any]:
    if "=" not in item:
        raise RecipeError(f"--set {item!r}: expected dotted.key=value")
    key, _, raw = item.partition("=")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
    if any(p == "" for p in parts):
        raise RecipeError(f"--set {item!r}: empty key segment")
    return parts, value


def apply_override(tree: dict, parts: list[str | int], value: Any, item: str) -> None:
    cur: Any = tree
    for i, p in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(cur, list):
            if not isinstance(p, int) or p >= len(cur):
                raise RecipeError(f"--set {item}: index {p} out of range")
            cur = cur[p]
        else:
            if p not in cur or cur[p] is None:
                cur[p] = [] if isinstance(nxt, int) else {}
            cur = cur[p]
    last = parts[-1]
    if isinstance(cur, list):
        if not isinstance(last, int) or last >= len(cur):
            raise RecipeError(f"--set {item}: index {last} out of range")
        cur[last] = value
    else:
        cur[last] = value


def load_yaml(path: str | os.PathLike, overrides: list[str] | None = None) -> Loaded:
    p = Path(path)
    if not p.is_file():
        raise RecipeError(f"{p}: no such file")
    text = p.read_text(encoding="utf-8")
    lines = _compose_lines(text, p)
    data = yaml.safe_load(text)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{p}:1: expected a mapping at the top level, got {type(data).__name__}")
    resolved, public = _interpolate(data, p, lines)
    for item in overrides or []:
        parts, value = parse_override(item)
        rv, pv = _interpolate(value, p, lines)
        if isinstance(value, str) and _SECRET_FIELD.search(str(parts[-1])):
            pv = _public_secret(value)
        apply_override(resolved, parts, rv, item)
        apply_override(public, parts, pv, item)
    return Loaded(p, resolved, public, lines)


def format_validation_error(err: ValidationError, path: Path, lines: dict[tuple, int]) -> str:
    """One line: ``file:line: dotted.field: message`` for the first error."""
    e = err.errors()[0]
    loc = tuple(e.get("loc", ()))
    # Keep the parts of loc that are keys of the document (drops discriminator tags / union names).
    doc_loc: tuple = ()
    field: list = []
    for i, part in enumerate(loc):
        if (*doc_loc, part) in lines and len(doc_loc) == len(field):
            doc_loc = (*doc_loc, part)
        elif i > 0 and isinstance(loc[i - 1], int) and isinstance(part, str) and i < len(loc) - 1:
            continue  # a tagged-union member name, not a key of the document
        field.append(part)
    etype = e.get("type", "")
    msg = e.get("msg", "invalid")
    if etype == "extra_forbidden":
        msg = f"unknown key '{loc[-1]}'"
    elif etype == "union_tag_invalid":
        ctx = e.get("ctx", {})
        disc = str(ctx.get("discriminator", "type")).strip("'")
        msg = f"unknown {disc} {ctx.get('tag')!r} (known: {ctx.get('expected_tags')})"
        if (*doc_loc, disc) in lines:
            doc_loc = (*doc_loc, disc)
            field.append(disc)
    elif etype == "literal_error" and loc and loc[-1] in ("type", "kind", "backend", "method"):
        expected = e.get("ctx", {}).get("expected", "")
        msg = f"unknown {loc[-1]} {e.get('input')!r} (known: {expected})"
    elif etype == "missing":
        msg = f"missing required key '{loc[-1]}'"
    else:
        got = e.get("input")
        if got is not None and not isinstance(got, (dict, list)):
            msg = f"{msg} (got {str(got)[:60]!r})"
    probe = doc_loc
    while probe and probe not in lines:
        probe = probe[:-1]
    line = lines.get(probe)
    where = f":{line}" if line else ""
    return f"{path}{where}: {_dotted(tuple(field))}: {msg}"


def validate_model(model: type[M], loaded: Loaded) -> M:
    try:
        return model.model_validate(loaded.resolved)
    except ValidationError as err:
        raise RecipeError(format_validation_error(err, loaded.path, loaded.lines)) from None


def load_yaml_model(path: str | os.PathLike, model: type[M], overrides: list[str] | None = None) -> M:
    """Load ``path`` into ``model`` (line-numbered one-line errors, env interpolation, overrides)."""
    return validate_model(model, load_yaml(path, overrides))
