"""Training data: load a curate version / parquet / jsonl / hub dataset, normalise rows to TRL's
conversational prompt-completion format, curriculum order, and the offline-KD encoding.

Libraries: ``datasets`` loads and maps; the tokenizer's own chat template renders prompts.
"""

from __future__ import annotations

import glob
import json
import os
import re
from pathlib import Path
from typing import Any

from .. import traces
from ..errors import SourceError
from .config import CurriculumConfig, DatasetConfig
from ..tokenizer import split_tag, tokenizer_hash

IGNORE_INDEX = -100
KD_COLUMNS = ("token_ids", "topk_ids", "topk_logprobs")


# ---------------------------------------------------------------------------------------------- loading


def _resolve(path: str, base: Path | None) -> Path | None:
    p = Path(os.path.expanduser(path))
    if not p.is_absolute() and base is not None and (base / p).exists():
        return base / p
    return p if p.exists() else None


def load_rows(cfg: DatasetConfig, base_dir: Path | None = None, where: str = "dataset.path"):
    """A ``datasets.Dataset`` from a version dir, a parquet/jsonl file or dir, or a hub id."""
    import datasets

    local = _resolve(cfg.path, base_dir)
    try:
        if local is not None and local.is_dir():
            files = sorted(glob.glob(str(local / "data" / f"{cfg.split}-*.parquet")))
            files = files or sorted(glob.glob(str(local / f"{cfg.split}-*.parquet")))
            files = files or sorted(glob.glob(str(local / "*.parquet")))
            if not files:
                raise SourceError(f"{local}: no data/{cfg.split}-*.parquet files ({where}, split={cfg.split!r})")
            ds = datasets.Dataset.from_parquet(files)
        elif local is not None:
            suffix = local.suffix.lower()
            if suffix == ".parquet":
                ds = datasets.Dataset.from_parquet(str(local))
            elif suffix in (".jsonl", ".json"):
                ds = datasets.Dataset.from_json(str(local))
            else:
                raise SourceError(f"{local}: unsupported dataset file type {suffix!r} ({where}); use parquet or jsonl")
        else:
            if cfg.path.startswith((".", "/", "~")) or cfg.path.count("/") > 1:
                raise SourceError(f"{cfg.path}: no such file or directory ({where})")
            ds = datasets.load_dataset(cfg.path, split=cfg.split, revision=cfg.revision)
    except SourceError:
        raise
    except Exception as e:  # datasets/pyarrow errors -> one line naming the input
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SourceError(f"{cfg.path}: cannot load dataset ({where}): {msg}") from None
    if len(ds) == 0:
        raise SourceError(f"{cfg.path}: dataset split {cfg.split!r} is empty ({where})")
    return ds


# ---------------------------------------------------------------------------------------------- curriculum


def has_curriculum(ds, cfg: CurriculumConfig) -> bool:
    return cfg.mode == "auto" and "curriculum_rank" in ds.column_names


def curriculum_order(ranks: list, stages: list | None, shuffle_within_stage: bool, seed: int) -> list[int]:
    """Row indices in curriculum order: ascending rank; optionally shuffled inside each stage
    (stages keep the order of their lowest rank)."""
    import random

    order = sorted(range(len(ranks)), key=lambda i: (ranks[i], i))
    if not (shuffle_within_stage and stages is not None):
        return order
    rng = random.Random(seed)
    out: list[int] = []
    first_seen: dict[Any, int] = {}
    groups: dict[Any, list[int]] = {}
    for i in order:
        key = stages[i]
        first_seen.setdefault(key, len(first_seen))
        groups.setdefault(key, []).append(i)
    for key in sorted(groups, key=first_seen.__getitem__):
        g = groups[key]
        rng.shuffle(g)
        out.extend(g)
    return out


def apply_curriculum(ds, cfg: CurriculumConfig, seed: int, where: str = "dataset"):
    """Reorder rows by ``curriculum_rank`` (the trainer then reads them sequentially)."""
    if not has_curriculum(ds, cfg):
        return ds, False
    ranks = ds["curriculum_rank"]
    if any(r is None for r in ranks):
        raise SourceError(f"{where}: column curriculum_rank has null values")
    stages = ds["curriculum_stage"] if "curriculum_stage" in ds.column_names else None
    return ds.select(curriculum_order(list(ranks), stages, cfg.shuffle_within_stage, seed)), True


# ---------------------------------------------------------------------------------------------- row shapes


