"""Where raw preference rows come from: the built-in generator, local files or folders, the Hub.

Every problem with a source is one line naming the file, the line or the key and the fix
(:class:`~prefopt.errors.DataError`, :class:`~prefopt.errors.DataNotFoundError`): ``datasets``'
own errors (a bare ``StopIteration`` for an empty file, no line numbers for bad JSON) never reach
the user.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import IO, Any

import datasets
from datasets import Dataset

from prefopt.data.builtin import builtin_splits
from prefopt.errors import ConfigError, DataError, DataNotFoundError, brief

# suffix -> datasets loader; each also read gzip-compressed (".jsonl.gz")
LOADERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
SUPPORTED = ", ".join([*LOADERS, *(f"{s}.gz" for s in LOADERS if s != ".parquet")])


def _kind(path: Path) -> str | None:
    """The ``datasets`` loader of a data file (``None``: not a data file)."""
    suffixes = path.suffixes[-2:]
    if len(suffixes) == 2 and suffixes[1] == ".gz" and suffixes[0] != ".parquet":
        return LOADERS.get(suffixes[0])
    return LOADERS.get(path.suffix)


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def check_json_file(path: Path) -> None:
    """Parse a ``.json`` / ``.jsonl`` file (optionally gzipped) and fail with its line number on
    the first bad record.

    ``datasets``' JSON loader reports no line numbers, so every record is checked here first: a
    JSON array of objects, or one object per line (blank lines allowed).

    Raises:
        DataError: ``"<file>: line <n>: ..."`` for unparseable JSON, text that is not UTF-8, a
            record that is not an object, or a file with no records.
    """
    try:
        with _open(path) as f:
            if f.read(4096).lstrip().startswith(b"["):
                f.seek(0)
                _check_array(path, f.read())
                return
            f.seek(0)
            _check_lines(path, f)
    except (OSError, EOFError) as err:  # a truncated or corrupt .gz
        raise DataError(f"{path}: cannot read it: {err}") from err


def _utf8(path: Path, data: bytes, lineno: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}: line {lineno}: not UTF-8 text ({err.reason} at byte {err.start}): "
            "save the file as UTF-8"
        ) from err


def _check_array(path: Path, data: bytes) -> None:
    text = _utf8(path, data, 1)
    try:
        records = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: line {err.lineno}: invalid JSON: {err.msg}") from err
    if not isinstance(records, list) or not records:
        raise DataError(f"{path}: a JSON array of preference records was expected, found none")
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(f"{path}: record {i}: expected a JSON object, got {record!r:.40}")


def _check_lines(path: Path, lines: IO[bytes]) -> None:
    records = 0
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        line = _utf8(path, raw, lineno)
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            msg = f"{err.msg} (column {err.colno})"
            raise DataError(f"{path}: line {lineno}: invalid JSON: {msg}") from err
        if not isinstance(record, dict):
            raise DataError(f"{path}: line {lineno}: expected a JSON object, got {line[:40]!r}")
        records += 1
    if records == 0:
        raise DataError(f"{path}: the file is empty (no JSON records)")


def _local_files(path: Path) -> list[Path]:
    if path.is_file():
        if _kind(path) is None:
            raise DataError(f"{path}: unsupported file type; expected one of {SUPPORTED}")
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and _kind(p) is not None)
    if not files:
        raise DataNotFoundError(f"{path}: no data files in this folder (expected {SUPPORTED})")
    return files


def is_local(path: str) -> bool:
    """Whether ``path`` names a local file or folder (existing or not) rather than a Hub dataset."""
    return (
        Path(path).exists()
        or _kind(Path(path)) is not None
        or path.startswith(("/", "./", "../", "~"))
    )


def _check_file(file: Path) -> None:
    if file.stat().st_size == 0:
        raise DataError(f"{file}: the file is empty")
    if _kind(file) == "json":
        check_json_file(file)


def _read(description: str, load: Any) -> Dataset:
    """``load()``, with ``datasets``' errors about the content turned into one line."""
    try:
        return load()
    except (DataError, DataNotFoundError):
        raise
    except Exception as err:  # pyarrow / pandas / datasets parse errors
        reason = brief(err)
        raise DataError(f"{description}: cannot read it: {reason}") from err


