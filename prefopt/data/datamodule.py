"""PreferenceDataModule: raw rows -> tokenized pairs (once, at setup) -> [chosen; rejected]."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow.compute as pc
from datasets import Dataset
from lightning import LightningDataModule
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset
from transformers import PreTrainedTokenizerBase

from prefopt.data.collate import PreferenceCollator
from prefopt.data.fingerprint import dataset_fingerprint, digest_of, tokenizer_fingerprint
from prefopt.data.formats import check_options, resolve_format
from prefopt.data.packing import PackedPreferenceCollator, resolve_pack_length
from prefopt.data.sampler import PreferenceSampler
from prefopt.data.sources import load_raw_splits
from prefopt.data.tokenize import Truncation, tokenize_split
from prefopt.data.tokenizer import load_tokenizer
from prefopt.errors import ConfigError, DataError

log = logging.getLogger(__name__)
REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
# fewer eval pairs than this: the val/ metrics mean little (a warning says so)
MIN_EVAL_PAIRS = 20


class PreferenceDataModule(LightningDataModule):
    """Preference pairs for ORPO / SFT / DPO, built from ``configs/data/*.yaml``.

    Bad rows are dropped and counted at setup (``skipped``), never met during training; a missing
    file, a malformed line, an unknown column or an empty result fails at setup with one line.
    See ``docs/data.md`` for every accepted format.

    Args:
        tokenizer: A tokenizer, or a name for :func:`prefopt.data.tokenizer.load_tokenizer`
            (``"builtin"``); the training app passes the model's tokenizer.
        path: ``"builtin"``, a local ``.jsonl``/``.json``/``.parquet``/``.csv`` file or folder, or a
            Hub dataset name.
        name: Hub subset name.
        train_split: Training split name.
        eval_split: Eval split name (None: hold out ``eval_fraction`` of train, or no eval).
        eval_fraction: Fraction of train held out for eval (seeded), when ``eval_split`` is None.
        format: ``auto``, ``standard`` (strings) or ``conversational`` (messages, chat template).
        prompt: ``auto``, ``explicit`` (a prompt column) or ``implicit`` (the shared start of
            the responses).
        columns: Field -> source column, e.g. ``{prompt: question, system: system}``.
        implicit_prompt_marker: Implicit string prompts end after the last occurrence of this
            text (e.g. ``"\\n\\nAssistant:"`` for Anthropic/hh-rlhf).
        max_length: Longest prompt + response in tokens (None: no limit).
        max_prompt_length: Prompt budget when a pair is too long (must be < ``max_length``).
        truncation_mode: ``keep_end`` or ``keep_start`` of the prompt.
        drop_prompts_longer_than: Drop pairs whose prompt has more tokens (None: keep all).
        batch_size: Pairs per training batch per device (the batch has 2x rows).
        eval_batch_size: Pairs per eval/predict batch (None: ``batch_size``).
        num_workers: DataLoader workers.
        num_proc: Processes for tokenization (``datasets.map``).
        group_by_length: Group training pairs of similar length (less padding).
        drop_last: Drop the last incomplete training batch.
        seed: Seed of the data order and of the held-out split.
        packing: Pack each batch's sequences padding-free into rows of ``pack_length`` tokens
            (``prefopt.data.packing``): the same pairs per step, fewer padding tokens.
        pack_length: Tokens per packed row at most (None: ``4 * max_length``, or one row per
            batch without ``max_length``); at least ``max_length``.
        max_train_samples: Use only the first N raw training rows.
        max_eval_samples: Use only the first N raw eval rows.
        builtin: Options of the built-in dataset (``train_size``, ``eval_size``, ``seed``).
        cache_dir: ``datasets`` cache folder (None: the HF default).
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase | str | None = None,
        path: str = "builtin",
        name: str | None = None,
        train_split: str = "train",
        eval_split: str | None = None,
        eval_fraction: float = 0.0,
        format: str = "auto",
        prompt: str = "auto",
        columns: Mapping[str, str] | None = None,
        implicit_prompt_marker: str | None = None,
        max_length: int | None = 1024,
        max_prompt_length: int | None = 512,
        truncation_mode: str = "keep_end",
        drop_prompts_longer_than: int | None = None,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        num_proc: int | None = None,
        group_by_length: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        packing: bool = False,
        pack_length: int | None = None,
        max_train_samples: int | None = None,
        max_eval_samples: int | None = None,
        builtin: Mapping[str, Any] | None = None,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.truncation = Truncation(
            max_length, max_prompt_length, truncation_mode, drop_prompts_longer_than
        )
        check_options(format, prompt)
        self.tokenizer = load_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
        self.path, self.name = path, name
        self.train_split, self.eval_split = train_split, eval_split
        self.eval_fraction = eval_fraction
        self.format, self.prompt = format, prompt
        self.columns = dict(columns) if columns else None
        self.implicit_prompt_marker = implicit_prompt_marker
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.num_proc = num_workers, num_proc
        self.group_by_length, self.drop_last, self.seed = group_by_length, drop_last, seed
        self.packing, self.pack_length = packing, resolve_pack_length(pack_length, max_length)
        self.max_samples = {"train": max_train_samples, "eval": max_eval_samples}
        self.builtin = dict(builtin) if builtin else {}
        self.cache_dir = cache_dir
        # the tokenized splits; loaders read them through _SplitView, so columns added later
        # (set_reference_logps) reach loaders made before
        self._splits: dict[str, Dataset] = {}
        self.skipped: dict[str, dict[str, int]] = {}
        self._resume_position: dict[str, int] | None = None

    @property
    def train_dataset(self) -> Dataset | None:
        return self._splits.get("train")

    @property
    def eval_dataset(self) -> Dataset | None:
        return self._splits.get("eval")

    def prepare_data(self) -> None:
        # Rank 0 fills the datasets cache (download, tokenization) before the other ranks set up.
        self._build()

    def setup(self, stage: str | None = None) -> None:
        self._build()

    def _build(self) -> None:
        if self.train_dataset is not None:
            return
        if self.tokenizer is None:
            raise ConfigError(
                "PreferenceDataModule has no tokenizer: pass tokenizer= ('builtin' or one)"
            )
        raw = load_raw_splits(
            self.path,
            self.name,
            self.train_split,
            self.eval_split,
            self.eval_fraction,
            self.seed,
            self.builtin,
            self.cache_dir,
        )
        source = self.path if self.name is None else f"{self.path}:{self.name}"
        spec = resolve_format(
            raw[0], source, self.format, self.prompt, self.columns, self.implicit_prompt_marker
        )
        if spec.conversational and not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(
                f"{source}: the rows are chat messages, but the tokenizer "
                f"({getattr(self.tokenizer, 'name_or_path', '') or type(self.tokenizer).__name__})"
                " has no chat template: use a tokenizer that has one (model.tokenizer=...), or "
                "data.format=standard for string rows"
            )
        built = {}
        for split, dataset in zip(("train", "eval"), raw):
            if dataset is None:
                continue
            limit = self.max_samples[split]
            if limit is not None:
                dataset = dataset.select(range(min(limit, len(dataset))))
            where = f"{source} ({split} split)"
            tokenized, skipped = tokenize_split(
                dataset, self.tokenizer, spec, self.truncation, where, self.num_proc
            )
            self.skipped[split] = skipped
            for reason, count in skipped.items():
                log.info("%s: dropped %d of %d rows: %s", where, count, len(dataset), reason)
            if len(tokenized) == 0:
                counts = ", ".join(f"{r}: {c}" for r, c in skipped.items()) or "the split is empty"
                raise DataError(
                    f"{where}: no usable rows left ({counts}); see docs/data.md for the formats "
                    "and the drop reasons"
                )
            built[split] = tokenized
        self._splits.update(built)
        if self.eval_dataset is not None and len(self.eval_dataset) < MIN_EVAL_PAIRS:
            key = (
                "data.builtin.eval_size"
                if self.path == "builtin"
                else "data.eval_fraction"
                if self.eval_split is None
                else "data.eval_split"
            )
            log.warning(
                "the eval split has only %d pair(s): its val/ metrics will be noisy; raise %s",
                len(self.eval_dataset),
                key,
            )

    def set_reference_logps(
        self, split: str, chosen: Sequence[float], rejected: Sequence[float]
    ) -> None:
        """Store precomputed reference log-probs with the dataset (one value per response,
        reduced as the objective declares: summed for DPO, per-token means for ``mean`` ones).

        Args:
            split: ``train`` or ``eval``.
            chosen: One value per row, in dataset order (as :meth:`predict_dataloader` yields).
            rejected: Same for the rejected responses.
        """
        dataset = self._dataset(split)
        values = {
            REF_COLUMNS[0]: [float(x) for x in chosen],
            REF_COLUMNS[1]: [float(x) for x in rejected],
        }
        for column, column_values in values.items():
            if len(column_values) != len(dataset):
                raise ValueError(
                    f"{column}: {len(column_values)} values for {len(dataset)} {split} rows"
                )
            if not all(math.isfinite(x) for x in column_values):
                raise ValueError(f"{column}: non-finite values for the {split} split")
        dataset = dataset.remove_columns([c for c in REF_COLUMNS if c in dataset.column_names])
        for column, column_values in values.items():
            dataset = dataset.add_column(column, column_values)
        self._splits[split] = dataset

    def fingerprint(self, split: str) -> str:
        """A hash of everything :meth:`predict_dataloader` feeds the reference pass of ``split``:
        its token ids in dataset order, the truncation limits, the tokenizer and the batch
        layout (``eval_batch_size``, packing); the key of the reference log-prob cache."""
        return digest_of(
            {
                "pairs": dataset_fingerprint(self._dataset(split)),
                "truncation": vars(self.truncation),
                "tokenizer": tokenizer_fingerprint(self.tokenizer),
                "batches": [self.eval_batch_size, self.packing, self.pack_length],
            }
        )

    def splits(self) -> list[str]:
        """The splits that exist after setup: ``train`` and, if there is one, ``eval``."""
        return [s for s in ("train", "eval") if getattr(self, f"{s}_dataset") is not None]

    def _dataset(self, split: str) -> Dataset:
        if split not in ("train", "eval"):
            raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
        dataset = getattr(self, f"{split}_dataset")
        if dataset is None:
            raise RuntimeError(
                f"no {split} dataset: call setup() first (or there is no {split} split)"
            )
        return dataset

    @staticmethod
    def lengths(dataset: Dataset) -> list[int]:
        """Padded length of each pair: prompt + the longer response, in tokens."""
        table = dataset.with_format("arrow")[:]
        chosen = pc.list_value_length(table["chosen_input_ids"])
        rejected = pc.list_value_length(table["rejected_input_ids"])
        prompt = pc.list_value_length(table["prompt_input_ids"])
        return pc.add(prompt, pc.max_element_wise(chosen, rejected)).to_pylist()

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _loader(self, split: str, sampler: PreferenceSampler) -> DataLoader:
        return _EpochLoader(
            _SplitView(self._splits, split),
            batch_size=sampler.batch_size,
            sampler=sampler,
            collate_fn=self.collator(),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def collator(self) -> PreferenceCollator | PackedPreferenceCollator:
        """The collate function of every loader: padded rows, or packed ones (``packing``)."""
        if self.packing:
            return PackedPreferenceCollator(self.tokenizer.pad_token_id, self.pack_length)
        return PreferenceCollator(self.tokenizer.pad_token_id)

    def train_dataloader(self) -> DataLoader:
        dataset = self._dataset("train")
        replicas, rank = self._world()
        sampler = PreferenceSampler(
            self.lengths(dataset),
            self.batch_size,
            shuffle=True,
            seed=self.seed,
            group_by_length=self.group_by_length,
            num_replicas=replicas,
            rank=rank,
            drop_last=self.drop_last,
        )
        if not sampler.batches():
            raise DataError(
                f"{len(dataset)} training pair(s) make no batch of data.batch_size="
                f"{self.batch_size} on {replicas} process(es) with data.drop_last={self.drop_last}:"
                " lower data.batch_size, set data.drop_last=false, or use more data"
            )
        if self._resume_position is not None:  # restored from a mid-epoch checkpoint
            sampler.load_state_dict({**self._resume_position, "seed": self.seed})
            self._resume_position = None
        return self._loader("train", sampler)

    def state_dict(self) -> dict[str, int]:
        """The data position, saved in every checkpoint: the epoch being trained and how many of
        its batches are done (0 at an epoch's end), so a resumed run skips exactly those."""
        if self.trainer is None:
            return {}
        loop = self.trainer.fit_loop
        epochs = loop.epoch_progress.current
        in_epoch = epochs.started > epochs.processed
        done = loop.epoch_loop.batch_progress.current.processed if in_epoch else 0
        return {"epoch": epochs.processed, "skip": done}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume_position = dict(state_dict) if state_dict else None

    def val_dataloader(self) -> DataLoader | list:
        if self.eval_dataset is None:
            return []
        replicas, rank = self._world()
        sampler = PreferenceSampler(
            [0] * len(self.eval_dataset),
            self.eval_batch_size,
            shuffle=False,
            num_replicas=replicas,
            rank=rank,
        )
        return self._loader("eval", sampler)

    def predict_dataloader(self, split: str = "train") -> DataLoader:
        """All rows of ``split`` in dataset order, unsharded (for the reference log-prob pass)."""
        dataset = self._dataset(split)
        sampler = PreferenceSampler([0] * len(dataset), self.eval_batch_size, shuffle=False)
        return self._loader(split, sampler)


class _SplitView(TorchDataset):
    """The current dataset of a split, looked up at every access (a loader made before
    ``set_reference_logps`` still sees the columns it adds)."""

    def __init__(self, splits: dict[str, Dataset], split: str) -> None:
        self.splits, self.split = splits, split

    def __len__(self) -> int:
        return len(self.splits[self.split])

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.splits[self.split][index]

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        return self.splits[self.split].__getitems__(indices)  # one arrow read per batch


class _EpochLoader(DataLoader):
    """A DataLoader whose length is always the whole epoch, also while its sampler skips the
    batches a resumed run already trained on (Lightning counts those as done)."""

    def __len__(self) -> int:
        return len(self.sampler.batches())
