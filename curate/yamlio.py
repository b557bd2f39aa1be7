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
_SECRET_FIELD = re.compile(
    r"(^|[_-])(api[_-]?key|token|password|passwd|secret|authorization|auth|credentials?|cookie|bearer|private[_-]?key)$",
    re.I,
)
REDACTED = "***redacted***"

# Key-shaped values, whatever field they sit in (masking by shape, not only by field name).
_KEY_SHAPE = re.compile(
    r"""(?<![A-Za-z0-9])(?:
        (?:sk|rk|pk)-(?:proj-|ant-|live-|test-|or-v1-)?[A-Za-z0-9_-]{16,}   # OpenAI, Anthropic, DeepSeek, Stripe, OpenRouter
      | (?:hf|gsk|xai|nvapi|pplx|fw)_[A-Za-z0-9_-]{16,}                      # Hugging Face, Groq, xAI, NVIDIA, ...
      | (?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,} | github_pat_[A-Za-z0-9_]{20,}
      | xox[abprs]-[A-Za-z0-9-]{10,}
      | AKIA[0-9A-Z]{16} | AIza[0-9A-Za-z_-]{30,}
      | eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}               # a JWT
      | (?:Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{12,}
      | (?=[A-Za-z0-9]*[a-z])(?=[A-Za-z0-9]*[A-Z])(?=[A-Za-z0-9]*[0-9])[A-Za-z0-9]{32,}  # long random mixed-case
    )(?![A-Za-z0-9])""",
    re.X,
)
MASK = "***"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def looks_like_secret(value: Any) -> bool:
    """True when ``value`` contains something shaped like an API key or token."""
    return isinstance(value, str) and _KEY_SHAPE.search(value) is not None


def mask_secrets(text: Any) -> Any:
    """``text`` with every key-shaped part replaced by ``***`` (non-strings are returned as is)."""
    return _KEY_SHAPE.sub(MASK, text) if isinstance(text, str) else text


def check_env_name(value: str, field: str = "api_key_env") -> str:
    """A field that names an environment variable: refuse a key pasted in its place, without echoing it."""
    if looks_like_secret(value) or not _ENV_NAME.match(value or ""):
        shown = "the value is not shown" if looks_like_secret(value) or len(value) > 40 else f"got {value!r}"
        raise ValueError(
            f"{field} is the NAME of an environment variable that holds the key (e.g. OPENAI_API_KEY), not the key "
            f"itself ({shown}); export the key and name the variable here"
        )
    return value


@dataclass
class Loaded:
    path: Path
    resolved: dict[str, Any]
    public: dict[str, Any]
    lines: dict[tuple, int]


MAX_DEPTH = 64
"""Deepest nesting of mappings/lists in a YAML file (recipes need about 6)."""
MAX_NODES = 100_000
"""Most nodes a YAML file may expand to once its aliases are followed (a "billion laughs" guard)."""


def _yaml_error(e: yaml.YAMLError, path: Path) -> RecipeError:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f":{mark.line + 1}" if mark is not None else ""
    problem = getattr(e, "problem", None) or (str(e).splitlines() or ["invalid YAML"])[0]
    if isinstance(e, yaml.constructor.ConstructorError) and "tag" in str(problem):
        problem = f"{problem} (only plain YAML is read: no !!python or other custom tags)"
    return RecipeError(f"{path}{where}: invalid YAML: {problem}")