def load_split(
    path: str, split: str, name: str | None = None, cache_dir: str | None = None
) -> Dataset:
    """Load one split of a local file or folder, or of a Hub dataset.

    Args:
        path: A ``.jsonl``/``.json``/``.parquet``/``.csv`` file (also ``.jsonl.gz`` etc.; its
            only split is ``train``), a folder of such files (splits from the file names, as
            ``datasets`` infers them), or a Hub dataset name.
        split: Split name (``train``, ``test``, ``train_prefs``...).
        name: Hub subset (config) name.
        cache_dir: ``datasets`` cache folder (default: the HF cache).

    Raises:
        DataNotFoundError: a local path that does not exist, a folder without data files, a Hub
            dataset that cannot be reached.
        DataError: a malformed file (with the line number for JSON), an unknown split.
    """
    if not is_local(path):
        return _hub_split(path, split, name, cache_dir)
    local = Path(path).expanduser()
    if not local.exists():
        raise DataNotFoundError(f"data.path={path}: no such file or folder")
    files = _local_files(local)
    for file in files:
        _check_file(file)
    if local.is_file():
        if split != "train":
            raise ConfigError(
                f"data: {local} is one file, so its only split is 'train', not {split!r}: set "
                "data.eval_split=null (and data.eval_fraction to hold out part of it)"
            )
        loader = _kind(local)
        return _read(
            str(local),
            lambda: datasets.load_dataset(
                loader, data_files=str(local), split="train", cache_dir=cache_dir
            ),
        )
    found = _read(str(local), lambda: datasets.load_dataset(str(local), cache_dir=cache_dir))
    if split not in found:
        raise ConfigError(
            f"data: {local} has no split {split!r}; found {', '.join(found)} "
            "(set data.train_split / data.eval_split)"
        )
    return found[split]


def _hub_split(path: str, split: str, name: str | None, cache_dir: str | None) -> Dataset:
    try:
        return datasets.load_dataset(path, name=name, split=split, cache_dir=cache_dir)
    except (FileNotFoundError, ConnectionError, OSError) as err:
        reason = brief(err)
        raise DataNotFoundError(
            f"data.path={path}: not a local file or folder, and the Hugging Face Hub did not "
            f"provide it ({reason}); download it first or give a local path"
        ) from err
    except ValueError as err:  # e.g. an unknown split or subset
        raise DataError(f"data.path={path}: {brief(err, 300)}") from err


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
    if not 0.0 <= eval_fraction < 1.0 or not math.isfinite(eval_fraction):
        raise ConfigError(f"data.eval_fraction={eval_fraction} must be in [0, 1)")
    if eval_split is not None and eval_fraction > 0:
        raise ConfigError("data: set data.eval_split or data.eval_fraction, not both")
    if path == "builtin":
        if eval_split is not None or eval_fraction > 0:
            raise ConfigError(
                "data: the built-in dataset makes its own eval split: set data.builtin.eval_size "
                "(and leave data.eval_split=null, data.eval_fraction=0)"
            )
        return builtin_splits(**(builtin or {}))
    train = load_split(path, train_split, name, cache_dir)
    if eval_split is not None:
        return train, load_split(path, eval_split, name, cache_dir)
    if eval_fraction > 0:
        held_out = math.ceil(eval_fraction * len(train))
        if len(train) - held_out < 1:
            raise DataError(
                f"data.eval_fraction={eval_fraction} of {len(train)} row(s) of {path} leaves no "
                "training rows: set data.eval_fraction=0 (no eval split) or use more rows"
            )
        parts = train.train_test_split(test_size=held_out, seed=seed)
        return parts["train"], parts["test"]
    return train, None
