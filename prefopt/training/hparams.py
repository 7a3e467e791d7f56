"""The run's hyperparameters in TensorBoard's HParams tab, with the final ``val/`` metrics."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard.summary import hparams

from prefopt.objectives import name_of_target

# the keys shown as HParams columns (a sweep is sorted by them), after ``objective`` (the
# registered name) and every scalar hyperparameter of the objective; all others go to hparams.yaml
HPARAM_KEYS = (
    "optimizer.lr",
    "seed",
    "module.nll_scope",
    "data.batch_size",
    "trainer.max_steps",
    "model.name_or_path",
)


def _scalar(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) else str(value)


def flat_hparams(cfg: DictConfig, recipe: str | None = None) -> dict[str, Any]:
    """``{column: value}`` of the HParams columns: ``objective`` (its registered name; and
    ``objective_config``, the config chosen, e.g. ``rpo``, when given), the objective's scalar
    hyperparameters (``objective.lam``, ``objective.gamma``, ...), then :data:`HPARAM_KEYS`."""
    target = OmegaConf.select(cfg, "objective._target_", default=None)
    out: dict[str, Any] = {"objective": name_of_target(str(target)) or str(target)}
    if recipe is not None:
        out["objective_config"] = recipe
    for key, value in (cfg.get("objective") or {}).items():
        if key != "_target_" and not OmegaConf.is_config(value):
            out[f"objective.{key}"] = _scalar(value)
    for key in HPARAM_KEYS:
        out[key] = _scalar(OmegaConf.select(cfg, key, default=None))
    return out


@rank_zero_only
def log_hyperparameters(
    trainer: L.Trainer, cfg: DictConfig, metric_tags: tuple[str, ...], recipe: str | None = None
) -> None:
    """Write the HParams summary (no scalar values: TensorBoard reads each metric's last value
    from the run's own scalars, so nothing fake lands at step 0) and ``hparams.yaml``."""
    for logger in trainer.loggers:
        if not isinstance(logger, TensorBoardLogger):
            continue
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        exp, ssi, sei = hparams(flat_hparams(cfg, recipe), {tag: 0.0 for tag in metric_tags})
        writer = logger.experiment.file_writer
        for summary in (exp, ssi, sei):
            writer.add_summary(summary)
