"""The one reader of every input: local files (jsonl / jsonl.gz / json / parquet / csv, globs), hub
datasets (``datasets.load_dataset``, with its content fingerprint), and whole datasets for audit, view,
train and eval (a curate version folder with its ``rejected`` split and manifest, a ``save_to_disk``
folder, a parquet folder, a file or a hub id). Every failure is a ``SourceError`` naming the input.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from .errors import SourceError, first_line


def expand_paths(paths: str | list[str], base_dir: Path, what: str) -> list[Path]:
    items = [paths] if isinstance(paths, str) else list(paths)
    out: list[Path] = []
    for item in items:
        p = Path(os.path.expanduser(item))
        p = p if p.is_absolute() else base_dir / p
        matches = sorted(glob.glob(str(p))) if any(c in item for c in "*?[") else [str(p)]
        if not matches or not Path(matches[0]).exists():
            raise SourceError(f"{p}: no such file ({what}.path)")
        out.extend(Path(m) for m in matches)
    return out


def file_format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    mapping = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
    for k, v in mapping.items():
        if suffix.startswith(k):
            return v
    raise SourceError(f"{path}: cannot tell the format from the extension; set format: jsonl|json|parquet|csv")


def _open_lines(path: Path) -> Any:
    import gzip  # .jsonl.gz is decompressed

    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _jsonl_blocks(path: Path, chunk_rows: int | None) -> Iterator[tuple[int, list[bytes]]]:
    """(number of the block's first line, its non-blank lines), ``chunk_rows`` lines or 64 MiB a block
    (``chunk_rows`` None: one block). A leading BOM is dropped."""
    block: list[bytes] = []
    start = size = 0
    with _open_lines(path) as f:
        for lineno, line in enumerate(f, 1):
            if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            if not line.strip():
                continue
            if not block:
                start, size = lineno, 0
            block.append(line if line.endswith(b"\n") else line + b"\n")
            size += len(line)
            if chunk_rows and (len(block) >= chunk_rows or size >= _BLOCK_BYTES):
                yield start, block
                block = []
    if block:
        yield start, block


def _ndjson(path: Path, start: int, lines: list[bytes], schema: Any = None) -> pl.DataFrame:
    """One block of JSON lines as a frame (polars' reader); a bad line is named by its line number."""
    data = b"".join(lines)
    data.decode("utf-8")  # strict: a non-UTF-8 file is an error, never silently replaced text
    try:
        if schema is not None:
            return pl.read_ndjson(BytesIO(data), schema=schema)
        return pl.read_ndjson(BytesIO(data), infer_schema_length=None)
    except Exception:  # find the line to name
        for i, line in enumerate(lines):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise SourceError(f"{path}:{start + i}: malformed JSON line ({e.msg})") from None
            if not isinstance(obj, dict):
                raise SourceError(f"{path}:{start + i}: expected a JSON object per line") from None
        raise


def relaxed_schema(schemas: list[Any]) -> pl.Schema:
    """The schema ``pl.concat(frames, how="diagonal_relaxed")`` gives frames of these schemas."""
    if len(schemas) == 1:
        return pl.Schema(schemas[0])
    return pl.concat([pl.DataFrame(schema=s) for s in schemas], how="diagonal_relaxed").schema


def file_schema(path: Path, fmt: str, chunk_rows: int) -> pl.Schema:
    """The schema ``read_file`` gives the whole file, found without holding it: parquet metadata, the
    first 10,000 csv rows (as read_csv infers), every jsonl block's schema unified (as polars infers
    over the whole file)."""
    kind = file_format(path, fmt)
    return _guard(path, kind, lambda: _file_schema(path, kind, chunk_rows))


def _file_schema(path: Path, kind: str, chunk_rows: int) -> pl.Schema:
    if kind == "parquet":
        return pl.read_parquet_schema(path)  # type: ignore[return-value]
    if kind == "csv":
        return pl.scan_csv(path, infer_schema_length=_CSV_INFER).collect_schema()
    if kind == "jsonl":
        return relaxed_schema([_ndjson(path, s, b).schema for s, b in _jsonl_blocks(path, chunk_rows)] or [{}])
    return read_file(path, kind).schema


def iter_file(path: Path, fmt: str, chunk_rows: int, schema: Any) -> Iterator[pl.DataFrame]:
    """The rows of one file in chunks of at most ``chunk_rows``, every chunk with ``schema``
    (:func:`file_schema`), so that no value depends on where the chunks are cut. json is one chunk."""
    kind = file_format(path, fmt)
    it: Iterator[pl.DataFrame]
    if kind == "parquet":
        batches = pq.ParquetFile(path).iter_batches(batch_size=chunk_rows)
        it = (pl.from_arrow(b).cast(schema) for b in batches)  # type: ignore[union-attr]
    elif kind == "jsonl":
        it = (_ndjson(path, s, b, schema) for s, b in _jsonl_blocks(path, chunk_rows))
    elif kind == "csv":
        lf = pl.scan_csv(path, schema=schema)
        it = iter(lf.collect_batches(chunk_size=chunk_rows))
    else:
        it = iter([read_file(path, kind)])
    while True:
        chunk = _guard(path, kind, lambda: next(it, None))
        if chunk is None:
            return
        if chunk.height:
            yield chunk


def estimate_file_rows(path: Path, fmt: str) -> int:
    """A cheap guess of a file's row count: parquet metadata; text: bytes / mean size of the first lines."""
    kind = file_format(path, fmt)
    if kind == "parquet":
        return pq.ParquetFile(path).metadata.num_rows
    size = path.stat().st_size
    if path.suffix == ".gz":
        with open(path, "rb") as f:  # gzip's trailer holds the uncompressed size (mod 4 GiB)
            f.seek(-4, os.SEEK_END)
            size = max(size, int.from_bytes(f.read(4), "little"))
    lengths: list[int] = []
    with _open_lines(path) as f:
        for line in f:
            lengths.append(len(line))
            if len(lengths) >= 1000:
                break
    return max(1, round(size / (sum(lengths) / len(lengths)))) if lengths else 0


def _guard(path: Path, kind: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except SourceError:
        raise
    except json.JSONDecodeError as e:
        raise SourceError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
    except Exception as e:  # polars/arrow parse errors
        raise SourceError(f"{path}: cannot read as {kind}: {first_line(e)}") from None


_CSV_INFER = 10000
_BLOCK_BYTES = 1 << 26


def read_file(path: Path, fmt: str = "auto") -> pl.DataFrame:
    kind = file_format(path, fmt)
    return _guard(path, kind, lambda: _read_whole(path, kind))


def _read_whole(path: Path, kind: str) -> pl.DataFrame:
    if kind == "jsonl":
        blocks = list(_jsonl_blocks(path, None))
        return _ndjson(path, *blocks[0]) if blocks else pl.DataFrame()
    if kind == "json":
        import gzip

        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        data = json.loads(raw.decode("utf-8-sig"))
        if isinstance(data, dict):
            # {"data": [...]} or {"rows": [...]} style
            lists = [v for v in data.values() if isinstance(v, list)]
            data = lists[0] if len(lists) == 1 else [data]
        return pl.from_dicts(data, infer_schema_length=None) if data else pl.DataFrame()
    if kind == "parquet":
        return pl.read_parquet(path)
    return pl.read_csv(path, infer_schema_length=_CSV_INFER)


def read_hub(path: str, config: str | None, split: str, revision: str | None, *, what: str | None = None,
             hint: str = "for offline use, point a file source at a local copy") -> tuple[pl.DataFrame, str | None]:
    """Load a hub (or local) dataset split; also returns datasets' content fingerprint of it, which
    changes when the data behind an unpinned revision changes (it joins the cache key)."""
    import datasets

    try:
        ds = datasets.load_dataset(path, config, split=split, revision=revision)
    except Exception as e:
        first = first_line(e)
        raise SourceError(f"{what or 'hub dataset'} {path!r} (config={config}, split={split}): cannot load: {first}; {hint}") from None
    df = pl.from_arrow(ds.data.table) if hasattr(ds, "data") else pl.DataFrame(ds.to_dict())
    return df, getattr(ds, "_fingerprint", None)


def fingerprint_files(paths: list[Path]) -> list[dict]:
    """Content fingerprints (sha256) of input files, for the manifest and the cache key."""
    out = []
    for p in paths:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        out.append({"path": str(p), "bytes": p.stat().st_size, "sha256": h.hexdigest()})
    return out


# ----------------------------------------------------------------------------- whole datasets


def read_parquets(files: list[Path], where: str) -> pl.DataFrame:
    try:
        return pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
    except Exception as e:  # noqa: BLE001 - arrow/polars parse errors
        raise SourceError(f"{where}: cannot read parquet: {first_line(e)}") from None


def from_datasets(obj: Any, where: str) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """(train, rejected) from a datasets Dataset or DatasetDict."""
    if hasattr(obj, "keys"):  # DatasetDict
        splits = list(obj.keys())
        if not splits:
            raise SourceError(f"{where}: the dataset has no splits")
        main = "train" if "train" in splits else splits[0]
        rej = obj["rejected"] if "rejected" in splits and main != "rejected" else None
        return _arrow(obj[main]), (_arrow(rej) if rej is not None else None)
    return _arrow(obj), None


def _arrow(ds: Any) -> pl.DataFrame:
    if hasattr(ds, "to_polars"):  # applies any indices mapping (select/shuffle)
        return ds.to_polars()
    return pl.from_arrow(ds.with_format("arrow")[:])  # type: ignore[return-value]


def read_dataset(target: str | Path) -> tuple[pl.DataFrame, pl.DataFrame | None, dict | None]:
    """(train, rejected or None, manifest or None) for a version dir, a file, a folder or a hub id."""
    p = Path(str(target)).expanduser()
    where = str(target)
    if p.is_dir():
        man = p / "manifest.json"
        manifest = None
        if man.is_file():
            try:
                manifest = json.loads(man.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise SourceError(f"{man}:{e.lineno}: malformed JSON ({e.msg})") from None
        data = p / "data"
        train_files = sorted(data.glob("train-*.parquet")) if data.is_dir() else []
        if train_files:
            rej_files = sorted(data.glob("rejected-*.parquet"))
            rejected = read_parquets(rej_files, where) if rej_files else None
            return read_parquets(train_files, where), rejected, manifest
        if (p / "dataset_info.json").is_file() and (p / "state.json").is_file():
            import datasets

            return (*from_datasets(datasets.load_from_disk(str(p)), where), manifest)
        files = sorted(p.glob("*.parquet")) or sorted((p / "data").glob("*.parquet") if data.is_dir() else [])
        if files:
            return read_parquets(files, where), None, manifest
        return (*read_hub_dataset(str(p), where), manifest)
    if p.is_file():
        return read_file(p), None, None
    if p.suffix in (".parquet", ".jsonl", ".json", ".csv") or str(target).startswith((".", "/", "~")):
        raise SourceError(f"{where}: no such file or folder")
    return (*read_hub_dataset(str(target), where), None)


def read_hub_dataset(name: str, where: str) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    import datasets

    split = None
    if ":" in name and not Path(name).exists():
        name, split = name.rsplit(":", 1)
    try:
        obj = datasets.load_dataset(name, split=split)
    except Exception as e:  # noqa: BLE001 - network, missing repo, bad files
        first = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise SourceError(f"{where}: cannot load dataset: {first}") from None
    return from_datasets(obj, where)
