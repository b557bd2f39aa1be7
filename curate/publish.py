"""Publishing: one immutable version folder per run, a dataset card, a manifest, and hub pushes.

    <output.dir>/<name>/<version>/
      data/train-0000i-of-0000N.parquet, data/rejected-...   (datasets.load_dataset(version_dir) reads them)
      README.md       dataset card: YAML header (configs, license, tags) + funnel, order, contamination,
                      audit summary, the recipe
      manifest.json   lineage: resolved recipe (secrets unresolved) + hash, input fingerprints, package
                      versions, git commit, per-stage counts, timings and cache keys
      audit/report.html, audit/summary.json

Everything is written into a temporary sibling folder and renamed into place at the end.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import uuid
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from . import __version__
from .errors import CurateError, VersionExistsError, first_line

PACKAGES = [
    "curate", "datasets", "polars", "pyarrow", "pydantic", "math-verify", "datasketch", "openai", "sympy",
    "numpy", "huggingface_hub", "torch", "transformers", "trl", "peft", "vllm", "ray",
]  # fmt: skip


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit(cwd: Path) -> dict[str, Any] | None:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=5,
        ).stdout.strip()  # fmt: skip
        return {"commit": sha, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return None


from .splits import add_formats, write_rejected, write_train  # noqa: F401  (re-exported)


def files_sha256(root: Path, files: list[str]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode())
        with open(root / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _md_table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def funnel_rows(funnel: list[dict]) -> list[list[Any]]:
    return [
        [
            f["stage"],
            f["rows_in"],
            f["rows_out"],
            ", ".join(f"{k}: {v}" for k, v in f["dropped"].items()) or "-",
            f"{f['seconds']:.2f}" + (" (cached)" if f.get("cached") else ""),
        ]
        for f in funnel
    ]


FUNNEL_HEADERS = ["stage", "rows in", "rows out", "dropped (reason: rows)", "seconds"]


def contamination_tables(manifest: dict) -> str:
    parts = []
    for st in manifest.get("stages", []):
        table = (st.get("stats") or {}).get("contamination")
        if not table:
            continue
        rows = [
            [b, t.get("checked", "-"), t.get("contaminated", "-"),
             max(0, t["matched"] - t.get("contaminated", 0)) if isinstance(t.get("matched"), int) else "-",
             "; ".join(f"`{str(ex.get('matched', ''))[:80]}`" for ex in (t.get("examples") or [])[:3]) or "-"]
            for b, t in table.items()
        ]  # fmt: skip
        # "rows dropped" is what the funnel counts for the benchmark; a row matching several
        # benchmarks is dropped for the first one listed and counted as "also matched" by the others
        parts.append(_md_table(["benchmark", "rows checked", "rows dropped", "also matched (dropped for an earlier benchmark)",
                                "examples (matched text)"], rows))
    return "\n\n".join(parts)


REASONING_NOTE = (
    "The assistant turn of `messages` (and of `completion`) is `<think>\\n{reasoning}\\n</think>\\n\\n{answer}`. "
    "It keeps the reasoning only with a chat template that keeps it: many reasoning models' templates "
    "(Qwen3, QwQ, DeepSeek-R1-Distill) drop the `<think>` block of assistant turns, and some prefill "
    "`<think>\\n` after the generation prompt, so TRL's `SFTTrainer` on `messages` (or on the conversational "
    "`prompt`/`completion` columns) with such a template trains the answers without their reasoning. "
    "With a template that keeps it: `messages` with `SFTConfig(assistant_only_loss=True)` (the template needs "
    "`{% generation %}` markers, e.g. TRL's training templates via `chat_template_path`), or "
    "`prompt`/`completion` (loss on the completion by default). Otherwise render the prompt with the template "
    "(`add_generation_prompt=True`) and train the assistant content as a text completion, or use "
    "`curate train`, which checks every row and counts the rows trained with their reasoning."
)
"""The card's note on training the ``messages`` column with a template that strips or prefills <think>."""


def _card_header(manifest: dict) -> Any:
    r = manifest["recipe"]
    configs = [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}]
    if manifest["splits"].get("rejected", 0) > 0:
        configs.append(
            {"config_name": "rejected", "data_files": [{"split": "rejected", "path": "data/rejected-*.parquet"}]}
        )
    # datasets caches a local folder by its name and card, not its content: a content fingerprint in
    # dataset_info keeps two versions (or two recipes' 0.1.0) from loading each other's cached copy.
    fp = manifest.get("data_sha256", "")[:16]
    from huggingface_hub import DatasetCardData

    header = DatasetCardData(
        license=r.get("license", "other"),
        pretty_name=r["name"],
        tags=["curate", "reasoning", "distillation", "synthetic"],
        task_categories=["text-generation"],
        size_categories=[_size_category(manifest["splits"]["train"])],
        configs=configs,
        dataset_info=[{"config_name": c["config_name"], "dataset_name": f"{r['name']}-{r['version']}-{fp}"}
                      for c in configs],
    )
    return header


