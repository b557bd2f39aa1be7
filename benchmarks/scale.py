"""Scale benchmark (issue 18): N synthetic teacher traces through verify, dedup, difficulty,
curriculum and audit with ``curate run`` in a subprocess; per-stage seconds and rows/s, peak RSS of
the whole process tree, and growth between sizes, measured side by side in one run.

    python benchmarks/scale.py --rows 100000                    # one size
    python benchmarks/scale.py --rows 1000000 4000000           # both, in order: growth and memory ratios
    python benchmarks/scale.py --rows 20000 --engine ray        # a local Ray instance (--address auto: a cluster)
    python benchmarks/scale.py --rows 100000 --compare-ray      # local and ray on the same data: identical=0|1
    python benchmarks/scale.py --rows 10000000 --data-dir /big/scale --keep   # reuse / keep generated data

Data: ``benchmarks/scale_synth.py`` (seeded; 8 traces of about 2.1k characters per problem,
templated problems with exact and near duplicates, right/wrong/missing/truncated answers), written
as parquet files (a ``traces`` source, one row per problem) before the timed run; generation is not
timed. Each size runs in a fresh ``CURATE_HOME`` (no stage cache) and publishes to a temporary
output folder. Timing: per stage from the published ``manifest.json`` funnel (``seconds``);
``other`` = wall time of the subprocess minus the funnel's seconds (interpreter start, imports,
publishing: writing the version, the card and the audit report). Memory: RSS of the ``curate run``
process plus all its children (verify workers, Ray processes it started), summed, sampled every 0.2 s;
per stage: the peak while that stage ran (from the run's ``[k/n] stage:`` log lines; ``other``: publishing).
With ``--address`` the Ray cluster's own processes are not children: the RSS of this machine's Ray
processes (raylet, GCS, workers, agents; idle ones included) is added, not that of other nodes.

Last line: RESULT rows=<N of the last size> seconds=<..> peak_rss_gib=<..> growth=<seconds last/first or 1.0>
(with --compare-ray: the ray runs' figures; the line before it is identical=0|1)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import polars as pl
import psutil
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from scale_synth import Params, generate

GIB = 1024**3
NAME = "scalebench"


def recipe(data: Path, engine: str, address: str | None, shard_rows: int | None, out: Path) -> dict:
    r: dict = {
        "name": NAME,
        "version": "0.0.1",
        "description": "scale benchmark (benchmarks/scale.py)",
        "engine": engine,
        "sources": [{
            "kind": "traces",
            "name": "synth",
            "path": str(data / "traces-*.parquet"),
            "fields": {"problem": "problem", "gold_answer": "answer"},
            "trace_field": "generations",
            "teacher": "synthetic-teacher",
        }],
        "stages": [
            {"type": "verify"},
            {"type": "dedup", "field": "problem"},
            {"type": "difficulty"},
            {"type": "curriculum", "order": "easy_to_hard"},
            {"type": "audit"},
        ],
        "output": {"dir": str(out)},
    }
    if engine == "ray" and address:
        r["ray"] = {"address": address}
    if shard_rows:
        r["shard_rows"] = shard_rows
    return r


def shard_rows_supported() -> bool:
    """Whether the recipe schema has a top-level ``shard_rows`` (added with the streaming runner)."""
    from curate.recipe import recipe_model

    return "shard_rows" in recipe_model().model_fields


def ray_processes() -> list[psutil.Process]:
    """This machine's Ray processes (raylet, gcs_server, workers ``ray::...``, agents) of this user."""
    me = os.getuid()
    out = []
    for p in psutil.process_iter(["name", "cmdline", "uids"]):
        try:
            if p.info["uids"] is None or p.info["uids"].real != me:
                continue
            name, cmd = p.info["name"] or "", " ".join(p.info["cmdline"] or [])[:300]
            if name in ("raylet", "gcs_server") or name.startswith("ray::") or cmd.startswith("ray::") \
                    or "ray/_private/" in cmd or "ray/dashboard/" in cmd or "ray/autoscaler/" in cmd:
                out.append(p)
        except psutil.Error:
            continue
    return out


