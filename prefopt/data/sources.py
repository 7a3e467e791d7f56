"""Where raw preference rows come from: the built-in generator, local files or folders, the Hub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset

from prefopt.data.builtin import builtin_splits

LOADERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def check_json_file(path: Path) -> None:
    """Parse a ``.json`` / ``.jsonl`` file and fail with its line number on the first bad record.

    ``datasets``' JSON loader reports no line numbers, so every record is checked here first: a
    JSON array of objects, or one object per line (blank lines allowed).

    Raises:
        ValueError: ``"<file>: line <n>: ..."`` for unparseable JSON (or bad UTF-8) or a record
            that is not an object.
    """
    with path.open("rb") as f:
        if f.read(4096).lstrip().startswith(b"["):
            f.seek(0)
            try:
                records = json.load(f)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: line {err.lineno}: invalid JSON: {err.msg}") from err
            for i, record in enumerate(records):
                if not isinstance(record, dict):
                    raise ValueError(
                        f"{path}: record {i}: expected a JSON object, got {record!r:.40}"
                    )
            return
        f.seek(0)
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                msg = f"{err.msg} (column {err.colno})"
                raise ValueError(f"{path}: line {lineno}: invalid JSON: {msg}") from err
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}: line {lineno}: not UTF-8 text: {err.reason}") from err
            if not isinstance(record, dict):
                raise ValueError(
                    f"{path}: line {lineno}: expected a JSON object, got {line[:40]!r}"
                )


def _local_files(path: Path) -> list[Path]:
    if path.is_file():
        if path.suffix not in LOADERS:
            raise ValueError(f"{path}: unsupported file type; expected {', '.join(LOADERS)}")
        return [path]
    files = sorted(p for p in path.rglob("*") if p.suffix in LOADERS and p.is_file())
    if not files:
        raise FileNotFoundError(f"{path}: no {', '.join(LOADERS)} files in this folder")
    return files


def is_local(path: str) -> bool:
    """Whether ``path`` names a local file or folder (existing or not) rather than a Hub dataset."""
    return (
        Path(path).exists()
        or Path(path).suffix in LOADERS
        or path.startswith(("/", "./", "../", "~"))
    )


def load_split(
    path: str, split: str, name: str | None = None, cache_dir: str | None = None
) -> Dataset:
    """Load one split of a local file or folder, or of a Hub dataset.

    Args:
        path: A ``.jsonl``/``.json``/``.parquet``/``.csv`` file (its only split is ``train``), a
            folder of such files (splits from the file names, as ``datasets`` infers them), or a
            Hub dataset name.
        split: Split name (``train``, ``test``, ``train_prefs``...).
        name: Hub subset (config) name.
        cache_dir: ``datasets`` cache folder (default: the HF cache).

    Raises:
        FileNotFoundError: a local path that does not exist.
        ValueError: a malformed JSON file (with the line number) or an unknown split.
    """
    if not is_local(path):
        return datasets.load_dataset(path, name=name, split=split, cache_dir=cache_dir)
    local = Path(path).expanduser()
    if not local.exists():
        raise FileNotFoundError(f"data file or folder not found: {local}")
    files = _local_files(local)
    for file in files:
        if LOADERS[file.suffix] == "json":
            check_json_file(file)
    if local.is_file():
        if split != "train":
            raise ValueError(f"{local}: a single file has only the split 'train', not {split!r}")
        return datasets.load_dataset(
            LOADERS[local.suffix], data_files=str(local), split="train", cache_dir=cache_dir
        )
    found = datasets.load_dataset(str(local), cache_dir=cache_dir)
    if split not in found:
        raise ValueError(f"{local}: no split {split!r}; found {', '.join(found)}")
    return found[split]


def load_raw_splits(
    path: str,
    name: str | None,
    train_split: str,
    eval_split: str | None,
    eval_fraction: float,
    seed: int,
    builtin: dict[str, Any] | None = None,
    cache_dir: str | None = None,
) -> tuple[Dataset, Dataset | None]:
    """Load the raw train and eval splits.

    Args:
        path: ``"builtin"``, a local file or folder, or a Hub dataset name.
        name: Hub subset name.
        train_split: Name of the training split.
        eval_split: Name of the eval split, or None.
        eval_fraction: Without ``eval_split``, hold out this fraction of train (seeded) for eval.
        seed: Seed of the held-out split.
        builtin: Options of :func:`prefopt.data.builtin.builtin_splits` (sizes, seed).
        cache_dir: ``datasets`` cache folder.

    Returns:
        ``(train, eval)``; eval is None when there is no eval split.
    """
    if eval_split is not None and eval_fraction > 0:
        raise ValueError("set eval_split or eval_fraction, not both")
    if path == "builtin":
        if eval_split is not None or eval_fraction > 0:
            raise ValueError("the built-in dataset makes its own eval split: set builtin.eval_size")
        return builtin_splits(**(builtin or {}))
    train = load_split(path, train_split, name, cache_dir)
    if eval_split is not None:
        return train, load_split(path, eval_split, name, cache_dir)
    if eval_fraction > 0:
        parts = train.train_test_split(test_size=eval_fraction, seed=seed)
        return parts["train"], parts["test"]
    return train, None