def _as_messages(value: Any) -> list[dict] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.lstrip().startswith("[") else value
        except json.JSONDecodeError:
            return None
    if isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value):
        return [{"role": m["role"], "content": m.get("content") or ""} for m in value]
    return None


def to_prompt_completion(row: dict, where: str = "dataset") -> dict:
    """Normalise one row to {"prompt": [messages], "completion": [assistant message]}.

    Accepted shapes (first match wins): ``messages`` ending with an assistant turn;
    ``prompt`` + ``completion``; ``prompt`` (messages) + ``reasoning``/``answer_text``;
    ``problem`` + ``reasoning``/``answer_text``.
    """
    msgs = _as_messages(row.get("messages"))
    if msgs:
        if msgs[-1]["role"] != "assistant":
            raise SourceError(f"{where}: field messages must end with an assistant turn (got {msgs[-1]['role']!r})")
        return {"prompt": msgs[:-1], "completion": [msgs[-1]]}
    pmsgs = prompt_messages(row, where)
    completion = row.get("completion")
    cmsgs = _as_messages(completion)
    if cmsgs is None and isinstance(completion, str):
        cmsgs = [{"role": "assistant", "content": completion}]
    if cmsgs is None and (row.get("reasoning") or row.get("answer_text")):
        cmsgs = [{"role": "assistant", "content": traces.join(row.get("reasoning"), row.get("answer_text"))}]
    if cmsgs is None:
        raise SourceError(f"{where}: a row has a prompt but no completion (fields completion or reasoning/answer_text)")
    return {"prompt": pmsgs, "completion": cmsgs}


def prompt_messages(row: dict, where: str = "dataset") -> list[dict]:
    """The prompt turns of a row: ``messages`` minus the last turn, ``prompt`` (messages or text), or ``problem``."""
    msgs = _as_messages(row.get("messages"))
    if msgs:
        return msgs[:-1] if msgs[-1]["role"] == "assistant" else msgs
    prompt = row.get("prompt")
    pmsgs = _as_messages(prompt)
    if pmsgs is None and isinstance(prompt, str):
        pmsgs = [{"role": "user", "content": prompt}]
    if pmsgs is None and row.get("problem"):
        pmsgs = [{"role": "user", "content": str(row["problem"])}]
    if pmsgs is None:
        raise SourceError(f"{where}: a row has none of the fields messages, prompt, problem")
    return pmsgs


def template_keeps_reasoning(tokenizer, example: dict) -> bool:
    """Whether the chat template renders the assistant's <think> reasoning of the final turn of ``example``
    (some templates strip it from assistant turns). A row without reasoning tells nothing: True."""
    reasoning = traces.reasoning_of(example["completion"][-1]["content"])
    if not reasoning:
        return True
    text = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=False)
    return reasoning[:200] in text


# ---------------------------------------------------------------------------------------------- chat encoding


_PROBE = "\u2063curate-end-of-turn-probe\u2063"