def _row_order(manifest: dict) -> str:
    order = manifest.get("order")
    return (
        "The train split is written in **curriculum order** (`curriculum_rank` ascending, "
        "`curriculum_stage` marks the stages). Trainers should not shuffle across stages. "
        + " ".join(
            str(st["stats"]["description"])
            for st in manifest.get("stages", [])
            if st.get("type") == "curriculum" and (st.get("stats") or {}).get("description")
        )
        if order == "curriculum_rank"
        else "The train split has no curriculum order; shuffle it for training."
    )


def dataset_card(manifest: dict, recipe_text: str, audit_summary: dict | None) -> str:
    r = manifest["recipe"]
    has_rejected = manifest["splits"].get("rejected", 0) > 0
    body = [
        f"# {r['name']} v{r['version']}",
        "",
        r.get("description") or "",
        "",
        f"Built by [curate](https://pypi.org/project/curate/) {manifest['curate_version']} on "
        f"{manifest['created_at']}. Recipe hash `{manifest['recipe_hash'][:16]}`"
        + (f", git commit `{manifest['git']['commit'][:12]}`" if manifest.get("git") else "")
        + ".",
        "",
        "## Splits",
        "",
        _md_table(["config", "split", "rows"], [["default", "train", manifest["splits"]["train"]]]
                  + ([["rejected", "rejected", manifest["splits"]["rejected"]]] if has_rejected else [])),  # fmt: skip
        "",
        "```python\nfrom datasets import load_dataset\n"
        "train = load_dataset(\"<this folder or repo>\", split=\"train\")\n"
        + ("rejected = load_dataset(\"<this folder or repo>\", \"rejected\", split=\"rejected\")\n" if has_rejected else "")
        + "```",
        "",
        "## Row order",
        "",
        _row_order(manifest),
        "",
        "## Training on the reasoning",
        "",
        REASONING_NOTE,
        "",
        "## Funnel",
        "",
        _md_table(FUNNEL_HEADERS, funnel_rows(manifest["funnel"])),
        "",
    ]
    warnings = [f"- {st.get('stage')}: {w}" for st in manifest.get("stages", [])
                for w in ((st.get("stats") or {}).get("warnings") or [])]
    if warnings:  # what the run printed under the funnel (declared trace format that did not fit, empty buckets, ...)
        body += ["## Warnings", "", *warnings, ""]
    cont = contamination_tables(manifest)
    body += ["## Decontamination", "", cont if cont else "No decontamination stage ran.", ""]
    if audit_summary:
        flags = audit_summary.get("flag_counts") or {}
        body += ["## Audit", "", "See `audit/report.html` (self-contained) and `audit/summary.json`.", ""]
        if flags:
            body += [_md_table(["flag", "rows"], [[k, v] for k, v in flags.items()]), ""]
    body += ["## Recipe", "", "```yaml", recipe_text.rstrip(), "```", ""]
    body += ["## License", "", f"{r.get('license', 'other')}. Check the licenses of the sources and teachers.", ""]
    from huggingface_hub import DatasetCard

    return str(DatasetCard("---\n" + _card_header(manifest).to_yaml() + "\n---\n\n" + "\n".join(body)))




def _size_category(n: int) -> str:
    """The hub's size_categories label of a row count."""
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                         (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):
        if n < limit:
            return label
    return "100M<n<1B"


def _audit_config(lr: Any) -> Any:
    for st in lr.recipe.stages:
        if st.type == "audit":
            return st
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def clean_stale_tmp(parent: Path, prefix: str = ".tmp-") -> list[Path]:
    """Remove temporary folders (``<prefix>...-<pid>-<random>``) that killed writers left in ``parent``.
    Called with the recipe's work-folder lock held, so no other run of the recipe is writing them; a
    folder whose writer process is still alive (another recipe sharing the folder) is kept."""
    removed = []
    if not parent.is_dir():
        return removed
    for p in parent.iterdir():
        if not (p.name.startswith(prefix) and p.is_dir()):
            continue
        parts = p.name.rsplit("-", 2)
        pid = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
        if pid is not None and pid != os.getpid() and _pid_alive(pid):
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def _strip_local_paths(obj: Any, prefixes: list[tuple[str, str]]) -> Any:
    """Local absolute paths in the manifest become relative (to the recipe's folder or the working
    directory) or ``~/...``: a published version names its inputs without the author's file system."""
    if isinstance(obj, dict):
        return {k: _strip_local_paths(v, prefixes) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_strip_local_paths(v, prefixes) for v in obj]
    if isinstance(obj, str) and os.sep in obj:
        for prefix, repl in prefixes:
            obj = obj.replace(prefix, repl)
        if os.path.isabs(obj) and "\n" not in obj and " " not in obj:
            obj = os.path.basename(obj)  # elsewhere on this machine: the file name only
    return obj


