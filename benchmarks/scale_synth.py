"""Synthetic teacher traces at scale for ``benchmarks/scale.py`` (seeded, vectorised, streamed to disk).

    python benchmarks/scale_synth.py OUT_DIR --rows 1000000     # 1M traces, 125k problems, ~8 files

Writes a ``traces`` source: parquet files ``traces-00000.parquet`` ... with one row per problem
(``problem``, ``answer``, ``generations``: a list of 8 traces) and ``meta.json`` (the parameters,
so a data folder can be reused). Files hold at most ``file_problems`` problems (default 25,000 =
200k traces) and are written in row groups of ``group_problems``, so generation memory stays at
one row group (~100 MB) whatever the size; 10M traces take minutes (numpy + pyarrow kernels, no
Python loop over rows).

What the rows exercise (ideas from tests/support/ray_synth.py, scaled up):
- TEMPLATED problems: a fixed pool of templates (``templates``, default 5,000), each a lead
  sentence plus an arithmetic story with slots (name, noun, two numbers); many problems share a
  template with different names/nouns/numbers (near-identical text, different answers: the case
  that makes LSH candidate pairs grow quadratically), plus exact duplicates (same text), case and
  spacing variants (same tokens, another problem_id) and near duplicates (a word of the lead
  sentence changed, same gold answer).
- gold answers: integers (add, subtract, multiply templates) or reduced fractions ``\\frac{a}{b}``.
- traces of about 2.1k characters: ``<think>`` reasoning made of sentences from a seeded pool (a
  problem's 8 traces partly share reasoning: copied and lightly edited sentences), one arithmetic
  line, ``</think>``, then an answer that is right or wrong (per-problem skill) in several notations
  (boxed, ``\\frac``, ``a/b``, decimals, ``####``, "The answer is", "Therefore ... coins") or
  missing; some traces are truncated (no ``</think>``, no answer).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

PER_PROBLEM = 8
FORMAT_VERSION = 1  # bump when the generated rows change (meta.json check on reuse)

_REAL = (
    "apple", "basket", "train", "river", "number", "garden", "window", "pencil", "marble", "ticket", "cookie",
    "farmer", "bridge", "candle", "rabbit", "ladder", "orange", "violin", "planet", "shovel", "bottle", "wallet",
    "rocket", "button", "mirror", "hammer", "carpet", "tiger", "lemon", "pocket", "circle", "square", "triangle",
    "minute", "hour", "week", "money", "coin", "store", "price", "total", "each", "more", "less", "twice", "half",
    "quarter", "dozen", "pair", "group", "team", "class", "school", "friend", "sister", "brother", "mother",
    "father", "uncle", "first", "then", "next", "so", "since", "because", "therefore", "thus", "hence", "we", "let",
    "note", "that", "check", "again", "wait", "compute", "count", "add", "subtract", "multiply", "divide", "sum",
    "product", "difference", "ratio", "value", "result", "step", "case", "both", "the", "a", "of", "to", "and",
    "in", "is", "it", "for", "on", "with", "as", "at", "by", "from", "this", "which", "are", "be", "was", "can",
    "if"
)
_NAMES = (
    "Ava", "Ben", "Cara", "Dan", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jade", "Kai", "Lena", "Milo", "Nora", "Omar",
    "Pia", "Quinn", "Rosa", "Sam", "Tara", "Uma", "Vic", "Wes", "Xena", "Yuri", "Zoe", "Ada", "Bo", "Cyd", "Dev",
    "Emi", "Finn", "Gia", "Hal", "Ira", "Jon", "Kim", "Leo", "Mae", "Ned", "Oli", "Pam", "Ray", "Sue", "Ted", "Val"
)
_NOUNS = (
    "apple", "marble", "ticket", "cookie", "pencil", "candle", "button", "coin", "stamp", "card", "shell",
    "sticker", "book", "toy", "cup", "bead", "plate", "flower", "egg", "orange", "lemon", "ribbon", "brick",
    "block", "kite", "ball", "hat", "sock", "glove", "box", "bag", "jar", "tile", "nail", "seed", "leaf", "stone",
    "feather", "badge", "key"
)


# The story of each operation: literal text and slots P (name), N (noun), A, B (numbers).
_OPS = (
    ("P", " has ", "A", " ", "N", "s and then gets ", "B", " more ", "N", "s. How many ", "N", "s does ", "P",
     " have now?"),
    ("P", " had ", "A", " ", "N", "s and gave away ", "B", " of them. How many ", "N", "s are left?"),
    ("P", " buys ", "A", " boxes with ", "B", " ", "N", "s in each box. How many ", "N", "s did ", "P",
     " buy in total?"),
    ("P", " shares ", "A", " ", "N", "s equally among ", "B", " friends. How much ", "N",
     " does each friend get? Give the answer as a fraction."),
)
_SLOTS = {"P", "N", "A", "B"}


@dataclass
class Params:
    rows: int
    seed: int = 0
    templates: int = 5000
    """Size of the template pool (fixed: problems per template grow with rows, as in templated data)."""
    file_problems: int = 25_000
    group_problems: int = 5000
    pool_sentences: int = 40_000
    trace_chars: int = 2100
    format_version: int = FORMAT_VERSION


def _vocab(rng: np.random.Generator, n_pseudo: int = 3000) -> np.ndarray:
    """Real words plus seeded pseudo-words (syllables), so reasoning text is varied, not a few words."""
    cons = list("bcdfghjklmnprstvwz")
    vows = ["a", "e", "i", "o", "u", "ai", "ou", "ea"]
    syl = np.array([c + v for c in cons for v in vows])
    k = rng.integers(2, 4, size=n_pseudo)
    parts = rng.integers(0, len(syl), size=(n_pseudo, 3))
    words = set(_REAL) | {"".join(syl[parts[i, : k[i]]]) for i in range(n_pseudo)}
    return np.array(sorted(words))


def _offsets(lengths: np.ndarray) -> np.ndarray:
    off = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=off[1:])
    return off


def _join_rows(tokens: pa.Array, offsets: np.ndarray, sep: str) -> pa.Array:
    """Row i = sep.join(tokens[offsets[i]:offsets[i+1]]) (a C++ kernel, no Python loop)."""
    lists = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), tokens)
    return pc.binary_join(lists, sep)


def _take(arr: pa.Array, idx: np.ndarray) -> pa.Array:
    return arr.take(pa.array(idx))


def _cat(*parts) -> pa.Array:
    """Element-wise concatenation of string arrays and literal strings."""
    return pc.binary_join_element_wise(*[pa.scalar(x) if isinstance(x, str) else x for x in parts], "")


def _where(mask: np.ndarray, yes, no) -> pa.Array:
    return pc.if_else(pa.array(mask), yes, no)


def _str(x: np.ndarray) -> pa.Array:
    return pa.array(x).cast(pa.string())


class _Pools:
    """Seeded text pools shared by every chunk: sentences (+ a one-word variant of each) and templates."""

    def __init__(self, p: Params):
        rng = np.random.default_rng([p.seed, 1])
        vocab = _vocab(rng)
        w = 1.0 / np.arange(1, len(vocab) + 1) ** 0.9  # Zipf-like: common words recur, the tail varies
        rng.shuffle(w)
        w /= w.sum()
        n = p.pool_sentences
        lens = rng.integers(7, 19, size=n)
        off = _offsets(lens)
        idx = rng.choice(len(vocab), size=int(off[-1]), p=w)
        self.sentences = _cat(pc.utf8_capitalize(_join_rows(pa.array(vocab[idx]), off, " ")), ".")
        # variant: one word of each sentence replaced (near-duplicate problems use it)
        pos = off[:-1] + rng.integers(0, 1 << 30, size=n) % lens
        idx[pos] = (idx[pos] + rng.integers(1, len(vocab), size=n)) % len(vocab)
        self.variants = _cat(pc.utf8_capitalize(_join_rows(pa.array(vocab[idx]), off, " ")), ".")
        self.mean_chars = float(np.mean(pc.utf8_length(self.sentences).to_numpy())) + 1
        self.t_lead = rng.integers(0, n, size=p.templates)  # each template's lead sentence
        self.t_op = rng.integers(0, len(_OPS), size=p.templates)


def _problems(rng: np.random.Generator, pools: _Pools, n: int, p: Params) -> dict:
    """n templated problems: text, gold (text), gold value (num/den), with planted duplicates."""
    tid = rng.integers(0, p.templates, size=n)
    op = pools.t_op[tid]
    a = rng.integers(2, 400, size=n)
    b = rng.integers(2, 60, size=n)
    a = np.where(op == 1, a + b, a)  # subtract: a > b
    g = np.gcd(a, b)
    num = np.select([op == 0, op == 1, op == 2], [a + b, a - b, a * b], default=a // g)
    den = np.where(op == 3, b // g, 1)
    slots = {"P": pa.array(np.array(_NAMES)[rng.integers(0, len(_NAMES), size=n)]),
             "N": pa.array(np.array(_NOUNS)[rng.integers(0, len(_NOUNS), size=n)]),
             "A": _str(a), "B": _str(b)}
    own = _cat(" ", _take(pools.sentences, rng.integers(0, len(pools.sentences), size=n)))
    second = _where(rng.random(n) < 0.5, own, pa.scalar(""))  # half carry a sentence of their own
    text = _story(_take(pools.sentences, pools.t_lead[tid]), second, slots, op)
    # duplicates of an earlier problem of the chunk (r): near (4%: same question, one word of the lead
    # sentence changed), exact (3%: the same text), case/spacing variant (3%: same tokens, another problem_id)
    i = np.arange(n)
    src = np.floor(rng.random(n) * i).astype(np.int64)
    r = np.where(i > 0, rng.random(n), 1.0)
    near, exact, variant = r < 0.04, (r >= 0.04) & (r < 0.07), (r >= 0.07) & (r < 0.10)
    near_text = _story(_take(pools.variants, pools.t_lead[tid[src]]), _take(second, src),
                       {k: _take(v, src) for k, v in slots.items()}, op[src])
    src_text = _take(text, src)
    spaced = pc.replace_substring(pc.utf8_upper(src_text), "?", " ?")
    text = _where(near, near_text, _where(exact, src_text, _where(variant, spaced, text)))
    copy = near | exact | variant
    num, den, a, b, op = (np.where(copy, x[src], x) for x in (num, den, a, b, op))
    slots["N"] = _where(copy, _take(slots["N"], src), slots["N"])
    gold = _where(den == 1, _str(num), _cat("\\frac{", _str(num), "}{", _str(den), "}"))
    return {"text": text, "gold": gold, "num": num, "den": den, "a": a, "b": b, "op": op, "noun": slots["N"]}


def _story(lead: pa.Array, second: pa.Array, slots: dict, op: np.ndarray) -> pa.Array:
    """The problem text: lead sentence, optional own sentence, then the story of its operation with its slots."""
    text = None
    for k, story in enumerate(_OPS):
        t = _cat(lead, second, " ", *[slots[x] if x in _SLOTS else x for x in story])
        text = t if text is None else _where(op == k, t, text)
    return text


def _answers(rng: np.random.Generator, pr: dict, m: int) -> tuple[pa.Array, np.ndarray]:
    """(answer text, truncated mask) for m = 8 * problems traces: right or wrong per problem skill."""
    rep = np.repeat(np.arange(len(pr["num"])), PER_PROBLEM)
    num, den = pr["num"][rep], pr["den"][rep]
    skill = rng.random(len(pr["num"]))[rep]
    right = rng.random(m) < skill
    v = np.where(right, num, num + rng.integers(1, 5, size=m))
    vs, ds = _str(v), _str(den)
    noun = _take(pr["noun"], rep)
    form = rng.integers(0, 6, size=m)
    ints = [
        _cat("The answer is $\\boxed{", vs, "}$."),
        _cat("Therefore the total is ", vs, " ", noun, "s."),
        _cat("#### ", vs),
        pa.array([""] * m),  # answer missing after </think>
        _cat("\\boxed{", vs, ".0}"),
        _cat("Answer: ", vs),
    ]
    dec = pc.round(pa.array(v / den), 6).cast(pa.string())
    fracs = [
        _cat("The answer is $\\boxed{\\frac{", vs, "}{", ds, "}}$."),
        _cat("So the result is ", vs, "/", ds, "."),
        _cat("Final answer: \\boxed{", dec, "}"),
    ]
    int_ans = ints[0]
    for k in range(1, 6):
        int_ans = _where(form == k, ints[k], int_ans)
    frac_ans = _where(form < 2, fracs[0], _where(form < 4, fracs[1], fracs[2]))
    ans = _where(den == 1, int_ans, frac_ans)
    truncated = rng.random(m) < 0.06
    return ans, truncated


def _reasoning(rng: np.random.Generator, pools: _Pools, pr: dict, m: int, p: Params) -> tuple[pa.Array, pa.Array]:
    """<think> bodies of about trace_chars characters: sentences of the pool; the 8 traces of a
    problem share a base (copied, lightly edited or fresh); and the arithmetic line that follows."""
    n, s = len(pr["num"]), len(pools.sentences)
    mean = max(2.0, (p.trace_chars - 75) / pools.mean_chars)
    kmax = int(mean * 1.4) + 1
    base = rng.integers(0, s, size=(n, kmax))
    idx = np.repeat(base, PER_PROBLEM, axis=0)
    kind = rng.random(m)
    fresh = rng.integers(0, s, size=(m, kmax))
    edit = (kind[:, None] >= 0.25) & (rng.random((m, kmax)) < np.where(kind[:, None] < 0.5, 0.15, 1.0))
    idx = np.where(edit, fresh, idx)
    nsent = rng.integers(int(mean * 0.6), kmax + 1, size=m)
    keep = np.arange(kmax)[None, :] < nsent[:, None]
    body = _join_rows(_take(pools.sentences, idx[keep]), _offsets(nsent), " ")
    rep = np.repeat(np.arange(n), PER_PROBLEM)
    a, b, op = pr["a"][rep], pr["b"][rep], pr["op"][rep]
    sym = np.array(["+", "-", "*", "/"])[op]
    return body, _cat("\nSo ", _str(a), " ", pa.array(sym), " ", _str(b), " gives the value we need.")


def chunk_table(p: Params, pools: _Pools, file_index: int, group_index: int, n: int) -> pa.Table:
    rng = np.random.default_rng([p.seed, 2, file_index, group_index])
    pr = _problems(rng, pools, n, p)
    m = n * PER_PROBLEM
    ans, truncated = _answers(rng, pr, m)
    body, line = _reasoning(rng, pools, pr, m, p)
    # truncated: the budget ran out inside the reasoning (no </think>, no answer)
    tail = _where(truncated, pa.scalar(""), _cat(line, "\n</think>\n\n", ans))
    traces = _cat("<think>\n", body, tail)
    gens = pa.ListArray.from_arrays(pa.array(np.arange(0, m + 1, PER_PROBLEM, dtype=np.int32)), traces)
    return pa.table({"problem": pr["text"], "answer": pr["gold"], "generations": gens})


def generate(out_dir: str | Path, p: Params, log=print) -> dict:
    """Write the files (or reuse them when meta.json matches); returns the meta dict."""
    out = Path(out_dir)
    meta_path = out / "meta.json"
    want = asdict(p)
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("params") == want:
            return meta
        raise SystemExit(f"{out}: holds other data ({meta.get('params')}); choose another --data-dir")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pools = _Pools(p)
    problems = max(1, -(-p.rows // PER_PROBLEM))
    files, done, chars = [], 0, 0
    fi = 0
    while done < problems:
        in_file = min(p.file_problems, problems - done)
        name = f"traces-{fi:05d}.parquet"
        writer = None
        gi, written = 0, 0
        while written < in_file:
            n = min(p.group_problems, in_file - written)
            tab = chunk_table(p, pools, fi, gi, n)
            chars += int(pc.sum(pc.utf8_length(pc.list_flatten(tab["generations"]))).as_py())
            if writer is None:
                writer = pq.ParquetWriter(out / f".{name}", tab.schema, compression="zstd")
            writer.write_table(tab, row_group_size=n)
            written += n
            gi += 1
        writer.close()
        (out / f".{name}").rename(out / name)
        files.append(name)
        done += in_file
        fi += 1
        log(f"  {name}: {in_file} problems ({done * PER_PROBLEM:,} traces, {time.perf_counter() - t0:.0f}s)")
    meta = {"params": want, "files": files, "problems": problems, "traces": problems * PER_PROBLEM,
            "mean_trace_chars": round(chars / (problems * PER_PROBLEM), 1),
            "seconds": round(time.perf_counter() - t0, 1)}
    meta_path.write_text(json.dumps(meta, indent=2))
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--rows", type=int, required=True, help="traces (8 per problem)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--templates", type=int, default=Params.templates)
    ap.add_argument("--file-problems", type=int, default=Params.file_problems)
    args = ap.parse_args()
    meta = generate(args.out_dir, Params(rows=args.rows, seed=args.seed, templates=args.templates,
                                         file_problems=args.file_problems))
    print(json.dumps({k: v for k, v in meta.items() if k != "params"}))


if __name__ == "__main__":
    main()