class TreeRSS:
    """Peak summed RSS of a process and all its descendants, sampled in a thread; with ``cluster``,
    also the peak of (tree + this machine's Ray processes that are not in the tree)."""

    def __init__(self, pid: int, every: float = 0.2, cluster: bool = False, log: Path | None = None):
        self.proc, self.every, self.cluster, self.log = psutil.Process(pid), every, cluster, log
        self.peak = self.peak_single = self.peak_with_cluster = 0
        self.by_stage: dict[str, int] = {}
        """Peak tree RSS per stage label (``publish`` after the last stage), from the run's stage log lines."""
        self._last_scan = 0.0
        self._ray: list[psutil.Process] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
            except psutil.Error:
                break
            for p in procs:
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    continue
                total += rss
                self.peak_single = max(self.peak_single, rss)
            self.peak = max(self.peak, total)
            if self.log is not None:
                stage = self._stage()
                self.by_stage[stage] = max(self.by_stage.get(stage, 0), total)
            if self.cluster:
                if time.monotonic() - self._last_scan > 2.0:  # new Ray workers appear: rescan now and then
                    self._ray, self._last_scan = ray_processes(), time.monotonic()
                pids = {p.pid for p in procs}
                for p in self._ray:
                    if p.pid not in pids:
                        try:
                            total += p.memory_info().rss
                        except psutil.Error:
                            continue
                self.peak_with_cluster = max(self.peak_with_cluster, total)
            self._stop.wait(self.every)

    _TAG = re.compile(r"\[(\d+)/(\d+)\] ([^:\s]+): (.*)")

    def _stage(self) -> str:
        """The stage running now: the last ``[k/n] label: ...`` line of the log (after the last stage's end
        line: ``publish``)."""
        try:
            with open(self.log, "rb") as f:  # type: ignore[arg-type]
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 8192))
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return "start"
        for line in reversed(lines):
            m = self._TAG.search(line)
            if m:
                k, n, label, rest = int(m[1]), int(m[2]), m[3], m[4]
                done = " -> " in rest
                return "publish" if done and k == n else label
        return getattr(self, "_last", "start")

    def stop(self) -> None:
        self._stop.set()
        self._t.join()


def run_curate(recipe_path: Path, home: Path, log: Path, cluster: bool = False) -> tuple[float, TreeRSS, int]:
    env = {**os.environ, "CURATE_HOME": str(home)}
    t0 = time.perf_counter()
    with open(log, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "curate.cli", "run", str(recipe_path), "--no-resume"],
                                stdout=f, stderr=subprocess.STDOUT, env=env, cwd=recipe_path.parent)
        mon = TreeRSS(proc.pid, cluster=cluster, log=log)
        rc = proc.wait()
    wall = time.perf_counter() - t0
    mon.stop()
    return wall, mon, rc