def end_of_turn(tokenizer) -> str:
    """What the chat template writes after an assistant turn's content (``<|im_end|>\\n``,
    ``<｜end▁of▁sentence｜>``...), found by rendering a probe turn; the EOS token if the probe is not found."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}, {"role": "assistant", "content": _PROBE}], tokenize=False
    )
    if _PROBE in text:
        tail = text.rsplit(_PROBE, 1)[1]
        if tail.strip():
            return tail
    return tokenizer.eos_token or ""


def _prefilled(prompt_text: str, content: str) -> int:
    """How many leading characters of ``content`` the generation prompt already holds (a prefilled <think>)."""
    for k in range(min(len(content), 32), 0, -1):
        if "<think>" in content[:k] and prompt_text.endswith(content[:k]):
            return k
    return 0


def _ids(tokenizer, text: str) -> list[int]:
    # chat-template text already holds the special tokens the template wants (bos included): add none
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_chat(pc: dict, tokenizer, eot: str) -> dict:
    """Token ids of one prompt/completion row, the prompt exactly as the chat template renders it for
    generation (``add_generation_prompt=True``, no extra BOS), the completion with its reasoning.

    When the template renders the whole conversation as that prompt plus the completion with its reasoning,
    the completion is the template's own rendering. Otherwise (the template strips <think> blocks, or renders
    the prompt differently, e.g. it prefills ``<think>\\n``), the completion is the raw assistant content after
    what the prompt already prefills, followed by the template's end of turn ``eot``.
    """
    prompt, content = pc["prompt"], pc["completion"][-1]["content"]
    reasoning = traces.reasoning_of(content)
    p_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(prompt + pc["completion"], tokenize=False)
    fallback = not (full.startswith(p_text) and (not reasoning or reasoning[:200] in full[len(p_text):]))
    if not fallback:
        c_text = full[len(p_text):]
    else:
        k = _prefilled(p_text, content)
        body = content[k:]
        if not k and traces.ends_inside_think(p_text) and "<think>" not in content:
            body = ("" if p_text.endswith("\n") else "\n") + "\n</think>\n\n" + content.lstrip()
        c_text = body + eot
    return {
        "prompt_ids": _ids(tokenizer, p_text),
        "completion_ids": _ids(tokenizer, c_text),
        "has_reasoning": bool(reasoning),
        "kept_reasoning": bool(reasoning) and reasoning[:200] in c_text,
        "fallback": fallback,
    }


def fit_length(prompt_ids: list, completion_ids: list, max_length: int, policy: str) -> tuple[list, list, str]:
    """Apply the truncation policy: ``("ok" | "cut" | "dropped")``; cut_end keeps the first max_length tokens
    (a row whose prompt alone fills max_length is dropped either way: nothing would be trained)."""
    if len(prompt_ids) + len(completion_ids) <= max_length:
        return prompt_ids, completion_ids, "ok"
    if policy == "drop" or len(prompt_ids) >= max_length:
        return prompt_ids, [], "dropped"
    return prompt_ids, completion_ids[: max_length - len(prompt_ids)], "cut"


STAT_COLUMNS = ("_status", "_has_reasoning", "_kept_reasoning", "_fallback")


def _finish(enc, n_in: int, recipe_max_length: int, policy: str, where: str, extra_sums: tuple = ()):
    """Count the encoding stats, drop the rows the truncation policy drops, remove the stat columns."""
    status = enc["_status"]
    stats = {
        "rows_in": n_in,
        "rows_dropped_too_long": status.count("dropped"),
        "rows_cut_to_max_length": status.count("cut"),
    }
    for col, name in (("_has_reasoning", "rows_with_reasoning"), ("_kept_reasoning", "rows_trained_with_reasoning"),
                      ("_fallback", "rows_rendered_outside_template")):
        if col in enc.column_names:
            stats[name] = int(sum(enc[col]))
    for col in extra_sums:
        stats[col.lstrip("_")] = int(sum(enc[col]))
    if stats["rows_dropped_too_long"]:
        enc = enc.filter(lambda r: r["_status"] != "dropped")
    if len(enc) == 0:
        raise SourceError(
            f"{where}: all {n_in} rows are longer than max_length {recipe_max_length} (truncation: {policy}); "
            "raise max_length" + (" or set truncation: cut_end" if policy == "drop" else "")
        )
    stats["rows_trained"] = len(enc)
    drop = [c for c in enc.column_names if c.startswith("_")]
    return enc.remove_columns(drop), stats


def chat_dataset(ds, tokenizer, max_length: int, truncation: str, where: str = "dataset"):
    """Pre-tokenized rows for SFT and online KD: ``input_ids`` + ``completion_mask`` (1 on the completion),
    every row checked for its reasoning (see ``encode_chat``), the truncation policy applied.
    Returns (dataset, stats); stats count the rows with reasoning, the rows trained with it, the rows
    rendered outside the template, and the rows cut or dropped for length."""
    keep = [c for c in ("curriculum_rank", "curriculum_stage") if c in ds.column_names]
    eot = end_of_turn(tokenizer)

    def enc(r):
        e = encode_chat(to_prompt_completion(r, where), tokenizer, eot)
        p, c, status = fit_length(e["prompt_ids"], e["completion_ids"], max_length, truncation)
        return {"input_ids": p + c, "completion_mask": [0] * len(p) + [1] * len(c), "_status": status,
                "_has_reasoning": e["has_reasoning"], "_kept_reasoning": e["kept_reasoning"], "_fallback": e["fallback"]}

    out = ds.map(enc, remove_columns=[c for c in ds.column_names if c not in keep])
    out, stats = _finish(out, len(ds), max_length, truncation, where)
    if stats["rows_trained_with_reasoning"] < stats["rows_with_reasoning"]:  # never expected: encode_chat keeps it
        raise SourceError(
            f"{where}: {stats['rows_with_reasoning'] - stats['rows_trained_with_reasoning']} rows would train without "
            "their <think> reasoning with this chat template; set student.chat_template"
        )
    return out, stats


def sft_dataset(ds, tokenizer, where: str = "dataset", max_length: int = 1 << 30, truncation: str = "drop"):
    """The dataset TRL's SFTTrainer gets (pre-tokenized; loss on the completion only) and its data format:
    ``conversational`` when every row was rendered by the chat template, ``text`` when none was (the template
    strips the reasoning or renders the prompt differently), ``mixed`` otherwise; and the stats."""
    out, stats = chat_dataset(ds, tokenizer, max_length, truncation, where)
    n_fb = stats["rows_rendered_outside_template"]
    fmt = "conversational" if n_fb == 0 else ("text" if n_fb == stats["rows_in"] else "mixed")
    return out, fmt, stats


# ---------------------------------------------------------------------------------------------- offline KD


_HASH = re.compile(r"[0-9a-f]{16}")
"""What ``curate.tokenizer.tokenizer_hash`` returns."""


def check_tokenizer(ds, tokenizer, where: str = "dataset") -> None:
    """Stored ``tokenizer`` tags must carry the student's tokenizer hash."""
    if "tokenizer" not in ds.column_names:
        raise SourceError(
            f"{where}: offline KD needs a tokenizer column (name@hash) to check the student's tokenizer; "
            "set kd.check_tokenizer: false to skip the check"
        )
    mine = tokenizer_hash(tokenizer)
    for tag in sorted(set(ds["tokenizer"]), key=lambda t: (t is None, str(t))):
        name, digest = split_tag(tag or "")
        if not _HASH.fullmatch(digest):  # "model@" (an API teacher without teacher.tokenizer), a bare name
            raise SourceError(
                f"{where}: field tokenizer is {tag!r}: no tokenizer hash recorded for the teacher; "
                "set teacher.tokenizer when sampling, or kd.check_tokenizer: false"
            )
        if digest != mine:
            raise SourceError(
                f"{where}: field tokenizer is {tag!r} but the student's tokenizer hashes to {mine}; "
                "teacher top-k ids would index the wrong tokens (use a student of the teacher's tokenizer family)"
            )