def local_prefixes(base_dir: Path) -> list[tuple[str, str]]:
    out = []
    home = Path(os.environ.get("CURATE_HOME", ".curate")).absolute()
    for d, repl in ((home, "$CURATE_HOME/"), (base_dir, ""), (Path.cwd(), ""), (Path.home(), "~/")):
        for form in {str(d), os.path.realpath(d)}:
            if form and form != os.sep:
                out.append((form.rstrip(os.sep) + os.sep, repl))
    return sorted(set(out), key=lambda x: -len(x[0]))


def _manifest(lr: Any, result: Any, n_rejected: int, files: list[str], limit: int | None) -> dict[str, Any]:
    """The version's manifest before local paths are stripped and the data hash is added."""
    recipe = lr.recipe
    funnel = [
        {k: v for k, v in asdict(r).items() if k in ("stage", "rows_in", "rows_out", "dropped", "seconds", "cached")}
        for r in result.records
    ]
    return {
        "name": recipe.name,
        "version": recipe.version,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "curate_version": __version__,
        "recipe": lr.public,
        "recipe_hash": lr.hash(),
        "recipe_path": str(lr.path),
        "limit": limit,
        "inputs": result.inputs,
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git": git_commit(lr.base_dir),
        "splits": {"train": result.final.rows, "rejected": n_rejected},
        "files": files,
        "order": "curriculum_rank" if "curriculum_rank" in result.final.columns else None,
        "funnel": funnel,
        "stages": [asdict(r) for r in result.records],
    }


def publish(lr: Any, result: Any, vdir: Path, *, limit: int | None = None) -> Path:
    recipe = lr.recipe
    if vdir.exists():
        raise VersionExistsError(f"{vdir}: version {recipe.version} exists; versions are immutable")
    vdir.parent.mkdir(parents=True, exist_ok=True)
    # <version>-<pid>-<random>: the next run (holding the work-folder lock) removes it if we are killed
    tmp = vdir.parent / f".tmp-{recipe.version}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    (tmp / "data").mkdir(parents=True)
    try:
        files = write_train(result, tmp, recipe)
        rej_files, n_rejected = write_rejected(result, tmp, recipe) if recipe.output.include_rejected else ([], 0)
        files += rej_files
        manifest = _manifest(lr, result, n_rejected, files, limit)
        manifest = _strip_local_paths(manifest, local_prefixes(Path(lr.base_dir)))
        manifest["data_sha256"] = files_sha256(tmp, files)
        audit_summary = None
        try:
            from .audit import write_report  # type: ignore[attr-defined]
        except ImportError:
            write_report = None
        if write_report is not None:
            train = pl.scan_parquet([tmp / f for f in files if f.startswith("data/train-")])
            rejected = pl.scan_parquet([tmp / f for f in rej_files]) if rej_files else None
            audit_summary = write_report(tmp, train, rejected, manifest, _audit_config(lr))  # bounded memory
            manifest["audit"] = {"report": "audit/report.html", "summary": "audit/summary.json"}
        recipe_text = yaml.safe_dump(manifest["recipe"], sort_keys=False, allow_unicode=True)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str, ensure_ascii=False))
        (tmp / "README.md").write_text(dataset_card(manifest, recipe_text, audit_summary), encoding="utf-8")
        try:
            os.rename(tmp, vdir)
        except OSError:
            raise VersionExistsError(f"{vdir}: version {recipe.version} appeared while writing; nothing replaced")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return vdir


# ----------------------------------------------------------------------------- hub


def push(version_dir: Path, repo_id: str, *, private: bool = True, api: Any = None, token: str | None = None) -> str:
    """Upload a version folder to a hub dataset repo and tag the revision ``v<version>``.

    ``api`` is an ``huggingface_hub.HfApi`` (injected in tests). The token comes from the
    environment / the HF login, never from the recipe; it is never logged.
    """
    mpath = version_dir / "manifest.json"
    if not mpath.is_file():
        raise CurateError(f"{version_dir}: not a curate version folder (no manifest.json)")
    manifest = json.loads(mpath.read_text())
    version = manifest["version"]
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        info = api.upload_folder(
            folder_path=str(version_dir),
            repo_id=repo_id,
            repo_type="dataset",
            commit_message=f"{manifest['name']} v{version} (curate)",
        )
        revision = getattr(info, "oid", None)
        api.create_tag(repo_id, tag=f"v{version}", repo_type="dataset", revision=revision,
                       tag_message=f"{manifest['name']} v{version}")  # fmt: skip
    except CurateError:
        raise
    except Exception as e:
        raise CurateError(f"push {version_dir} -> {repo_id}: {e.__class__.__name__}: {first_line(e)}")
    return f"v{version}"