def one_size(rows: int, args: argparse.Namespace, work: Path, engine: str, tag: str = "") -> dict:
    data = Path(args.data_dir) / f"rows-{rows}-seed-{args.seed}" if args.data_dir else work / f"data-{rows}"
    t0 = time.perf_counter()
    meta = generate(data, Params(rows=rows, seed=args.seed), log=lambda *_: None)
    print(f"\n== {rows:,} traces ({meta['problems']:,} problems, {len(meta['files'])} files, "
          f"{meta['mean_trace_chars']:.0f} chars/trace; data ready in {time.perf_counter() - t0:.1f}s) "
          f"engine={engine}{tag}", flush=True)
    run_dir = work / f"run-{rows}-{engine}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    shard = args.shard_rows if args.shard_rows and args.shard_ok else None
    rp = run_dir / "recipe.yaml"
    rp.write_text(yaml.safe_dump(recipe(data, engine, args.address, shard, run_dir / "out"), sort_keys=False))
    cluster = engine == "ray" and bool(args.address)
    wall, mon, rc = run_curate(rp, run_dir / "home", run_dir / "curate.log", cluster)
    if rc != 0:
        tail = (run_dir / "curate.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"curate run failed (exit {rc}) at {rows} rows; log {run_dir / 'curate.log'}:\n{tail}")
    vdir = run_dir / "out" / NAME / "0.0.1"
    manifest = json.loads((vdir / "manifest.json").read_text())
    funnel = manifest.get("funnel") or manifest.get("stages") or []
    staged = sum(float(f.get("seconds") or 0) for f in funnel)
    print(f"{'stage':12} {'rows in':>10} {'rows out':>10} {'seconds':>9} {'rows/s':>10} {'peak GiB':>9}")
    gib = {k: v / GIB for k, v in mon.by_stage.items()}
    for f in funnel:
        sec = float(f.get("seconds") or 0)
        rate = f["rows_in"] / sec if sec > 0 else float("inf")
        print(f"{f['stage']:12} {f['rows_in']:>10,} {f['rows_out']:>10,} {sec:9.1f} {rate:10,.0f} "
              f"{gib.get(f['stage'], float('nan')):9.2f}")
    other = wall - staged
    print(f"{'other':12} {'':>10} {'':>10} {other:9.1f} {'':>10} {gib.get('publish', float('nan')):9.2f}"
          "   (start-up, imports, publish; peak: publishing)")
    print(f"{'total':12} {rows:>10,} {manifest['splits']['train']:>10,} {wall:9.1f} {rows / wall:10,.0f}")
    peak = mon.peak_with_cluster if cluster else mon.peak
    print(f"peak_rss_gib={peak / GIB:.2f} (process tree{' + Ray processes on this machine' if cluster else ''})  "
          f"tree alone={mon.peak / GIB:.2f}  largest process={mon.peak_single / GIB:.2f} GiB", flush=True)
    return {"rows": rows, "seconds": wall, "peak": peak / GIB, "funnel": funnel, "vdir": vdir, "data": data,
            "by_stage": gib}


def split_frame(vdir: Path, split: str) -> pl.DataFrame:
    """A published split's rows in their published order (its files in name order)."""
    files = sorted((vdir / "data").glob(f"{split}-*.parquet"))
    return pl.read_parquet(files) if files else pl.DataFrame()


def content_hash(df: pl.DataFrame) -> str:
    """sha256 over the rows' JSON in their order: independent of parquet chunking."""
    h = hashlib.sha256()
    for i in range(0, df.height, 50_000):
        h.update(df.slice(i, 50_000).write_ndjson().encode())
    return h.hexdigest()[:16]


def funnel_rows(vdir: Path) -> list[tuple]:
    """The manifest funnel without its timings: (stage, rows in, rows out, dropped) per entry."""
    manifest = json.loads((vdir / "manifest.json").read_text())
    return [(f["stage"], f.get("rows_in"), f.get("rows_out"), sorted((f.get("dropped") or {}).items()))
            for f in manifest.get("funnel") or []]


def compare_versions(a: Path, b: Path) -> dict:
    """Two published versions of one recipe: each split (train, rejected, ...) frame for frame in its
    published order (so the curriculum's order counts), with a content hash, and the funnel's rows.
    ``identical``: all equal. One split is held at a time."""
    names = [d.name.split("-")[0] for d in (*(a / "data").glob("*.parquet"), *(b / "data").glob("*.parquet"))]
    splits = {}
    for split in sorted(set(names)):
        x, y = split_frame(a, split), split_frame(b, split)
        splits[split] = {"rows": (x.height, y.height), "hash": (content_hash(x), content_hash(y)),
                         "same": x.equals(y)}
        del x, y
    funnel_same = funnel_rows(a) == funnel_rows(b)
    return {"splits": splits, "funnel_same": funnel_same,
            "identical": funnel_same and all(s["same"] for s in splits.values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000], help="traces per size, run in order")
    ap.add_argument("--engine", choices=["local", "ray"], default="local")
    ap.add_argument("--address", default=None, help="Ray cluster address (e.g. auto) for the ray engine")
    ap.add_argument("--shard-rows", type=int, default=None, help="recipe shard_rows (streaming runner)")
    ap.add_argument("--compare-ray", action="store_true", help="run local and ray; compare the train splits")
    ap.add_argument("--data-dir", default=None, help="keep/reuse generated data here (rows-<N>-seed-<s>/)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (data, outputs, logs)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.shard_ok = True
    if args.shard_rows:
        args.shard_ok = shard_rows_supported()
        if not args.shard_ok:
            print(f"note: this curate has no recipe field shard_rows; --shard-rows {args.shard_rows} left out")

    work = Path(tempfile.mkdtemp(prefix="curate-scale-"))
    print(f"work: {work}  cpus: {os.cpu_count()}  memory: {psutil.virtual_memory().total / GIB:.1f} GiB  "
          f"engine: {args.engine}{' address=' + args.address if args.address else ''}")
    try:
        results = []
        identical = None
        for rows in args.rows:
            if args.compare_ray:
                loc = one_size(rows, args, work, "local")
                ray = one_size(rows, args, work, "ray")
                cmp = compare_versions(loc["vdir"], ray["vdir"])
                same = cmp["identical"]
                identical = same if identical is None else identical and same
                for split, c in cmp["splits"].items():
                    print(f"compare {rows:,} {split}: rows local={c['rows'][0]:,} ray={c['rows'][1]:,}  "
                          f"hash local={c['hash'][0]} ray={c['hash'][1]}  same={int(c['same'])}")
                print(f"compare {rows:,}: funnel same={int(cmp['funnel_same'])}  identical={int(same)}  "
                      f"seconds ray/local={ray['seconds'] / loc['seconds']:.2f}  "
                      f"peak ray/local={ray['peak'] / max(loc['peak'], 1e-9):.2f}")
                results.append(ray)
            else:
                results.append(one_size(rows, args, work, args.engine))
            if not args.keep and not args.data_dir:
                shutil.rmtree(results[-1]["data"], ignore_errors=True)
        first, last = results[0], results[-1]
        growth = last["seconds"] / first["seconds"] if len(results) > 1 else 1.0
        if len(results) > 1:
            print(f"\ngrowth {first['rows']:,} -> {last['rows']:,} ({last['rows'] / first['rows']:.1f}x rows): "
                  f"seconds {growth:.2f}x  peak_rss {last['peak'] / first['peak']:.2f}x")
            by_stage = {f["stage"]: float(f.get("seconds") or 0) for f in first["funnel"]}
            parts = [f"{f['stage']} {float(f.get('seconds') or 0) / by_stage[f['stage']]:.2f}x"
                     for f in last["funnel"] if by_stage.get(f["stage"])]
            print("per stage: " + "  ".join(parts))
            mem = [f"{k} {last['by_stage'][k] / v:.2f}x" for k, v in first["by_stage"].items()
                   if v and k in last["by_stage"] and k != "start"]
            print("peak RSS per stage: " + "  ".join(mem))
        if identical is not None:
            print(f"identical={int(identical)}")
        print(f"RESULT rows={last['rows']} seconds={last['seconds']:.1f} peak_rss_gib={last['peak']:.2f} "
              f"growth={growth:.2f}")
    finally:
        if args.keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
