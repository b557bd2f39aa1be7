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


def _think(reasoning: str | None, answer: str | None) -> str:
    reasoning, answer = (reasoning or "").strip(), (answer or "").strip()
    return f"<think>\n{reasoning}\n</think>\n\n{answer}" if reasoning else answer


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
        cmsgs = [{"role": "assistant", "content": _think(row.get("reasoning"), row.get("answer_text"))}]
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


def _reasoning_of(content: str) -> str:
    if "</think>" not in content:
        return ""
    return content.split("</think>")[0].split("<think>")[-1].strip()


def template_keeps_reasoning(tokenizer, example: dict) -> bool:
    """Whether the chat template renders the assistant's <think> reasoning of the final turn
    (some templates strip it from assistant turns, which would silently train without it)."""
    reasoning = _reasoning_of(example["completion"][-1]["content"])
    if not reasoning:
        return True
    text = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=False)
    return reasoning[:200] in text


def sft_dataset(ds, tokenizer, where: str = "dataset"):
    """The dataset TRL's SFTTrainer gets: conversational prompt/completion (loss on the completion only).

    When the chat template drops the reasoning, rows become text prompt/completion instead: the prompt
    rendered by the template (with the generation prompt) and the raw assistant content + EOS, so the
    reasoning is trained all the same.
    """
    keep = [c for c in ("curriculum_rank", "curriculum_stage") if c in ds.column_names]
    conv = ds.map(lambda r: to_prompt_completion(r, where), remove_columns=[c for c in ds.column_names if c not in keep])
    if template_keeps_reasoning(tokenizer, conv[0]):
        return conv, "conversational"

    def as_text(r):
        prompt = tokenizer.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
        return {"prompt": prompt, "completion": r["completion"][-1]["content"]}

    return conv.map(as_text), "text"


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


def encode_kd(row: dict, tokenizer, max_length: int, vocab_size: int, where: str = "dataset") -> dict:
    """input_ids = chat-template prompt + the teacher's completion ``token_ids``; ``labels`` mask the
    prompt; ``topk_*`` are placed at the label positions (-1 / 0 elsewhere)."""
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
    prompt = prompt_messages(row, where)
    prompt_ids = tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True)
    if isinstance(prompt_ids, dict) or hasattr(prompt_ids, "keys"):
        prompt_ids = prompt_ids["input_ids"]
    prompt_ids = list(prompt_ids)
    k = max((len(t) for t in topk_ids), default=1)
    hi = max((max(t) for t in topk_ids if len(t)), default=-1)
    hi = max([hi, *token_ids])
    if hi >= vocab_size:
        raise SourceError(
            f"{where}: fields token_ids/topk_ids hold id {hi} outside the student's "
            f"vocabulary of {vocab_size}: the teacher used another tokenizer"
        )
    n = max(0, min(len(token_ids), max_length - len(prompt_ids)))
    pad_ids, pad_lps = [-1] * k, [0.0] * k
    ids_rows = [pad_ids] * len(prompt_ids) + [list(r) + [-1] * (k - len(r)) for r in topk_ids[:n]]
    lps_rows = [pad_lps] * len(prompt_ids) + [list(r) + [0.0] * (k - len(r)) for r in topk_lps[:n]]
    return {
        "input_ids": prompt_ids + token_ids[:n],
        "labels": [IGNORE_INDEX] * len(prompt_ids) + token_ids[:n],
        "kd_topk_ids": ids_rows[:max_length],
        "kd_topk_logprobs": lps_rows[:max_length],
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