def read_text(path: Path) -> str:
    """A YAML file's text: UTF-8 (a BOM is accepted), never binary; else one line naming the file."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise RecipeError(f"{path}: cannot read ({e.strerror or type(e).__name__})") from None
    if b"\x00" in raw:
        raise RecipeError(f"{path}: a binary file, not a YAML text file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise RecipeError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x}); save the file as UTF-8") from None


def _check_events(text: str, path: Path) -> None:
    """Nesting depth from the event stream (no recursion, so 5,000-deep input cannot crash the parser)."""
    depth = 0
    for ev in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise RecipeError(f"{path}:{ev.start_mark.line + 1}: nesting deeper than {MAX_DEPTH} levels")
        elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _check_graph(root: Any, path: Path) -> None:
    """Recursive aliases, alias expansion past ``MAX_NODES`` and duplicate keys (naming both lines)."""
    sizes: dict[int, int] = {}
    heights: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Any) -> int:
        nid = id(node)
        if nid in sizes:
            return sizes[nid]
        if nid in active:
            raise RecipeError(f"{path}:{node.start_mark.line + 1}: a recursive YAML alias (an anchor used inside itself)")
        active.add(nid)
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    line = k.start_mark.line + 1
                    if k.value in seen:
                        raise RecipeError(
                            f"{path}:{line}: duplicate key '{k.value}' (first at line {seen[k.value]})"
                        )
                    seen[k.value] = line
                total += size(k) + size(v)
                if total > MAX_NODES:
                    break
        elif isinstance(node, yaml.SequenceNode):
            for v in node.value:
                total += size(v)
                if total > MAX_NODES:
                    break
        if total > MAX_NODES:
            raise RecipeError(
                f"{path}:{node.start_mark.line + 1}: YAML aliases expand to more than {MAX_NODES:,} values "
                "(an alias bomb?); write the values out"
            )
        kids = [x for kv in node.value for x in kv] if isinstance(node, yaml.MappingNode) else (
            node.value if isinstance(node, yaml.SequenceNode) else [])
        heights[nid] = 1 + max((heights.get(id(k), 0) for k in kids), default=0)
        if heights[nid] > MAX_DEPTH:  # anchors nested in anchors: too deep once the aliases are expanded
            raise RecipeError(
                f"{path}:{node.start_mark.line + 1}: nesting deeper than {MAX_DEPTH} levels once aliases are expanded"
            )
        active.discard(nid)
        sizes[nid] = total
        return total

    size(root)


def parse_yaml(text: str, path: Path) -> tuple[Any, Any]:
    """(data, root node) of a YAML document, with the guards above; errors are one RecipeError line."""
    try:
        _check_events(text, path)
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            if root is None:
                return None, None
            _check_graph(root, path)
            return loader.construct_document(root), root
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        raise _yaml_error(e, path) from None
    except RecursionError:
        raise RecipeError(f"{path}: nesting too deep to read") from None


def _compose_lines(root: Any) -> dict[tuple, int]:
    """Map each key path (tuple of str/int) to its 1-based line number in the YAML text."""
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
            p[k] = _public_secret(v) if (_SECRET_FIELD.search(str(k)) and isinstance(v, (str, int))) else pv
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

        return _ENV.sub(lambda m: sub(m, False), obj), mask_secrets(_ENV.sub(lambda m: sub(m, True), obj))
    return obj, mask_secrets(obj)


def _public_secret(raw: Any) -> str:
    """A value under a secret-looking key: keep a ``${VAR}`` reference as written, mask a literal."""
    refs = _ENV.findall(raw) if isinstance(raw, str) else []
    return "".join(f"${{{name}}}" for name, _ in refs) if refs else REDACTED


def _dotted(loc: tuple) -> str:
    return ".".join(str(x) for x in loc) or "<root>"


def _shown(item: str) -> str:
    """A ``--set`` item for an error message: the value is left out when it looks like a secret."""
    key, eq, raw = item.partition("=")
    if looks_like_secret(raw) or looks_like_secret(key):
        return f"{mask_secrets(key)}{eq}{MASK if eq else ''}"
    return item


def parse_override(item: str) -> tuple[list[str | int], Any]:
    if "=" not in item:
        raise RecipeError(f"--set {_shown(item)!r}: expected dotted.key=value")
    key, _, raw = item.partition("=")
    value: Any = ""
    if raw != "":
        try:  # the same guards as a recipe file (alias bombs, depth); plain text that is not YAML stays text
            value, _ = parse_yaml(raw, Path(f"--set {mask_secrets(key)}"))
        except RecipeError as e:
            if "invalid YAML" not in str(e):
                raise
            value = raw
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
    if any(p == "" for p in parts):
        raise RecipeError(f"--set {_shown(item)!r}: empty key segment")
    return parts, value


def apply_override(tree: dict, parts: list[str | int], value: Any, item: str) -> None:
    key = item.partition("=")[0]
    cur: Any = tree
    for i, p in enumerate([*parts[:-1], parts[-1]]):
        here = ".".join(str(x) for x in parts[:i]) or "<root>"
        if isinstance(cur, list):
            if not isinstance(p, int) or p >= len(cur):
                raise RecipeError(f"--set {mask_secrets(key)}: {here} has no item {p} (it has {len(cur)})")
        elif not isinstance(cur, dict):
            raise RecipeError(
                f"--set {mask_secrets(key)}: {here} is a {type(cur).__name__} value, not a mapping or list"
            )
        if i == len(parts) - 1:
            cur[p] = value
            return
        if isinstance(cur, dict) and (p not in cur or cur[p] is None):
            cur[p] = [] if isinstance(parts[i + 1], int) else {}
        cur = cur[p]


def load_yaml(path: str | os.PathLike, overrides: list[str] | None = None) -> Loaded:
    p = Path(path)
    if not p.is_file():
        raise RecipeError(f"{p}: no such file")
    data, root = parse_yaml(read_text(p), p)
    lines = _compose_lines(root)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{p}:1: expected a mapping at the top level, got {type(data).__name__}")
    resolved, public = _interpolate(data, p, lines)
    for item in overrides or []:
        parts, value = parse_override(item)
        rv, pv = _interpolate(value, p, lines)
        if isinstance(value, (str, int)) and _SECRET_FIELD.search(str(parts[-1])):
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
        elif isinstance(part, str) and i < len(loc) - 1 and (
            (i > 0 and isinstance(loc[i - 1], int)) or (*doc_loc, loc[i + 1]) in lines
        ):
            continue  # a tagged-union member name (e.g. teacher.<backend>.field), not a key of the document
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
        secret_field = any(_SECRET_FIELD.search(str(x)) or str(x).endswith("_env") for x in loc)
        if got is not None and not isinstance(got, (dict, list)) and not secret_field and not looks_like_secret(str(got)):
            msg = f"{msg} (got {str(got)[:60]!r})"
    msg = mask_secrets(msg)
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
