"""Sample rows: ``sample_rows`` (plan, replay the log, send the rest, assemble one row per sample) and
the stage-side post-processing of failed requests."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import polars as pl

from .. import columns
from ..backends.base import Backend
from ..errors import BackendError, BudgetExceeded, RecipeError
from .config import SampleConfig
from .log import RequestLog, _lock_log
from .prompts import build_messages, plan_requests, split_reasoning, template_fields
from .run import _Run, _token_counter, make_backend, normalize_payload, split_usage

if TYPE_CHECKING:
    from ..context import Context


def _schema(with_lp: bool, with_tokens: bool) -> dict:
    s: dict[str, Any] = dict(columns.SAMPLE_SCHEMA)  # the data contract: curate.columns
    if with_lp:
        s.update(columns.KD_SCHEMA)
        if with_tokens:
            s["topk_tokens"] = pl.List(pl.List(pl.Utf8))
    return s

SAMPLE_SCHEMA: dict = _schema(False, False)
"""The sample columns and their polars dtypes (without the optional logprob columns)."""

SAMPLE_COLUMNS = tuple(SAMPLE_SCHEMA)

_sample_id = columns.sample_id  # origin = the request hash

def _check_input(problems: pl.DataFrame, cfg: SampleConfig, label: str, log_name: str) -> None:
    if "problem_id" not in problems.columns:
        raise RecipeError(f"{label}: the input has no 'problem_id' column (sampling needs problem rows)")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", log_name):
        raise RecipeError(f"{label}: log_name {log_name!r} must be a plain file name")
    for where, tpl in (("user_template", cfg.user_template), ("system_prompt", cfg.system_prompt or "")):
        missing = [f for f in template_fields(tpl) if f not in problems.columns]
        if missing:
            raise RecipeError(
                f"{label}: {where}: {{{missing[0]}}} is not a column of the input "
                f"(columns: {', '.join(problems.columns)})"
            )


def _send(requests: list, log: RequestLog, cfg: SampleConfig, ctx: "Context", label: str,
          backend_factory: Callable[[SampleConfig], Backend]) -> tuple[dict, Any, str, Any]:
    """Replay what the log holds, send the rest: (finished payloads by key, the run, teacher, tokenizer)."""
    # ``ctx.resume`` False (``curate run --no-resume``) re-sends everything (new responses replace old)
    have = log.get_many([r.key for r in requests]) if getattr(ctx, "resume", True) else {}
    by_key = {r.key: r for r in requests}
    # a logged payload that cannot be used (damaged, or logged by an older version) is sent again
    have = {k: q for k, p in have.items() if (q := normalize_payload(p, by_key[k].n)) is not None}
    pending = [r for r in requests if r.key not in have]
    count_tokens, token_method = _token_counter(cfg)
    with ctx.progress(sum(r.n for r in pending), f"{label}: {cfg.teacher.model}") as bar:
        run = _Run(log, len(requests), cfg.max_failures, cfg.budget, bar, max_tokens=cfg.max_tokens,
                   count_tokens=count_tokens, token_method=token_method)
        run.from_log = len(have)
        for k, p in have.items():
            run.add_usage(p, new=False, req=by_key[k])
        run.check_budget()
        backend = None
        if pending and run.stop_reason is None:
            backend = backend_factory(cfg)
            run.start()
            try:
                backend.run(pending, run)
            finally:
                run.close()  # queued responses are committed first, also on Ctrl-C
    teacher = backend.teacher if backend is not None else cfg.teacher.model
    tokenizer = getattr(backend, "tokenizer", None) if backend is not None else None
    return {**have, **run.payloads}, run, teacher, tokenizer


def _stats(cfg: SampleConfig, run: Any, n_requests: int, seconds: float, log_path: Path) -> dict:
    stats = {
        "teacher": cfg.teacher.model,
        "backend": cfg.teacher.backend,
        "requests": n_requests,
        "from_log": run.from_log,
        "sent_ok": run.sent_ok,
        "failed": len(run.failures),
        "prompt_tokens": run.prompt_tokens,
        "completion_tokens": run.completion_tokens,
        "new_prompt_tokens": run.new_prompt_tokens,
        "new_completion_tokens": run.new_completion_tokens,
        "usage_missing": run.usage_missing,
        "token_count": ("server usage" if not run.usage_missing else
                        f"server usage; {run.usage_missing} responses without usage: estimate by {run.token_method}"),
        "seconds": round(seconds, 3),
        "log": str(log_path),
    }
    if cfg.budget is not None and cfg.budget.max_usd is not None:
        stats["usd"] = round(run.usd(), 6)
    return stats


def _raise_on_stop(run: Any, cfg: SampleConfig, label: str, n_done: int, n_requests: int, log_path: Path) -> None:
    if run.stop_reason == "failures":
        limit = run.failure_limit()
        why = (f"more than {limit} of {n_requests} requests (max_failures={cfg.max_failures:g})"
               if len(run.failures) > limit else
               f"none of the first {len(run.failures)} succeeded (max_failures={cfg.max_failures:g})")
        raise BackendError(
            f"{label}: {len(run.failures)} requests to {cfg.teacher.model} failed after retries, {why}; "
            f"last error: {run.last_error}. Finished responses are kept in {log_path}; fix the endpoint and "
            "re-run to resume"
        )
    if run.stop_reason and n_done < n_requests:  # a budget reached with work left
        raise BudgetExceeded(
            f"{label}: {run.budget_message()}; {n_done}/{n_requests} requests done and kept in {log_path}; "
            "raise the budget and re-run to resume"
        )


def sample_rows(problems: pl.DataFrame, cfg: SampleConfig, ctx: "Context", *, log_name: str = "sample",
                backend_factory: Callable[[SampleConfig], Backend] | None = None) -> pl.DataFrame:
    """One row per teacher sample (see the package docstring); problem columns are carried over.
    ``backend_factory`` builds the backend for what is not in the log (default: the teacher's own backend;
    the Ray engine passes one that spreads the requests over teacher replicas)."""
    label = ctx.stage_label or log_name
    _check_input(problems, cfg, label, log_name)
    seed = ctx.seed if cfg.seed is None else cfg.seed
    rows = problems.to_dicts()
    requests = plan_requests([build_messages(r, cfg) for r in rows], cfg, seed)
    log_path = Path(ctx.work_dir) / "sampling" / f"{log_name}.sqlite"
    log = RequestLog(log_path)
    busy = _lock_log(log_path, label)  # two processes on one log would both pay for what is missing
    t0 = time.perf_counter()
    try:
        results, run, teacher, tokenizer = _send(requests, log, cfg, ctx, label, backend_factory or make_backend)
    finally:
        log.close()
        busy.release()
    ctx.stats[log_name] = _stats(cfg, run, len(requests), time.perf_counter() - t0, log_path)
    _raise_on_stop(run, cfg, label, len(results), len(requests), log_path)
    if cfg.teacher.backend == "openai" and tokenizer is None and cfg.logprobs is not None:
        from ..backends.openai_compat import (
            tokenizer_column,  # everything came from the log
        )

        tokenizer = tokenizer_column(cfg.teacher)
    return _assemble(problems, rows, requests, results, run.failures, cfg, teacher, tokenizer)


def finish_stage_sampling(out: pl.DataFrame, ctx: "Context", key: str, *, flatten: bool = False) -> pl.DataFrame:
    """What a *stage* does with a :func:`sample_rows` result (the ``sample`` stage on any engine, the
    ``difficulty`` probe and judge): one place, so every caller behaves alike.

    * ``ctx.stats[key]`` (``key`` = the ``log_name``) loses its ``log`` entry, a local path that is not
      for the published manifest; ``flatten`` moves the remaining numbers to the top of ``ctx.stats``
      (the ``sample`` stage: they show in the funnel), else they stay under ``key``;
    * any failed request (``finish_reason == "error"``) sets ``ctx.cacheable = False``, so the runner
      does not cache the output and a re-run retries those requests (finished ones come from the log);
    * failed rows get ``drop_reason: teacher_error`` (a caller that aggregates rows, like the
      difficulty probe, also skips them by ``finish_reason``).
    """
    from ..context import mark_drop

    stats = ctx.stats.pop(key, None)
    if isinstance(stats, dict):
        stats = {k: v for k, v in stats.items() if k != "log"}
        if flatten:
            ctx.stats.update(stats)
        else:
            ctx.stats[key] = stats
    elif stats is not None:  # pragma: no cover - not sample_rows' stats: leave them
        ctx.stats[key] = stats
    failed = out.height > 0 and "finish_reason" in out.columns and bool((out["finish_reason"] == "error").any())
    if failed:
        ctx.cacheable = False
    if "finish_reason" not in out.columns:
        return out
    return mark_drop(out, (pl.col("finish_reason") == "error").fill_null(False), "teacher_error")

def _assemble(problems, rows, requests, results, failures, cfg, teacher, tokenizer) -> pl.DataFrame:
    with_lp = cfg.logprobs is not None
    with_tokens = with_lp and any(
        s.get("topk_tokens") is not None for p in results.values() for s in p.get("samples", [])
    )
    schema = _schema(with_lp, with_tokens)
    cols: dict[str, list] = {c: [] for c in schema}
    pos: list[int] = []
    flat_role: list[str] = []
    flat_content: list[str] = []
    flat_row: list[int] = []
    lp_cols = [c for c in ("token_ids", "topk_ids", "topk_logprobs", "topk_tokens") if c in schema]
    for req in requests:  # planned in problem order, then sample index
        pid = rows[req.pos]["problem_id"]
        payload = results.get(req.key)
        if payload is None:
            err = failures.get(req.key, "not sampled")
            samples, usage, p_tok, tok = [], [], None, None
        else:
            samples = payload["samples"]
            usage = split_usage(payload.get("completion_tokens"), samples)
            p_tok, err = payload.get("prompt_tokens"), "missing sample in response"
            tok = payload.get("tokenizer") or tokenizer
        for j in range(req.n):
            s = samples[j] if j < len(samples) else None
            pos.append(req.pos)
            cols["sample_id"].append(_sample_id(req.key, req.sample_index + j))
            cols["problem_id"].append(pid)
            cols["sample_index"].append(req.sample_index + j)
            cols["teacher"].append(teacher)
            row_no = len(pos) - 1
            for m in req.messages:  # the prompt column is built in one vectorised step below
                flat_role.append(m["role"])
                flat_content.append(m["content"])
                flat_row.append(row_no)
            cols["request_hash"].append(req.key)
            cols["prompt_tokens"].append(p_tok)
            if s is None:
                reasoning = answer = None
                finish, c_tok, error = "error", None, err
            else:
                reasoning, answer, _ = split_reasoning(s.get("content"), s.get("reasoning_content"))
                finish, c_tok, error = s.get("finish_reason") or "stop", usage[j], None
            cols["reasoning"].append(reasoning)
            cols["answer_text"].append(answer)
            cols["finish_reason"].append(finish)
            cols["completion_tokens"].append(c_tok)
            cols["error"].append(error)
            if with_lp:
                for c in lp_cols:
                    cols[c].append(s.get(c) if s is not None else None)
                cols["tokenizer"].append(tok if s is not None else None)
    prompts = (flat_row, flat_role, flat_content)
    return _frame(cols, schema, prompts, problems, pos)


def _frame(cols: dict[str, list], schema: dict, prompt_parts: tuple[list[int], list[str], list[str]],
           problems: pl.DataFrame, pos: list[int]) -> pl.DataFrame:
    """The sample rows as a frame: the prompt column built from the flat messages, the problems' columns carried."""
    flat_row, flat_role, flat_content = prompt_parts
    prompt_t = schema["prompt"]
    cols.pop("prompt")
    samples_df = pl.DataFrame(cols, schema={k: v for k, v in schema.items() if k != "prompt"}, strict=False)
    prompts = (
        pl.DataFrame({"__row": flat_row, "role": flat_role, "content": flat_content},
                     schema={"__row": pl.Int64, "role": pl.Utf8, "content": pl.Utf8})
        .group_by("__row", maintain_order=True)
        .agg(pl.struct("role", "content").alias("prompt"))
    )
    samples_df = samples_df.with_columns(
        prompts["prompt"].cast(prompt_t) if prompts.height == samples_df.height else pl.lit(None, dtype=prompt_t).alias("prompt")
    )
    carried = [c for c in problems.columns if c not in schema]
    carried_df = problems.select(carried).gather(pos) if pos else problems.select(carried).clear()
    out = pl.concat([samples_df, carried_df], how="horizontal")
    first = [c for c in carried if c != "problem_id"]
    return out.select(["sample_id", "problem_id", *first, *[c for c in schema if c not in ("sample_id", "problem_id")]])
