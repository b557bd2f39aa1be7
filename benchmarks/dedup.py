"""Dedup + decontamination benchmark (issue 5).

    python benchmarks/dedup.py                      # 100,000 docs of 500-2,000 words (heavy: ~1 GB of text)
    python benchmarks/dedup.py --docs 5000          # quick

1. A synthetic corpus (Zipf words) with planted near-duplicate pairs at controlled word-5-gram
   Jaccard similarities (a derived copy of a source doc with k words substituted/deleted, k solved
   for a target similarity drawn from [0.5, 1.0]; the exact similarity is then measured).
2. Our path (curate.dedup.find_duplicates: vectorised signatures over --num-proc workers +
   datasketch MinHashLSH + exact verification) vs the classic loop: one
   datasketch.MinHash(num_perm=128).update_batch(shingles) per doc + MinHashLSH insert/query, with
   the same shingles and LSH parameters, in the same run (on --baseline-docs docs; throughput ratio).
3. Recall / precision of the detected pairs against exact Jaccard >= threshold, computed here with
   plain Python sets of word 5-gram tuples (independent of the code under test).
4. Decontamination on ../shared/bench (skipped when absent), ours next to open-r1's rule (lower-case,
   whitespace split, any shared word 8-gram; re-implemented here) in the same run: recall on the
   lexical-confirmed MATH-500/train pairs and on the GSM8K rephrasings; false positives of MATH-500
   and GSM8K test against AIME24/25, AMC23 and Minerva (disjoint sets), each flagged row printed with
   what it shares.

Last line: RESULT speedup=<ours/datasketch> recall=<..> precision=<..> peak_rss_mb=<..>
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curate.dedup import MinHashParams, find_duplicates  # noqa: E402

BENCH = ROOT.parent / "shared" / "bench" / "dedup"


def make_corpus(n_docs: int, min_w: int, max_w: int, dup_frac: float, ngram: int, seed: int):
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = np.array(["".join(rng.choice(letters, rng.integers(3, 11))) for _ in range(50_000)], dtype=object)
    cdf = np.cumsum(1.0 / np.arange(1, len(vocab) + 1) ** 1.05)
    cdf /= cdf[-1]
    n_pairs = int(n_docs * dup_frac / 2)
    n_src = n_docs - n_pairs
    docs_ids = [np.searchsorted(cdf, rng.random(rng.integers(min_w, max_w + 1))).astype(np.uint16) for _ in range(n_src)]
    sources = rng.choice(n_src, size=n_pairs, replace=False)
    targets = rng.uniform(0.5, 1.0, size=n_pairs)
    pairs = []
    for s, t in zip(sources, targets):
        ids = docs_ids[s]
        m = len(ids) - ngram + 1
        shared = 2 * t * m / (1 + t)  # |A & B| for Jaccard t when both have m shingles
        k = max(0, int(round((m - shared) / ngram)))
        pos = rng.choice(len(ids), size=min(k, len(ids) // 2), replace=False)
        new = ids.copy()
        new[pos] = rng.integers(0, len(vocab), size=len(pos), dtype=np.uint16)  # substitutions
        dels = pos[: len(pos) // 10]  # a tenth of the edits are deletions instead
        new = np.delete(new, dels)
        pairs.append((int(s), len(docs_ids)))
        docs_ids.append(new)
    order = rng.permutation(len(docs_ids))  # shuffle so copies are not next to their sources
    where = np.empty_like(order)
    where[order] = np.arange(len(order))
    texts = [" ".join(vocab[docs_ids[i]]) for i in order]
    del docs_ids
    pairs = [(min(where[a], where[b]), max(where[a], where[b])) for a, b in pairs]
    return texts, pairs


def shingle_tuples(text: str, n: int) -> set:
    w = text.split()
    return {tuple(w[i : i + n]) for i in range(max(1, len(w) - n + 1))}


def exact_j(texts, a: int, b: int, n: int) -> float:
    A, B = shingle_tuples(texts[a], n), shingle_tuples(texts[b], n)
    return len(A & B) / len(A | B)


def baseline(texts, ngram: int, num_perm: int, lsh_threshold: float, weights) -> tuple[float, int, float]:
    """(wall seconds, candidates, CPU seconds) of the classic one-MinHash-per-document loop."""
    from datasketch import MinHash, MinHashLSH

    t0, p0 = time.perf_counter(), time.process_time()
    lsh = MinHashLSH(threshold=lsh_threshold, num_perm=num_perm, weights=weights)
    cands = 0
    for i, t in enumerate(texts):
        w = t.split()
        sh = [" ".join(w[k : k + ngram]).encode("utf-8") for k in range(max(1, len(w) - ngram + 1))]
        m = MinHash(num_perm=num_perm)
        m.update_batch(sh)
        cands += len(lsh.query(m))
        lsh.insert(i, m)
    return time.perf_counter() - t0, cands, time.process_time() - p0


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class ProcTree(threading.Thread):
    """Samples, every 0.1 s, the RSS and CPU time of this process's descendants (workers live
    under the forkserver, which getrusage(RUSAGE_CHILDREN) does not see). Keeps the peak summed
    RSS (with this process) and the last CPU time seen per descendant (a worker's final < 0.1 s
    can be missed)."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self):
        super().__init__(daemon=True)
        self.peak_mb = 0.0
        self.cpu: dict[int, float] = {}
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def sample(self) -> None:
        kids: dict[int, list[int]] = {}
        info: dict[int, tuple[int, float]] = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    st = f.read()
            except OSError:
                continue
            fields = st[st.rfind(")") + 2 :].split()  # after "pid (comm) "
            ppid, cpu, rss_pages = int(fields[1]), (int(fields[11]) + int(fields[12])) / self.TICK, int(fields[21])
            kids.setdefault(ppid, []).append(int(d))
            info[int(d)] = (rss_pages, cpu)
        me = os.getpid()
        total, todo = 0, [me]
        with self._lock:
            while todo:
                q = todo.pop()
                rss_pages, cpu = info.get(q, (0, 0.0))
                total += rss_pages
                if q != me:
                    self.cpu[q] = max(self.cpu.get(q, 0.0), cpu)
                todo.extend(kids.get(q, []))
        self.peak_mb = max(self.peak_mb, total * os.sysconf("SC_PAGE_SIZE") / 2**20)

    def cpu_total(self) -> float:
        self.sample()
        with self._lock:
            return sum(self.cpu.values())

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(0.1)

    def stop(self) -> float:
        self._halt.set()
        self.join()
        return max(self.peak_mb, rss_mb())