def require_kd_columns(ds, where: str = "dataset") -> None:
    missing = [c for c in KD_COLUMNS if c not in ds.column_names]
    if missing:
        raise SourceError(f"{where}: method kd needs columns {', '.join(missing)} (sample with logprobs enabled)")


def topk_position_stats(topk_ids: list, topk_lps: list) -> dict:
    """Per-row counts over the stored teacher top-k: positions with an empty list, positions with an invalid
    log-prob (NaN or +inf), positions whose top-k probabilities sum above 1 (beyond rounding), the largest sum."""
    import math

    empty = invalid = over = 0
    max_mass = 0.0
    for ids, lps in zip(topk_ids, topk_lps):
        if not len(ids):
            empty += 1
            continue
        if any(lp is None or math.isnan(lp) or lp == math.inf for lp in lps):
            invalid += 1
            continue
        mass = sum(math.exp(lp) for lp in lps)
        max_mass = max(max_mass, mass)
        over += mass > 1.0 + 1e-3
    return {"empty": empty, "invalid": invalid, "over": over, "max_mass": max_mass}


def encode_kd(row: dict, tokenizer, max_length: int, vocab_size: int, where: str = "dataset",
              truncation: str = "cut_end") -> dict:
    """input_ids = chat-template prompt + the teacher's completion ``token_ids``; ``labels`` mask the
    prompt; ``topk_*`` are placed at the label positions (-1 / 0 elsewhere). Positions whose stored top-k is
    empty or invalid (NaN / +inf log-probs) get no entries (-1): the loss trains them with CE only.
    ``_status`` is the truncation outcome (ok | cut | dropped), ``_kd_*`` the position counts."""
    import math

    for col in KD_COLUMNS:
        if row.get(col) is None:
            raise SourceError(f"{where}: offline KD needs field {col} in every row")
    token_ids = [int(t) for t in row["token_ids"]]
    topk_ids, topk_lps = row["topk_ids"], row["topk_logprobs"]
    if not (len(token_ids) == len(topk_ids) == len(topk_lps)):
        raise SourceError(
            f"{where}: fields token_ids ({len(token_ids)}), topk_ids ({len(topk_ids)}) and topk_logprobs "
            f"({len(topk_lps)}) must have one entry per completion token"
        )
    if any(len(a) != len(b) for a, b in zip(topk_ids, topk_lps)):
        raise SourceError(f"{where}: fields topk_ids and topk_logprobs differ in length at some position")
    stats = topk_position_stats(topk_ids, topk_lps)
    prompt = prompt_messages(row, where)
    prompt_ids = tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True)
    if isinstance(prompt_ids, dict) or hasattr(prompt_ids, "keys"):
        prompt_ids = prompt_ids["input_ids"]
    prompt_ids = list(prompt_ids)
    k = max((len(t) for t in topk_ids), default=1) or 1
    hi = max((max(t) for t in topk_ids if len(t)), default=-1)
    hi = max([hi, *token_ids])
    if hi >= vocab_size:
        raise SourceError(
            f"{where}: fields token_ids/topk_ids hold id {hi} outside the student's "
            f"vocabulary of {vocab_size}: the teacher used another tokenizer"
        )
    prompt_ids, kept, status = fit_length(prompt_ids, token_ids, max_length, truncation)
    n = len(kept)
    pad_ids, pad_lps = [-1] * k, [0.0] * k

    def ok(lps):
        return all(lp is not None and not math.isnan(lp) and lp != math.inf for lp in lps)

    ids_rows, lps_rows = [pad_ids] * len(prompt_ids), [pad_lps] * len(prompt_ids)
    for ids, lps in zip(topk_ids[:n], topk_lps[:n]):
        if len(ids) and ok(lps):
            ids_rows.append(list(ids) + [-1] * (k - len(ids)))
            lps_rows.append([float(x) for x in lps] + [0.0] * (k - len(lps)))
        else:
            ids_rows.append(pad_ids)
            lps_rows.append(pad_lps)
    return {
        "input_ids": prompt_ids + kept,
        "labels": [IGNORE_INDEX] * len(prompt_ids) + kept,
        "kd_topk_ids": ids_rows,
        "kd_topk_logprobs": lps_rows,
        "_status": status,
        "_kd_positions_empty_topk": stats["empty"],
        "_kd_positions_invalid_logprobs": stats["invalid"],
        "_kd_positions_topk_mass_over_1": stats["over"],
        "_kd_max_topk_mass": stats["max_mass"],
    }


