"""Benchmark: peak memory of the version's audit report (``write_report``) over a large train split,
read as a DataFrame (the whole split in memory) or as a LazyFrame over its parquet files (what publish
passes at scale), with the flags stored (the audit stage ran) or absent (computed in batches).

    python benchmarks/audit_report.py                   # ~450k traces of ~2.1k characters (~1 GB in memory)
    python benchmarks/audit_report.py --rows 20000      # a quick run
    python benchmarks/audit_report.py --data-dir /tmp/ar   # keep/reuse the generated files

Traces come from ``benchmarks/audit.py``'s generator (planted defects). Each measurement runs in its own
process (peak RSS of that process: ``ru_maxrss``); both readings of the same files, side by side, and their
summaries must be identical. Last line: ``RESULT rows=<N> split_gib=<..> lazy_peak_gib=<..> eager_peak_gib=<..>
imports_gib=<..> lazy_growth_over_split=<..>`` (flags stored: the publish path; growth = peak minus the RSS
after imports).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _peak_gib() -> float:
    """This process's peak RSS: VmHWM (per address space, so not the parent's peak inherited across
    fork/exec as ``ru_maxrss`` is); ``ru_maxrss`` where /proc is absent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 2**30
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30


def _child(args: argparse.Namespace) -> None:
    from curate.audit import AuditConfig, write_report

    files = sorted(Path(args.dir).glob("*.parquet"))
    base = _peak_gib()  # the imports
    t = time.perf_counter()
    train = pl.scan_parquet(files) if args.child == "lazy" else pl.read_parquet(files)
    s = write_report(Path(args.out), train, None, None, AuditConfig())
    s.pop("examples", None)
    peak = _peak_gib()
    print(json.dumps({"seconds": round(time.perf_counter() - t, 1), "peak_gib": round(peak, 3), "base_gib": round(base, 3),
                      "rows_flagged": s["rows_flagged"], "summary": json.dumps(s, sort_keys=True, default=str)}))


def _run(mode: str, d: Path, out: Path) -> dict:
    p = subprocess.run([sys.executable, __file__, "--child", mode, "--dir", str(d), "--out", str(out)],
                       capture_output=True, text=True, check=False)
    if p.returncode:
        raise SystemExit(f"{mode} on {d}: exit {p.returncode}\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _generate(args: argparse.Namespace, raw: Path, stored: Path) -> float:
    """The split twice as parquet files: without the audit columns, and with them (as the stage leaves
    them). Returns its in-memory size (GiB)."""
    from audit import generate

    from curate.audit import AuditConfig
    from curate.audit.frames import AUDIT_COLUMNS, audited

    raw.mkdir(parents=True, exist_ok=True), stored.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    df, _ = generate(args.rows, args.chars, 7, 0.02)
    split_gib = df.estimated_size() / 2**30
    step = -(-df.height // args.files)
    for i in range(args.files):
        df.slice(i * step, step).write_parquet(raw / f"part-{i:05d}.parquet", row_group_size=10_000)
    flags = audited(pl.scan_parquet(sorted(raw.glob("*.parquet"))), AuditConfig(), [])
    df = df.with_columns(flags.select(AUDIT_COLUMNS))
    for i in range(args.files):
        df.slice(i * step, step).write_parquet(stored / f"part-{i:05d}.parquet", row_group_size=10_000)
    disk = sum(p.stat().st_size for p in stored.glob("*.parquet")) / 2**30
    print(f"generated {args.rows:,} rows: {split_gib:.2f} GiB in memory, {disk:.2f} GiB parquet "
          f"({time.perf_counter() - t:.0f} s)", flush=True)
    return split_gib


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=450_000)
    ap.add_argument("--chars", type=int, default=2100)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--data-dir", help="keep the generated files here and reuse them (same parameters)")
    ap.add_argument("--skip-absent", action="store_true", help="only the stored-flags (publish) case")
    ap.add_argument("--child"), ap.add_argument("--dir"), ap.add_argument("--out")
    args = ap.parse_args()
    if args.child:
        return _child(args)

    with tempfile.TemporaryDirectory(prefix="curate-audit-report-") as tmp:
        data = Path(args.data_dir or tmp)
        raw, stored, meta = data / "raw", data / "stored", data / "meta.json"
        params = {"rows": args.rows, "chars": args.chars, "files": args.files, "seed": 7}
        if meta.is_file() and json.loads(meta.read_text()).get("params") == params:
            split_gib = json.loads(meta.read_text())["split_gib"]
            print(f"reusing {data}", flush=True)
        else:
            split_gib = _generate(args, raw, stored)
            meta.write_text(json.dumps({"params": params, "split_gib": split_gib}))
        res = {}
        for case, d in [("stored", stored)] + ([] if args.skip_absent else [("absent", raw)]):
            for mode in ("lazy", "eager"):
                res[case, mode] = r = _run(mode, d, Path(tmp) / f"out-{case}-{mode}")
                print(f"flags {case:6s} {mode:5s}: {r['seconds']:7.1f} s  peak RSS {r['peak_gib']:.2f} GiB "
                      f"(after imports {r['base_gib']:.2f}; growth {(r['peak_gib'] - r['base_gib']) / split_gib:.2f}x "
                      "the split)", flush=True)
            same = res[case, "lazy"]["summary"] == res[case, "eager"]["summary"]
            print(f"flags {case}: lazy/eager peak {res[case, 'lazy']['peak_gib'] / res[case, 'eager']['peak_gib']:.2f}, "
                  f"summaries identical: {same}", flush=True)
            if not same:
                raise SystemExit("the LazyFrame and DataFrame reports differ")
        lz, eg = res["stored", "lazy"]["peak_gib"], res["stored", "eager"]["peak_gib"]
        b = res["stored", "lazy"]["base_gib"]
        print(f"RESULT rows={args.rows} split_gib={split_gib:.2f} lazy_peak_gib={lz:.2f} eager_peak_gib={eg:.2f} "
              f"imports_gib={b:.2f} lazy_growth_over_split={(lz - b) / split_gib:.2f}")


if __name__ == "__main__":
    main()
