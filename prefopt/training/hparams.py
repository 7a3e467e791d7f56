"""The run's hyperparameters in TensorBoard's HParams tab, with the final ``val/`` metrics."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard.summary import hparams

from prefopt.objectives import name_of_target

# the keys shown as HParams columns (a sweep is sorted by them); all others go to hparams.yaml
HPARAM_KEYS = (
    "objective._target_",
    "objective.lam",
    "objective.beta",
    "optimizer.lr",
    "seed",
    "module.nll_scope",
    "data.batch_size",
    "trainer.max_steps",
    "model.name_or_path",
)


def flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """``{dotted.key: value}`` of the HParams columns present in ``cfg`` (values as scalars)."""
    out = {}
    for key in HPARAM_KEYS:
        value = OmegaConf.select(cfg, key, default=None)
        if key == "objective._target_" and value is not None:  # its registered name
            key, value = "objective", name_of_target(value) or value
        out[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


@rank_zero_only
def log_hyperparameters(trainer: L.Trainer, cfg: DictConfig, metric_tags: tuple[str, ...]) -> None:
    """Write the HParams summary (no scalar values: TensorBoard reads each metric's last value
    from the run's own scalars, so nothing fake lands at step 0) and ``hparams.yaml``."""
    for logger in trainer.loggers:
        if not isinstance(logger, TensorBoardLogger):
            continue
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        exp, ssi, sei = hparams(flat_hparams(cfg), {tag: 0.0 for tag in metric_tags})
        writer = logger.experiment.file_writer
        for summary in (exp, ssi, sei):
            writer.add_summary(summary)