class KDCollator:
    """Pads input_ids/labels and the per-position top-k arrays to the longest row of the batch."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        L = max(len(r["input_ids"]) for r in rows)
        k = max(len(r["kd_topk_ids"][0]) for r in rows)
        B = len(rows)
        input_ids = torch.full((B, L), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((B, L), dtype=torch.long)
        labels = torch.full((B, L), IGNORE_INDEX, dtype=torch.long)
        ids = torch.full((B, L, k), -1, dtype=torch.long)
        lps = torch.zeros((B, L, k), dtype=torch.float32)
        for b, r in enumerate(rows):
            n = len(r["input_ids"])
            input_ids[b, :n] = torch.tensor(r["input_ids"])
            attention[b, :n] = 1
            labels[b, :n] = torch.tensor(r["labels"])
            ti = torch.tensor(r["kd_topk_ids"], dtype=torch.long)
            ids[b, :n, : ti.shape[1]] = ti
            lps[b, :n, : ti.shape[1]] = torch.tensor(r["kd_topk_logprobs"], dtype=torch.float32)
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels,
                "kd_topk_ids": ids, "kd_topk_logprobs": lps}


class ChatCollator:
    """Batches of ``chat_dataset`` rows for online KD: ``input_ids``/``attention_mask``/``labels`` right-padded
    (prompt positions -100), and the prompts left-padded as ``prompts``/``prompt_attention_mask`` (what TRL's
    GKD generates from when ``lmbda > 0``)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        B = len(rows)
        L = max(len(r["input_ids"]) for r in rows)
        plens = [r["completion_mask"].index(1) if 1 in r["completion_mask"] else len(r["input_ids"]) for r in rows]
        P = max(plens)
        input_ids = torch.full((B, L), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((B, L), dtype=torch.long)
        labels = torch.full((B, L), IGNORE_INDEX, dtype=torch.long)
        prompts = torch.full((B, P), self.pad_token_id, dtype=torch.long)
        prompt_mask = torch.zeros((B, P), dtype=torch.long)
        for b, (r, p) in enumerate(zip(rows, plens)):
            ids = torch.tensor(r["input_ids"], dtype=torch.long)
            n = len(ids)
            input_ids[b, :n] = ids
            attention[b, :n] = 1
            labels[b, p:n] = ids[p:]
            prompts[b, P - p:] = ids[:p]
            prompt_mask[b, P - p:] = 1
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels,
                "prompts": prompts, "prompt_attention_mask": prompt_mask}
