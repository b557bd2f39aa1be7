"""The ``curate`` command line. Every command is a few lines over the Python API.

Errors from the API (``CurateError``) print as one line on stderr and exit with code 2.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import CurateError
from .memory import configure_allocator

configure_allocator()  # before polars loads: freed memory goes back to the OS at once (curate.memory)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Curate reasoning-distillation datasets.")
cache_app = typer.Typer(no_args_is_help=True, help="The per-recipe stage cache and request logs (CURATE_HOME/<name>/).")
app.add_typer(cache_app, name="cache")


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"curate {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Curate reasoning-distillation datasets."""
def _console(stderr: bool = False) -> Console:
    """A rich console; without a terminal (CI log, pipe, nohup) it does not wrap at 80 columns."""
    import os

    c = Console(stderr=stderr)
    if not c.is_terminal and "COLUMNS" not in os.environ:
        c = Console(stderr=stderr, width=250)
    return c


out = _console()
err = _console(stderr=True)


class _ConsoleLog(logging.Handler):
    """The ``curate`` logger (stage start/end lines, progress without a terminal) on stderr, printed
    through the rich console so that it lands above a live progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            style = "yellow" if record.levelno >= logging.WARNING else None
            err.print(msg, markup=False, highlight=False, style=style, soft_wrap=True)
        except Exception:  # noqa: BLE001 - logging must never break the run
            self.handleError(record)


def _show_progress_log() -> None:
    lg = logging.getLogger("curate")
    if not any(isinstance(h, _ConsoleLog) for h in lg.handlers):
        lg.addHandler(_ConsoleLog())
    lg.setLevel(logging.INFO)
    lg.propagate = False

SetOpt = typer.Option(None, "--set", help="Override a recipe value: dotted.key=value (repeatable).")


def _handle(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*a: Any, **kw: Any) -> Any:
        try:
            return fn(*a, **kw)
        except CurateError as e:
            from .yamlio import mask_secrets

            # the message is plain text: brackets in it (pip extras, paths) are not markup; anything
            # shaped like a key is masked, and it is one line
            msg = " ".join(mask_secrets(str(e)).split())
            err.print(f"[red]error:[/red] {escape(msg)}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code)
        except KeyboardInterrupt:
            err.print("interrupted: finished stages and finished requests are kept; run again to resume")
            raise typer.Exit(130)

    return wrapper


def print_funnel(records: list[Any]) -> None:
    from .publish import FUNNEL_HEADERS, funnel_rows

    t = Table(title="funnel", show_lines=False)
    for h in FUNNEL_HEADERS:
        t.add_column(h, justify="right" if h.startswith(("rows", "sec")) else "left")
    rows = [
        {"stage": r.stage, "rows_in": r.rows_in, "rows_out": r.rows_out, "dropped": r.dropped,
         "seconds": r.seconds, "cached": r.cached}
        for r in records
    ]  # fmt: skip
    for row in funnel_rows(rows):
        t.add_row(*[str(c) for c in row])
    out.print(t)
    for r in records:
        notes = {k: v for k, v in (r.stats or {}).items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
        if notes:
            out.print(f"  [dim]{r.stage}:[/dim] " + ", ".join(f"{k}={v}" for k, v in notes.items()))
        for w in (r.stats or {}).get("warnings") or []:
            out.print(f"  [yellow]warning[/yellow] {escape(r.stage)}: {escape(str(w))}", highlight=False)


@app.command()
@_handle
def run(
    recipe: Path = typer.Argument(..., help="Recipe YAML file."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output root (overrides output.dir)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most N rows per source."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Reuse cached stages and logged requests."),
    engine: Optional[str] = typer.Option(None, "--engine", help="local | ray (overrides the recipe's engine)."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (with --engine ray)."),
    set_: Optional[List[str]] = SetOpt,
) -> None:
    """Run a recipe and write a new immutable dataset version."""
    from .recipe import load_recipe
    from .runner import run_recipe

    extra = ([f"engine={engine}"] if engine else []) + ([f"ray.address={address}"] if address else [])
    lr = load_recipe(recipe, [*(set_ or []), *extra])
    _show_progress_log()
    result = run_recipe(lr, output_dir=output, limit=limit, resume=resume, console=err)
    print_funnel(result.records)
    if lr.recipe.output.push is not None:
        from .publish import push as push_version

        tag = push_version(result.version_dir, lr.recipe.output.push.repo_id, private=lr.recipe.output.push.private)
        out.print(f"pushed to {lr.recipe.output.push.repo_id} ({tag})")
    out.print(f"wrote [bold]{result.version_dir}[/bold] (train: {result.train_rows} rows, "
              f"rejected: {result.rejected_rows} rows)")  # fmt: skip


@app.command()
@_handle
def validate(recipe: Path = typer.Argument(...), set_: Optional[List[str]] = SetOpt) -> None:
    """Check a recipe (schema and semantics) without doing any work."""
    from .validate import validate_recipe

    notes = validate_recipe(recipe, set_)
    for n in notes:
        out.print(f"  {n}")
    out.print(f"[green]ok[/green] {recipe}")


@app.command()
@_handle
def schema(out_dir: Path = typer.Option(Path("schemas"), "--out", help="Folder for the JSON Schema files.")) -> None:
    """Write the JSON Schemas of the recipes (curation, train, eval)."""
    from .schemas import write_schemas

    for p in write_schemas(out_dir):
        out.print(f"wrote {p}")


@app.command()
@_handle
def audit(
    dataset: str = typer.Argument(..., help="A version folder, a parquet/jsonl file, or a hub dataset id."),
    out_dir: Optional[Path] = typer.Option(None, "--output", "-o", "--out", help="Where audit/report.html goes (as `run --output`; --out is the old spelling)."),
    mapping: Optional[List[str]] = typer.Option(None, "--map", help="column mapping target=column (repeatable)."),
) -> None:
    """Audit reasoning-trace quality and write a self-contained HTML report."""
    from .audit import audit_dataset

    bad = [m for m in mapping or [] if "=" not in m or not m.split("=", 1)[1]]
    if bad:
        raise CurateError(f"--map {bad[0]!r}: expected target=column (e.g. --map reasoning=thinking)")
    cols = dict(m.split("=", 1) for m in (mapping or []))
    src = Path(dataset)
    # never write into a version folder (versions are immutable): default to ./audit-<name>
    default = f"audit-{src.parent.name}-{src.name}" if src.is_dir() else f"audit-{src.stem or dataset.replace('/', '_')}"
    target = out_dir or Path(default)
    summary = audit_dataset(dataset, target, mapping=cols or None)
    out.print(json.dumps({k: summary[k] for k in list(summary)[:6]}, indent=1, default=str))
    out.print(f"wrote {target / 'audit' / 'report.html'}")


@app.command()
@_handle
def view(
    dataset: Path = typer.Argument(..., help="A version folder, a parquet file or a JSONL file."),
    port: int = typer.Option(8765, "--port", help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (loopback by default; others expose the data)."),
    work: Optional[Path] = typer.Option(None, "--work", help="Work folder with sampling/*.sqlite (default CURATE_HOME/<name>)."),
    search_index: bool = typer.Option(True, "--search-index/--no-search-index", help="Build the full-text index (cached)."),
) -> None:
    """Browse traces in the browser: filter, search, open a trace, follow drops. Needs: pip install 'curate\\[view]'."""
    from .view import serve

    serve(dataset, host=host, port=port, work_dir=work, search_index=search_index)


@app.command()
@_handle
def push(
    version_dir: Path = typer.Argument(...),
    repo_id: str = typer.Argument(...),
    public: bool = typer.Option(False, "--public", help="Create the repo public (default private)."),
) -> None:
    """Push a version folder to a hub dataset repo and tag it v<version>."""
    from .publish import push as push_version

    tag = push_version(version_dir, repo_id, private=not public)
    out.print(f"pushed {version_dir} to {repo_id} ({tag})")


@app.command()
@_handle
def train(
    recipe: Path = typer.Argument(...),
    set_: Optional[List[str]] = SetOpt,
    merge: bool = typer.Option(False, "--merge", help="Merge the LoRA adapter into the base after training (= merge: true; writes OUTPUT_DIR/merged)."),
) -> None:
    """Train a student (SFT or KD) on a curated dataset. Needs: pip install 'curate\\[train]'."""
    from .errors import require

    require("torch", "train", "curate train")
    from .train import run_train

    # --merge is `merge: true`: checked with the recipe (LoRA needed) before training, written to output_dir/merged
    path = run_train(recipe, [*(set_ or []), "merge=true"] if merge else set_)
    out.print(f"trained: {path}")
    if merge:
        out.print(f"merged: {path / 'merged'}")


@app.command()
@_handle
def merge(adapter_dir: Path = typer.Argument(...), out_dir: Path = typer.Argument(...)) -> None:
    """Merge a LoRA adapter into its base model and save it."""
    from .errors import require

    require("torch", "train", "curate merge")
    from .train import merge_lora

    out.print(f"merged: {merge_lora(adapter_dir, out_dir)}")


@app.command(name="eval", context_settings={"allow_extra_args": False})
@_handle
def eval_(
    args: List[str] = typer.Argument(..., help="RECIPE, or: compare RUN_A RUN_B"),
    set_: Optional[List[str]] = SetOpt,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Run folder."),
    n_boot: int = typer.Option(10000, "--n-boot", help="compare: bootstrap resamples."),
    seed: int = typer.Option(0, "--seed", help="compare: bootstrap seed."),
) -> None:
    """Evaluate a model on a benchmark (`curate eval RECIPE`) or compare two runs
    (`curate eval compare RUN_A RUN_B`)."""
    from . import eval as ev

    if args[0] == "compare":
        if len(args) != 3:
            raise CurateError("usage: curate eval compare RUN_A RUN_B")
        typer.echo(ev.compare_runs(Path(args[1]), Path(args[2]), n_boot=n_boot, seed=seed))
        return
    if len(args) != 1:
        raise CurateError("usage: curate eval RECIPE  |  curate eval compare RUN_A RUN_B")
    run_dir = ev.run_eval(Path(args[0]), set_, output)
    md = run_dir / "results.md"
    if md.exists():
        typer.echo(md.read_text())
    out.print(f"wrote {run_dir}")


@cache_app.command("ls")
@_handle
def cache_ls(recipe: Optional[str] = typer.Argument(None, help="A recipe file or name (default: every recipe).")) -> None:
    """List stage-cache entries with their size and age (newest first)."""
    from .cache import list_cache, human_age, human_size

    rows = list_cache(recipe)
    if not rows:
        out.print(f"no cache entries{' for ' + recipe if recipe else ''}")
        return
    t = Table(title="stage cache", show_lines=False)
    for h in ("recipe", "stage", "key", "rows", "size", "age"):
        t.add_column(h, justify="right" if h in ("rows", "size", "age") else "left")
    for r in rows:
        t.add_row(r["recipe"], r["stage"], r["key"], str(r["rows"]), human_size(r["bytes"]), human_age(r["age_s"]))
    out.print(t)
    total = sum(r["bytes"] for r in rows)
    out.print(f"{len(rows)} entries, {human_size(total)}")


@cache_app.command("clear")
@_handle
def cache_clear(
    recipe: str = typer.Argument(..., help="A recipe file or name."),
    logs: bool = typer.Option(False, "--logs", help="Also delete the request logs (paid teacher replies)."),
) -> None:
    """Delete a recipe's stage cache (its request logs too with --logs). Published versions are kept."""
    from .cache import clear_cache, human_size

    n, freed, where = clear_cache(recipe, logs=logs)
    out.print(f"removed {n} entries ({human_size(freed)}) from {where}"
              + ("" if logs else "; request logs kept (--logs to delete them)"))


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
