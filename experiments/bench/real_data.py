"""The real-length workload: token lengths of public preference pairs, through prefopt's own data
code (format detection, chat template, prompt extraction), with the Phi-3 tokenizer.

Only the lengths are kept: the benchmark draws random ids of those lengths
(:meth:`experiments.bench.workload.Workload.pairs`), so it stays free of the text itself.
"""

from __future__ import annotations

import json
import logging
import statistics
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .workload import Pair

# ``../shared`` beside the repository (the folder the project's machines share)
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
DATA = Path("data/preference")
TOKENIZER = Path("tokenizers/phi-3-mini-4k-instruct")
# layouts the format detection cannot map by itself: as configs/data/orca_dpo_pairs.yaml does
LAYOUTS = {
    "question": {"format": "conversational", "columns": {"prompt": "question", "system": "system"}}
}


@dataclass(frozen=True)
class RealLengths:
    """The pool of real pairs' token lengths.

    Attributes:
        pool: (prompt, chosen, rejected) token lengths of each distinct pair, untruncated.
        files: the files read.
        duplicates: pairs dropped because another file holds the same token ids (the shared
            folder has each dataset in two layouts).
        tokenizer: the tokenizer folder.
    """

    pool: tuple[tuple[int, int, int], ...]
    files: tuple[str, ...]
    duplicates: int
    tokenizer: str


def missing(shared: Path = SHARED) -> str | None:
    """Why the real workload cannot be built from ``shared`` (None: it can)."""
    if not (shared / TOKENIZER).is_dir():
        return f"{shared / TOKENIZER} not found"
    if not sorted((shared / DATA).glob("*.jsonl")):
        return f"no {shared / DATA}/*.jsonl"
    return None


def _options(path: Path) -> dict:
    with path.open() as f:
        first = json.loads(f.readline())
    for column, options in LAYOUTS.items():
        if column in first:
            return options
    return {}


@contextmanager
def _quiet():
    """No progress bars, no "sequence length is longer than 4096" warnings, no per-file info
    lines, while the files are read; the previous settings afterwards."""
    import datasets
    import transformers

    bars = datasets.is_progress_bar_enabled()
    verbosity = transformers.logging.get_verbosity()
    log = logging.getLogger("prefopt")
    level = log.level
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)
        transformers.logging.set_verbosity(verbosity)
        if bars:
            datasets.enable_progress_bars()


def _tokenized(path: Path, tokenizer, max_rows: int | None, cache: str):
    """One file's train split, tokenized by ``PreferenceDataModule`` without truncation."""
    from prefopt.data import PreferenceDataModule

    data = PreferenceDataModule(
        tokenizer=tokenizer,
        path=str(path),
        max_length=None,
        max_prompt_length=None,
        max_train_samples=max_rows,
        cache_dir=cache,
        **_options(path),
    )
    data.setup()
    return data.train_dataset


def load_real_lengths(shared: Path = SHARED, max_rows: int | None = None) -> RealLengths:
    """Tokenize every ``shared/data/preference/*.jsonl`` with ``PreferenceDataModule`` (chat
    template applied, no truncation) and keep the lengths of each distinct pair.

    Args:
        shared: the shared folder (``data/preference/*.jsonl``, ``tokenizers/phi-3-...``).
        max_rows: read only the first rows of each file (quick mode).
    """
    from prefopt.data import load_tokenizer

    tokenizer = load_tokenizer(str(shared / TOKENIZER))
    files = sorted((shared / DATA).glob("*.jsonl"))
    seen: set[tuple] = set()
    pool, duplicates = [], 0
    columns = ("prompt_input_ids", "chosen_input_ids", "rejected_input_ids")
    with _quiet(), tempfile.TemporaryDirectory() as cache:  # no stale datasets cache
        for path in files:
            for row in _tokenized(path, tokenizer, max_rows, cache).select_columns(list(columns)):
                key = tuple(tuple(row[c]) for c in columns)
                if key in seen:
                    duplicates += 1
                    continue
                seen.add(key)
                pool.append(tuple(len(ids) for ids in key))
    names = tuple(p.name for p in files)
    return RealLengths(tuple(pool), names, duplicates, str(shared / TOKENIZER))


def quantiles(values: list[int]) -> tuple[float, float]:
    """(median, p90) of ``values``."""
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return statistics.median(ordered), float(p90)


def length_stats(lengths: list[tuple[int, int, int]]) -> dict[str, float]:
    """Median and p90 of the prompt and response (chosen and rejected pooled) lengths."""
    prompt = quantiles([p for p, _, _ in lengths])
    response = quantiles([n for _, c, r in lengths for n in (c, r)])
    return {
        "pairs": float(len(lengths)),
        "prompt_median": prompt[0],
        "prompt_p90": prompt[1],
        "response_median": response[0],
        "response_p90": response[1],
    }


def pair_lengths(pairs: list[Pair]) -> list[tuple[int, int, int]]:
    """(prompt, chosen, rejected) lengths of truncated pairs."""
    keys = ("prompt_input_ids", "chosen_input_ids", "rejected_input_ids")
    return [tuple(len(p[k]) for k in keys) for p in pairs]


def describe(stats: dict[str, float]) -> str:
    """``median/p90 prompt 184/412, responses 290/611 tokens`` (for the report)."""
    return (
        f"median/p90 prompt {stats['prompt_median']:.0f}/{stats['prompt_p90']:.0f}, responses "
        f"{stats['response_median']:.0f}/{stats['response_p90']:.0f} tokens"
    )
