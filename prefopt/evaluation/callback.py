"""The Evaluation callback: generate on a fixed sample of eval prompts, score, log.

It runs at every ``every_n_val``-th validation during training and at the final validation
(``trainer.validate`` after ``fit``, as ``prefopt-train`` does); a final validation at the step
already evaluated logs the same values again without generating. Each rank completes its shard
of the sample, the evaluators score it, the values are gathered on every rank and summarised
there (so every rank logs the same numbers). Everything runs without gradients, in eval mode,
with the random generators forked and restored.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn

from prefopt.errors import ConfigError
from prefopt.evaluation.base import EvalData, EvalRow, Evaluator, Policy
from prefopt.evaluation.generation import Sampling, generate, stop_token_ids
from prefopt.evaluation.runtime import eval_mode, gather, isolated_rng, sample_positions, shard
from prefopt.models.logps import Scoring

log = logging.getLogger(__name__)
PREFIX = "val/gen"
TABLE_TAG = "val/gen/samples"


class Evaluation(L.Callback):
    """Generation evaluators at validation time, logged as ``val/gen/<key>/<metric>``.

    Args:
        every_n_val: Evaluate at every n-th validation during training (0: only at the end).
        num_prompts: Eval prompts in the sample (drawn once with ``seed``; all if fewer).
        max_new_tokens: Most generated tokens per prompt (the stop token included).
        batch_size: Prompts per ``generate`` call (and pairs per scoring forward).
        do_sample: Sample instead of greedy decoding (seeded with ``seed`` + rank).
        temperature: Sampling temperature.
        top_p: Nucleus sampling mass (1: off).
        top_k: Sample among the k most likely tokens (0: off).
        seed: Seed of the prompt sample and of sampling.
        table_rows: Rows of the sample table (``val/gen/samples``, Text tab).
        **evaluators: Config key -> :class:`Evaluator` (``None`` entries are skipped).
    """

    def __init__(
        self,
        every_n_val: int = 2,
        num_prompts: int = 64,
        max_new_tokens: int = 24,
        batch_size: int = 64,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        seed: int = 0,
        table_rows: int = 4,
        **evaluators: Evaluator | None,
    ) -> None:
        for key, value, low in (
            ("every_n_val", every_n_val, 0),
            ("num_prompts", num_prompts, 1),
            ("max_new_tokens", max_new_tokens, 1),
            ("batch_size", batch_size, 1),
        ):
            if not isinstance(value, int) or value < low:
                raise ConfigError(
                    f"evaluation.{key}={value!r}: must be an integer >= {low} "
                    "(evaluation=[] turns evaluation off)"
                )
        for key, evaluator in evaluators.items():
            if evaluator is not None and not isinstance(evaluator, Evaluator):
                raise ConfigError(
                    f"evaluation.{key} is not an evaluator ({type(evaluator).__name__}): give it "
                    "a _target_ of a registered evaluator (see configs/evaluation/)"
                )
        self.every_n_val, self.num_prompts, self.seed = every_n_val, num_prompts, seed
        self.sampling = Sampling(max_new_tokens, do_sample, temperature, top_p, top_k, batch_size)
        self.table_rows = table_rows
        self.evaluators = {k: e for k, e in evaluators.items() if e is not None}
        self.validations = 0  # validations seen during training (saved in checkpoints)
        self._rows: list[dict[str, Any]] | None = None  # this rank's shard: (position, row)
        self._num_rows = 0
        self._last: tuple[int, dict[str, float]] | None = None  # (global step, metrics)

    def metric_keys(self) -> tuple[str, ...]:
        """The tags the evaluators declare (``val/gen/<key>/<metric>``), for HParams."""
        return tuple(
            f"{PREFIX}/{key}/{name}" for key, ev in self.evaluators.items() for name in ev.metrics
        )

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not self.evaluators or self._rows is not None:
            return
        datamodule = trainer.datamodule
        dataset = getattr(datamodule, "eval_dataset", None)
        if dataset is None or len(dataset) == 0:
            log.warning("evaluation: the data has no eval split, so no evaluator runs")
            return
        positions = sample_positions(len(dataset), self.num_prompts, self.seed)
        self._num_rows = len(positions)
        data = EvalData(
            datamodule.tokenizer,
            "reference" in dataset.column_names,
            len(positions),
            self.sampling.max_new_tokens,
        )
        for evaluator in self.evaluators.values():
            evaluator.setup(data)
        mine = shard(len(positions), trainer.world_size, trainer.global_rank)
        rows = dataset.select([positions[p % len(positions)] for p in mine])
        self._rows = [{"position": p, **row} for p, row in zip(mine, rows)]

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._rows is None or trainer.sanity_checking:
            return
        if trainer.state.fn == TrainerFn.FITTING:
            self.validations += 1
            if not self.every_n_val or self.validations % self.every_n_val:
                return
        step = trainer.global_step
        if self._last is None or self._last[0] != step:  # else: these weights were evaluated
            self._last = (step, self.evaluate(trainer, pl_module))
        for key, value in self._last[1].items():
            pl_module.log(key, value, sync_dist=False)

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        """Generate, score, gather, summarise; write the sample table; return the metrics."""
        start = time.perf_counter()
        model, tokenizer = pl_module.model, trainer.datamodule.tokenizer
        policy = Policy(
            model,
            tokenizer,
            pl_module.device,
            getattr(pl_module, "scoring", None) or Scoring(),
            self.sampling.batch_size,
        )
        world = trainer.world_size
        with torch.no_grad(), eval_mode(model), isolated_rng(self.seed + trainer.global_rank):
            rows = self._generate(policy, synced=world > 1)
            values = {key: ev.score(rows, policy) for key, ev in self.evaluators.items()}
        # per row: {evaluator key: {value name: value}}, gathered with the rows in sample order
        per_row = [
            {key: {name: column[i] for name, column in vs.items()} for key, vs in values.items()}
            for i in range(len(rows))
        ]
        everything = gather(
            [(row.position, (row, scores)) for row, scores in zip(rows, per_row)],
            self._num_rows,
            world,
        )
        metrics: dict[str, float] = {}
        with torch.no_grad(), eval_mode(model), isolated_rng(self.seed):
            for key, evaluator in self.evaluators.items():
                names = everything[0][1][key].keys() if everything else ()
                gathered = {n: [float(v[key][n]) for _, v in everything] for n in names}
                for name, value in evaluator.summarize(gathered, policy).items():
                    if math.isfinite(value):  # undefined (e.g. a correlation without variance)
                        metrics[f"{PREFIX}/{key}/{name}"] = float(value)
        if trainer.is_global_zero:
            self._write_table(trainer, everything[: self.table_rows])
        log.info(
            "evaluation at step %d: %d prompts (%d on this rank) in %.2f s",
            trainer.global_step,
            len(everything),
            len(rows),
            time.perf_counter() - start,
        )
        return metrics

    def _generate(self, policy: Policy, synced: bool) -> list[EvalRow]:
        tokenizer = policy.tokenizer
        stops = stop_token_ids(tokenizer, policy.model)
        prompts = [row["prompt_input_ids"] for row in self._rows]
        completions = generate(
            policy.model,
            prompts,
            tokenizer.pad_token_id,
            stops,
            self.sampling,
            policy.device,
            synced,
        )

        def text(ids: list[int]) -> str:
            return tokenizer.decode(ids, skip_special_tokens=True)

        return [
            EvalRow(
                position=row["position"],
                prompt_ids=list(row["prompt_input_ids"]),
                chosen_ids=list(row["chosen_input_ids"]),
                rejected_ids=list(row["rejected_input_ids"]),
                generation_ids=ids,
                stopped=stopped,
                prompt=text(row["prompt_input_ids"]),
                generation=text(ids),
                chosen=text(row["chosen_input_ids"]),
                rejected=text(row["rejected_input_ids"]),
                reference=row.get("reference"),
            )
            for row, (ids, stopped) in zip(self._rows, completions)
        ]

    def _write_table(self, trainer: L.Trainer, rows: list[tuple[EvalRow, dict]]) -> None:
        """prompt | generation | reference | the first value of each evaluator, per row."""
        if not rows:
            return
        keys = [k for k in self.evaluators if rows[0][1][k]]
        lines = [
            "| " + " | ".join(["prompt", "generation", "reference", *keys]) + " |",
            "|" + "---|" * (3 + len(keys)),
        ]
        for row, values in rows:
            reference = row.reference if row.reference is not None else row.chosen
            scores = [f"{next(iter(values[k].values())):.4g}" for k in keys]
            cells = [_cell(c) for c in (row.prompt, row.generation, reference)]
            lines.append("| " + " | ".join([*cells, *scores]) + " |")
        # the step of this validation's scalars (PreferenceModule logs them at global_step)
        step = trainer.global_step
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text(TABLE_TAG, "\n".join(lines), step)

    def state_dict(self) -> dict[str, Any]:
        return {"validations": self.validations}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.validations = int(state_dict.get("validations", 0))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()