def openr1_flags(bench_texts, rows, n: int = 8) -> np.ndarray:
    """open-r1's decontamination rule, written out here (independent of the code under test):
    lower-case, whitespace split, a row is contaminated when it shares any word n-gram."""
    def grams(t):
        w = (t or "").lower().split()
        return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}

    index = set().union(*(grams(t) for t in bench_texts)) if bench_texts else set()
    return np.array([bool(grams(t) & index) for t in rows])


def decontam_report() -> dict:
    """Ours (words-and-numbers 8-grams weighted by rarity + MinHash) next to open-r1's 8-gram rule,
    in the same run: recall on confirmed contamination, false positives between disjoint sets."""
    if not BENCH.exists():
        print(f"decontam: {BENCH} absent, skipped")
        return {}
    import polars as pl

    from curate.stages.base import Context
    from curate.stages.decontaminate import DecontaminateConfig, DecontaminateStage

    out = {}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        ctx = Context.for_test(d)

        def run(benches: dict[str, list[str]], rows, **kw):
            specs = []
            for name, texts in benches.items():
                (d / f"{name}.jsonl").write_text("".join(json.dumps({"problem": t}) + "\n" for t in texts))
                specs.append({"name": name, "path": f"{name}.jsonl"})
            cfg = DecontaminateConfig(benchmarks=specs, **kw)
            res = DecontaminateStage(cfg).run(pl.DataFrame({"problem": rows}), ctx)
            return res["drop_reason"].is_not_null().to_numpy(), ctx.stats["contamination"]

        def line(what, ours, ours_ng, r1, total):
            print(f"  {what:<58} ours {int(ours.sum()):>4}/{total} ({ours.mean():.3f})  n-gram alone "
                  f"{int(ours_ng.sum()):>4}  open-r1 {int(r1.sum()):>4}/{total} ({r1.mean():.3f})")

        print("decontamination, ours (words+numbers 8-grams, rarity-weighted, + MinHash) vs open-r1 "
              "(lower-case whitespace 8-grams, any shared):")
        lex = [json.loads(x) for x in (BENCH / "math500_train_lexical_contamination_confirmed.jsonl").open()]
        b, r = [x["text1"] for x in lex], [x["text2"] for x in lex]
        ours, _ = run({"math500": b}, r)
        ours_ng, _ = run({"math500": b}, r, minhash=False)
        r1 = openr1_flags(b, r)
        line("recall, lexical-confirmed MATH-500/train pairs", ours, ours_ng, r1, len(lex))
        missed = [x["contamination_reason"] for x, c in zip(lex, ours) if not c]
        print(f"    ours missed: {len(missed)} ({', '.join(sorted(set(missed))) or '-'}); open-r1 missed "
              f"{int((~r1).sum())}")
        out.update(lexical_recall=float(ours.mean()), lexical_recall_openr1=float(r1.mean()))

        reph = [json.loads(x) for x in (BENCH / "gsm8k_test_rephrase_pairs.jsonl").open()]
        orig, rp = [x["original"] for x in reph], [x["rephrased"] for x in reph]
        ours, _ = run({"gsm8k": orig}, rp)
        ours_ng, _ = run({"gsm8k": orig}, rp, minhash=False)
        r1 = openr1_flags(orig, rp)
        line("recall, GSM8K test LLM rephrasings", ours, ours_ng, r1, len(rp))
        out.update(gsm8k_rephrase_recall=float(ours.mean()), gsm8k_rephrase_recall_openr1=float(r1.mean()))

        probs = BENCH.parent / "problems"
        if probs.exists():
            def rows(name, field="problem"):
                return [json.loads(x)[field] for x in (probs / name).open()]

            benches = {"aime24": rows("aime24_nemoskills.jsonl"), "aime25": rows("aime25_nemoskills.jsonl"),
                       "amc23": rows("amc23_qwen25math.jsonl"), "minerva": rows("minerva_math_qwen25math.jsonl")}
            allb = [t for v in benches.values() for t in v]
            for label, texts in (("MATH-500", rows("math500_test.jsonl")), ("GSM8K test", rows("gsm8k_test.jsonl", "question"))):
                ours, table = run(benches, texts)
                ours_ng, _ = run(benches, texts, minhash=False)
                r1 = openr1_flags(allb, texts)
                line(f"false positives, {label} vs AIME24/25+AMC23+Minerva", ours, ours_ng, r1, len(texts))
                out[f"fp_{label.split()[0].lower().replace('-', '')}"] = int(ours.sum())
                out[f"fp_{label.split()[0].lower().replace('-', '')}_openr1"] = int(r1.sum())
                for bname, t in table.items():  # row by row: what each flagged row shares
                    for e in t["examples"]:
                        print(f"    {bname}: {e['method']} score={e['score']} sim={e['similarity']} "
                              f"shared {e['matched']!r} <- {e['problem'][:70]!r}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--min-words", type=int, default=500)
    ap.add_argument("--max-words", type=int, default=2000)
    ap.add_argument("--dup-frac", type=float, default=0.1, help="fraction of docs that belong to a planted pair")
    ap.add_argument("--baseline-docs", type=int, default=10_000, help="docs timed with the datasketch loop")
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--ngram", type=int, default=5)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--num-proc", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-decontam", action="store_true")
    a = ap.parse_args()

    print(f"load: {os.getloadavg()[0]:.2f} (1-min) on {os.cpu_count()} cores")
    mon = ProcTree()
    mon.start()
    t0 = time.perf_counter()
    texts, pairs = make_corpus(a.docs, a.min_words, a.max_words, a.dup_frac, a.ngram, a.seed)
    n_words = sum(t.count(" ") + 1 for t in texts)
    print(f"corpus: {len(texts)} docs, {n_words / 1e6:.1f}M words, {len(pairs)} planted pairs "
          f"({time.perf_counter() - t0:.1f}s to generate); rss {rss_mb():.0f} MB")

    truth_j = np.array([exact_j(texts, i, j, a.ngram) for i, j in pairs])
    positives = {p for p, jv in zip(pairs, truth_j) if jv >= a.threshold}
    print(f"planted pairs: exact Jaccard min={truth_j.min():.3f} max={truth_j.max():.3f}; "
          f">= {a.threshold}: {len(positives)}")

    params = MinHashParams(num_perm=a.num_perm, ngram=a.ngram, shingle="word")
    # the datasketch loop runs on half its docs before ours and half after (load on a shared
    # machine drifts); its rate is the total over both halves
    nb = min(a.baseline_docs, len(texts))
    lt = max(0.05, a.threshold - 0.1)
    b1_s, c1, b1_cpu = baseline(texts[: nb // 2], a.ngram, a.num_perm, lt, (0.1, 0.9))
    load_mid = os.getloadavg()[0]
    c0, p0 = mon.cpu_total(), time.process_time()
    t0 = time.perf_counter()
    res = find_duplicates(texts, params, a.threshold, num_proc=a.num_proc)
    ours_s = time.perf_counter() - t0
    ours_cpu = (mon.cpu_total() - c0) + (time.process_time() - p0)
    ours_rate = len(texts) / ours_s
    # detected pairs: every pair inside a cluster (exact copies are clustered without an LSH pair)
    members: dict[int, list[int]] = {}
    for k, lab in enumerate(res.labels.tolist()):
        members.setdefault(lab, []).append(k)
    detected = {(a_, b_) for ms in members.values() if len(ms) > 1 for x, a_ in enumerate(ms) for b_ in ms[x + 1 :]}
    tp = len(detected & positives)
    # precision against exact Jaccard (any detected pair with exact J >= threshold is correct)
    correct = tp + sum(1 for p in detected - positives if exact_j(texts, p[0], p[1], a.ngram) >= a.threshold)
    recall = tp / max(1, len(positives))
    precision = correct / max(1, len(detected))
    print(f"ours: {ours_s:.1f}s for {len(texts)} docs ({ours_rate:.0f} docs/s, {a.num_proc} procs); "
          f"LSH bands x rows {res.lsh_params}, {res.n_candidates} candidates, {len(res.pairs_i)} verified, "
          f"{len(detected)} pairs in clusters")

    b2_s, c2, b2_cpu = baseline(texts[nb // 2 : nb], a.ngram, a.num_perm, lt, (0.1, 0.9))
    base_s = b1_s + b2_s
    base_rate = nb / base_s
    print(f"datasketch loop: {base_s:.1f}s for {nb} docs ({base_rate:.0f} docs/s, 1 proc; halves "
          f"{nb // 2 / b1_s:.0f} and {(nb - nb // 2) / b2_s:.0f} docs/s), {c1 + c2} candidates; "
          f"load during ours {load_mid:.2f}")
    speedup = ours_rate / base_rate
    cpu_ratio = ((b1_cpu + b2_cpu) / nb) / (ours_cpu / len(texts))
    print(f"CPU time per doc: datasketch loop {(b1_cpu + b2_cpu) / nb * 1e3:.3f} ms, ours "
          f"{ours_cpu / len(texts) * 1e3:.3f} ms (all processes) -> work ratio {cpu_ratio:.2f}x "
          f"(load-independent; the wall-clock speedup also needs the second core to be free)")
    print(f"recall={recall:.4f} ({tp}/{len(positives)})  precision={precision:.4f} ({correct}/{len(detected)})")

    dc = {} if a.no_decontam else decontam_report()
    peak = mon.stop()
    if dc:
        print("RESULT-decontam " + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in dc.items()))
    print(f"peak RSS: {peak:.0f} MB (this process + worker processes, sampled), main process alone "
          f"{rss_mb():.0f} MB; load now {os.getloadavg()[0]:.2f}")
    extra = ""
    if dc:
        extra = (f" decontam_lexical_recall={dc['lexical_recall']:.3f}(open-r1 {dc['lexical_recall_openr1']:.3f})"
                 f" decontam_math500_fp={dc.get('fp_math500', '-')}/500(open-r1 {dc.get('fp_math500_openr1', '-')})")
    print(f"RESULT speedup={speedup:.2f} recall={recall:.4f} precision={precision:.4f} peak_rss_mb={peak:.0f}{extra}")


if __name__ == "__main__":
    main()
