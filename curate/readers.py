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
from pathlib import Path
from typing import Any

import polars as pl

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


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    import gzip  # .jsonl.gz is decompressed; utf-8-sig accepts a leading BOM

    with (gzip.open(path, "rt", encoding="utf-8-sig") if path.suffix == ".gz" else open(path, encoding="utf-8-sig")) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise SourceError(f"{path}:{lineno}: malformed JSON line ({e.msg})") from None
            if not isinstance(obj, dict):
                raise SourceError(f"{path}:{lineno}: expected a JSON object per line")
            rows.append(obj)
    return rows


def read_file(path: Path, fmt: str = "auto") -> pl.DataFrame:
    kind = file_format(path, fmt)
    try:
        if kind == "jsonl":
            rows = read_jsonl(path)
            return pl.from_dicts(rows, infer_schema_length=None) if rows else pl.DataFrame()
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
        return pl.read_csv(path, infer_schema_length=10000)
    except SourceError:
        raise
    except json.JSONDecodeError as e:
        raise SourceError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
    except Exception as e:  # polars/arrow parse errors
        raise SourceError(f"{path}: cannot read as {kind}: {first_line(e)}") from None


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
