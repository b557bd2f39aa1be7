"""``curate validate``: every check of a recipe that needs no paid work, shared with ``curate run``.

``validate`` and ``run`` agree because they call the same functions:

* :func:`check_folders` - ``output.dir`` (or ``--output``) and ``CURATE_HOME`` can hold folders (not a
  file, not read-only), checked before any work;
* :func:`read_sources` - local sources are read exactly as ``run`` reads them (an empty, malformed,
  binary or non-UTF-8 file, a missing field: the same one-line ``SourceError``); hub sources are
  assumed to give the standard columns;
* :func:`check_plan` - walks the stages over the columns the sources give: each stage's ``requires``,
  every column a config names (``{column}`` in ``user_template`` / ``system_prompt`` of a sample stage,
  probe or judge; ``dedup.field``; ``decontaminate.field``), and the stage's own ``check``. ``run`` calls
  it after reading the sources and before the first stage, so nothing is paid for a recipe that
  validation would reject.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from .errors import RecipeError
from .recipe import LoadedRecipe, load_recipe
from .registry import get_stage
from .sampling import SAMPLE_COLUMNS, SampleConfig, template_fields
from .sources import PROBLEM_COLUMNS, FileSource, TracesSource, load_one
from .stages.base import Context


def _where(lr: LoadedRecipe, loc: tuple) -> str:
    lines = lr.loaded.lines
    probe = loc
    while probe and probe not in lines:
        probe = probe[:-1]
    line = lines.get(probe)
    return f"{lr.path}:{line}" if line else str(lr.path)


def _folder_problem(path: Path) -> str | None:
    """Why ``path`` cannot be (or hold) a folder we write, or None. No side effects."""
    p = Path(os.path.abspath(path))
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            return "no existing parent folder"
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None


def check_folders(lr: LoadedRecipe, output_dir: str | os.PathLike | None = None) -> None:
    """``output.dir`` / ``--output`` and ``CURATE_HOME`` can take the version folder and the work folder."""
    from .home import curate_home

    root = Path(output_dir) if output_dir else Path(lr.recipe.output.dir)
    what = "--output" if output_dir else "output.dir"
    why = _folder_problem(root / lr.recipe.name)
    if why:
        where = "" if output_dir else f"{_where(lr, ('output', 'dir'))}: "
        raise RecipeError(f"{where}{what}: cannot write versions under {root} ({why})")
    home = curate_home()
    why = _folder_problem(home / lr.recipe.name)
    if why:
        raise RecipeError(f"CURATE_HOME: cannot keep the work folder under {home} ({why}); set CURATE_HOME to a writable folder")


def probe_writable(folder: Path, what: str) -> None:
    """Create ``folder`` and write a file in it (also as root, where permission bits say nothing)."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise RecipeError(f"{what}: cannot write in {folder} ({e.strerror or type(e).__name__})") from None


def read_sources(lr: LoadedRecipe) -> tuple[list[str], list[str], Any]:
    """(columns the sources give, notes, the local sources' rows or None when a source is remote).
    Local files are read as ``run`` reads them."""
    import polars as pl

    columns: list[str] = []
    notes: list[str] = []
    frames: list[Any] | None = []
    for i, src in enumerate(lr.recipe.sources):
        if isinstance(src, (FileSource, TracesSource)) and not getattr(src, "hub", False):
            df, bad, _ = load_one(src, lr.base_dir)
            if frames is not None:
                frames.append(df)
            cols = list(df.columns)
            notes.append(f"source {i} ({src.kind}): {df.height} rows" + (f", {bad.height} rejected" if bad.height else ""))
        else:
            frames = None
            cols = list(PROBLEM_COLUMNS) + (list(SAMPLE_COLUMNS) if isinstance(src, TracesSource) else [])
            notes.append(f"source {i} ({src.kind}): loaded from the hub at run time (standard columns assumed)")
        columns += [c for c in cols if c not in columns]
    rows = pl.concat(frames, how="diagonal_relaxed") if frames else None
    return columns, notes, rows


def _sample_configs(cfg: Any, loc: tuple) -> Iterable[tuple[tuple, SampleConfig]]:
    if isinstance(cfg, SampleConfig):
        yield loc, cfg
    for name in ("probe", "judge"):
        sub = getattr(cfg, name, None)
        if isinstance(sub, SampleConfig):
            yield (*loc, name), sub


def _column_refs(cfg: Any, loc: tuple) -> Iterable[tuple[tuple, str, str]]:
    """(location, shown as, column) for every column a stage config names."""
    for sloc, sc in _sample_configs(cfg, loc):
        for fld in ("user_template", "system_prompt"):
            for col in template_fields(getattr(sc, fld) or ""):
                yield (*sloc, fld), f"{{{col}}}", col
    if cfg.type in ("dedup", "decontaminate") and isinstance(getattr(cfg, "field", None), str):
        for col in (["problem", "reasoning"] if cfg.field == "both" else [cfg.field]):
            yield (*loc, "field"), f"'{col}'", col


def check_plan(lr: LoadedRecipe, columns: Iterable[str], work_dir: Path | None = None, rows: Any = None) -> list[str]:
    """Walk the stages over ``columns``; raise RecipeError (one line, file:line) on the first problem.
    With the sources' ``rows``, a verify stage whose input would mostly lack a gold answer is refused
    here, before any stage (a teacher in front of it) does paid work."""
    have = set(columns)
    labels = lr.stage_labels()
    work = work_dir or Path(".curate") / lr.recipe.name
    for i, (cfg, label) in enumerate(zip(lr.recipe.stages, labels)):
        cls = get_stage(cfg.type)
        loc = ("stages", i)
        missing = [c for c in cls.requires if c not in have]
        if missing:
            raise RecipeError(
                f"{_where(lr, loc)}: stage '{label}' needs column(s) {', '.join(missing)} that no earlier source "
                "or stage produces"
            )
        for at, shown, col in _column_refs(cfg, loc):
            if col not in have:
                dotted = ".".join(str(x) for x in at)
                raise RecipeError(
                    f"{_where(lr, at)}: {dotted}: {shown} is not a column of the input of stage '{label}' "
                    f"(columns: {', '.join(sorted(have))})"
                )
        cls(cfg).check(Context(work_dir=work, base_dir=lr.base_dir, stage_label=label, show_progress=False))
        if rows is not None and cfg.type == "verify":
            from .stages.verify import check_gold

            check_gold(rows, bool(getattr(cfg, "allow_missing_gold", False)), label)
        have |= set(cls.produces)
    return labels


def validate_recipe(path: Path, overrides: list[str] | None = None) -> list[str]:
    """Raise RecipeError/SourceError on the first problem; return notes for the user."""
    lr = load_recipe(path, overrides)
    check_folders(lr)
    columns, notes, rows = read_sources(lr)
    labels = check_plan(lr, columns, rows=rows)
    notes.append(f"stages: {' -> '.join(labels) or '(none)'}")
    return notes
