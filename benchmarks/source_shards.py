"""Peak memory of streaming a traces source into parquet shards (``curate.source_shards``), at two sizes.

    python benchmarks/source_shards.py DATA_DIR [--small-files 1] [--shard-rows 100000] [--chunk-rows 50000]

DATA_DIR holds ``traces-*.parquet`` from ``benchmarks/scale_synth.py`` (one row per problem, a list of
8 traces of ~2.1k characters). Each size runs ``write_source_shards`` in a fresh process and reports its
peak RSS (VmHWM), seconds and rows/s: the first ``--small-files`` files, then all of them. Bounded
memory means the peak stays about flat while the rows grow. Last line:
``RESULT rows=<N> seconds=<..> peak_rss_gib=<..> growth=<peak ratio large/small>``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, sys, time
from pathlib import Path
from curate.source_shards import write_source_shards
from curate.sources import TracesSource
files, out, shard_rows, chunk_rows = json.loads(sys.argv[1])
def peak_kib():  # VmHWM: this process's own peak (ru_maxrss would carry the parent's across exec)
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
cfg = TracesSource(path=files, trace_field="generations", fields={"gold_answer": "answer"}, teacher="synth")
t = time.time()
res = write_source_shards([cfg], Path("/"), None, Path(out), shard_rows, chunk_rows=chunk_rows)
print(json.dumps({"rows": res.rows, "shards": res.n_shards, "seconds": time.time() - t,
                  "peak_gib": peak_kib() / 2**20,
                  "bytes": sum(p.stat().st_size for p in Path(out).glob("part-*.parquet"))}))
"""


def run(files: list[Path], shard_rows: int, chunk_rows: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        arg = json.dumps([[str(f) for f in files], out, shard_rows, chunk_rows])
        res = subprocess.run([sys.executable, "-c", CHILD, arg], capture_output=True, text=True, check=True)
        return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--small-files", type=int, default=1)
    ap.add_argument("--shard-rows", type=int, default=100_000)
    ap.add_argument("--chunk-rows", type=int, default=50_000)
    a = ap.parse_args()
    files = sorted(a.data_dir.glob("traces-*.parquet"))
    input_gib = sum(f.stat().st_size for f in files) / 2**30
    small = run(files[: a.small_files], a.shard_rows, a.chunk_rows)
    large = run(files, a.shard_rows, a.chunk_rows)
    for name, r in (("small", small), ("large", large)):
        print(f"{name}: {r['rows']:,} traces -> {r['shards']} shards ({r['bytes'] / 2**30:.2f} GiB) in "
              f"{r['seconds']:.1f} s ({r['rows'] / r['seconds']:,.0f} rows/s), peak RSS {r['peak_gib']:.2f} GiB")
    print(f"input {input_gib:.2f} GiB parquet; rows x{large['rows'] / small['rows']:.1f}, "
          f"peak RSS x{large['peak_gib'] / small['peak_gib']:.2f}")
    print(f"RESULT rows={large['rows']} seconds={large['seconds']:.1f} peak_rss_gib={large['peak_gib']:.2f} "
          f"growth={large['peak_gib'] / small['peak_gib']:.2f}")


if __name__ == "__main__":
    main()
