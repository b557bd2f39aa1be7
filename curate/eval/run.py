"""``curate eval RECIPE``: a recipe of source -> sample -> verify run by the curation runner, then scored.

The eval recipe is translated into an ordinary curation recipe (the benchmark as its source, the model in
the ``sample`` stage's teacher seat, a ``verify`` stage) and executed by ``curate.runner.execute``: the
same content-addressed stage cache, durable request log (under ``.curate/eval-<name>/``: an interrupted
eval resumes without paying twice), funnel and engines (``engine: ray``) as ``curate run``. A local model
is identified by the content of its files, so a model retrained in place is sampled anew. Only the
scoring lives here (metrics.py, which shares its pass@k / maj@k with the funnel).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl

from ..atomic import atomic_dir
from ..errors import VersionExistsError
from ..stages.base import Context
from .config import EvalRecipe
from .metrics import per_problem, summarize
from .report import PROBLEMS, SAMPLES, write_results


def breakdown_fields(recipe: EvalRecipe) -> list[str]:
    """Meta fields to break scores down by: the recipe's list, else the benchmark's meta fields."""
    if recipe.metrics.breakdown is not None:
        return list(recipe.metrics.breakdown)
    bench = recipe.benchmark
    if bench.meta_fields:
        return list(bench.meta_fields)
    if getattr(bench, "kind", None) == "preset":
        from ..presets import get_preset

        return list(get_preset(bench.preset).extra_fields)
    return []


def benchmark_id(recipe: EvalRecipe) -> str:
    b = recipe.benchmark
    if b.kind == "preset":
        from ..presets import get_preset

        p = get_preset(b.preset)
        return f"{p.name} ({p.path}:{p.split})"
    if b.kind == "hub":
        return f"{b.path}:{b.split}"
    return str(b.path)


def model_info(recipe: EvalRecipe) -> dict[str, Any]:
    s = recipe.sampling
    t = s.teacher
    ident = None
    for attr in ("model", "model_name_or_path", "path"):
        ident = ident or getattr(t, attr, None)
    info = {
        "id": str(ident),
        "backend": getattr(t, "backend", None),
        "n": s.n,
        "temperature": s.temperature,
        "top_p": getattr(s, "top_p", None),
        "max_tokens": getattr(s, "max_tokens", None),
    }
    if recipe.adapter:
        info["adapter"] = recipe.adapter
    return info


def with_adapter(recipe: EvalRecipe, ctx: Context, recipe_path: Path) -> Any:
    """The sampling config to run: with ``adapter`` set, the teacher model becomes the merged
    base + LoRA folder (cached under the eval's work dir); otherwise the recipe's as is."""
    if not recipe.adapter:
        return recipe.sampling
    from .adapter import merged_model_dir

    t = recipe.sampling.teacher
    base = str(ctx.resolve(t.model)) if ctx.resolve(t.model).exists() else t.model
    merged = merged_model_dir(
        base, ctx.resolve(recipe.adapter), ctx.work_dir, where=str(recipe_path),
        trust_remote_code=bool(getattr(t, "trust_remote_code", False)),
    )
    return recipe.sampling.model_copy(update={"teacher": t.model_copy(update={"model": str(merged)})})


def _new_run_dir(base: Path, name: str) -> Path:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    parent = base / name
    run_dir = parent / stamp
    i = 2
    while run_dir.exists():  # a run folder is never overwritten
        run_dir = parent / f"{stamp}-{i}"
        i += 1
    return run_dir


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("curate", "polars", "numpy", "math-verify", "openai"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def score(verified: pl.DataFrame, recipe: EvalRecipe) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Per-problem frame and summary from verified samples. Problems without a gold answer are
    left out of the scores (counted in ``n_problems_no_gold``)."""
    fields = breakdown_fields(recipe)
    m = recipe.metrics
    graded = verified
    if "gold_answer" in graded.columns:
        graded = graded.filter(
            pl.col("gold_answer").is_not_null() & (pl.col("gold_answer").cast(pl.Utf8).str.strip_chars() != "")
        )
    n_gold = graded["problem_id"].n_unique()
    # a request that failed after its retries says nothing about the model: not scored, but counted
    errored = (pl.col("finish_reason") == "error").fill_null(False)
    n_error = graded.filter(errored).height if "finish_reason" in graded.columns else 0
    if n_error:
        graded = graded.filter(~errored)
    graded = graded.with_columns(estimate_reasoning_tokens(graded))
    problems = per_problem(graded, ks=[1, *m.pass_k], maj_ks=m.maj_k, breakdown=fields)
    summary = summarize(problems, n_boot=m.n_boot, seed=recipe.seed, level=m.ci_level, breakdown=fields)
    summary["n_problems_no_gold"] = verified["problem_id"].n_unique() - n_gold
    summary["n_problems_all_errors"] = n_gold - problems.height
    summary["n_error_samples"] = n_error
    return problems, summary


def estimate_reasoning_tokens(df: pl.DataFrame) -> pl.Expr:
    """``reasoning_tokens``: the backend's completion tokens split between reasoning and answer in
    proportion to their characters (backends report one completion count per sample)."""
    if "completion_tokens" not in df.columns or "reasoning" not in df.columns:
        return pl.lit(None, dtype=pl.Float64).alias("reasoning_tokens")
    r = pl.col("reasoning").fill_null("").str.len_chars().cast(pl.Float64)
    a = pl.col("answer_text").fill_null("").str.len_chars().cast(pl.Float64) if "answer_text" in df.columns else pl.lit(0.0)
    share = pl.when((r + a) > 0).then(r / (r + a)).otherwise(0.0)
    return (pl.col("completion_tokens").cast(pl.Float64) * share).alias("reasoning_tokens")


def _as_recipe(recipe: EvalRecipe, loaded: Any, sampling: Any) -> Any:
    """The eval as a curation recipe: benchmark -> sample -> verify (annotate), run by the runner."""
    from ..recipe import LoadedRecipe, recipe_model
    from ..yamlio import Loaded

    sample = {"type": "sample", **sampling.model_dump(mode="json", exclude_none=True)}
    verify = {"type": "verify", **recipe.verify.model_dump(mode="json", exclude_none=True), "mode": "annotate"}
    model = recipe_model().model_validate({
        "name": f"eval-{recipe.name}", "version": "0.0.0", "seed": recipe.seed,
        "engine": recipe.engine, "ray": recipe.ray.model_dump(),
        "sources": [recipe.benchmark.model_dump(mode="json", exclude_none=True)],
        "stages": [sample, verify],
    })
    pub_sampling = dict(loaded.public.get("sampling") or {})
    if sampling is not recipe.sampling:  # an adapter: the merged folder is the model (keyed by content)
        pub_sampling["teacher"] = {**(pub_sampling.get("teacher") or {}), "model": sampling.teacher.model}
    public = {
        "sources": [loaded.public.get("benchmark")],
        "stages": [{"type": "sample", **pub_sampling}, {"type": "verify", **(loaded.public.get("verify") or {}), "mode": "annotate"}],
    }
    return LoadedRecipe(model, Loaded(path=loaded.path, resolved=loaded.resolved, public=public, lines=loaded.lines))


def _verified(result: Any) -> pl.DataFrame:
    """Every sample row of the run: the verified ones and the failed requests (counted, not scored)."""
    failed = result.rejected
    if failed.height and "dropped_by" in failed.columns:
        failed = failed.filter(pl.col("dropped_by") == "sample")
    verified = pl.concat([result.train, failed], how="diagonal_relaxed") if failed.height else result.train
    if "sample_index" in verified.columns:
        verified = verified.sort(["problem_id", "sample_index"], maintain_order=True)
    return verified


def _results(recipe: EvalRecipe, loaded: Any, recipe_path: Path, result: Any, verified: pl.DataFrame,
             summary: dict, load_s: float) -> dict[str, Any]:
    """The content of results.json."""
    seconds = {r.stage: r.seconds for r in result.records}
    verdicts = {}
    if "verdict" in verified.columns:
        verdicts = {str(r["verdict"]): int(r["len"]) for r in verified.group_by("verdict").len().to_dicts()
                    if r["verdict"] is not None}
    return {
        "name": recipe.name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "benchmark": {"id": benchmark_id(recipe),
                      **({k: v for k, v in result.inputs[0].items() if k != "inputs"} if result.inputs else {})},
        "model": model_info(recipe),
        "summary": summary,
        "verdicts": verdicts,
        "seconds": {
            "load": round(load_s + seconds.get("source", 0.0), 3),  # benchmark (+ adapter merge)
            "sample": seconds.get("sample", 0.0),
            "verify": seconds.get("verify", 0.0),
        },
        "funnel": [
            {"stage": r.stage, "rows_in": r.rows_in, "rows_out": r.rows_out, "dropped": r.dropped,
             "seconds": r.seconds, "cached": r.cached}
            for r in result.records
        ],
        "recipe": loaded.public,
        "recipe_path": str(recipe_path),
        "versions": _versions(),
    }


def run_eval(recipe_path: Path, overrides: list[str] | None = None, output: Path | None = None, console: Any = None) -> Path:
    """Run an eval recipe; returns the new run folder (results.json, results.md, parquet frames).

    ``output`` is the run folder itself (it must not exist); default ``<output.dir>/<name>/<UTC time>``.
    """
    from ..runner import execute, work_dir_for
    from ..yamlio import load_yaml, validate_model

    recipe_path = Path(recipe_path)
    loaded = load_yaml(recipe_path, overrides)
    recipe = validate_model(EvalRecipe, loaded)
    if output is not None and Path(output).exists():  # checked before any paid work
        raise VersionExistsError(f"{output}: already exists; eval runs are never overwritten")
    ctx = Context(work_dir=work_dir_for(f"eval-{recipe.name}"), base_dir=recipe_path.resolve().parent,
                  seed=recipe.seed, stage_label="eval", show_progress=sys.stderr.isatty())
    t0 = time.perf_counter()
    sampling = with_adapter(recipe, ctx, recipe_path)
    load_s = time.perf_counter() - t0
    result = execute(_as_recipe(recipe, loaded, sampling), console=console)
    verified = _verified(result)
    per_prob, summary = score(verified, recipe)
    results = _results(recipe, loaded, recipe_path, result, verified, summary, load_s)
    run_dir = Path(output) if output is not None else _new_run_dir(Path(os.path.expanduser(recipe.output.dir)), recipe.name)
    try:
        with atomic_dir(run_dir, on_exists="error") as tmp:
            verified.write_parquet(tmp / SAMPLES)
            per_prob.write_parquet(tmp / PROBLEMS)
            (tmp / "recipe.json").write_text(json.dumps(loaded.public, indent=2, default=str) + "\n")
            write_results(tmp, {**results, "run_dir": str(run_dir)})
    except FileExistsError:
        raise VersionExistsError(f"{run_dir}: already exists; eval runs are never overwritten") from None
    return run_dir
