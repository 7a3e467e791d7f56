"""``prefopt-train``: compose the config groups with Hydra, fit, validate, save.

prefopt-train                                   # ORPO, tiny model, built-in data, CPU
prefopt-train objective=sft                     # the SFT-only ablation arm
prefopt-train -m objective.lam=0.05,0.1,0.5     # a sweep (see docs/sweeps.md)
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from prefopt.config import ConfigError, check_config
from prefopt.data import load_tokenizer
from prefopt.hparams import log_hyperparameters
from prefopt.module import PreferenceModule

log = logging.getLogger("prefopt")

# configs/ lives beside the package (install with `pip install -e .`); `--config-dir DIR` adds yours
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")

SUMMARY_KEYS = (
    "val/rewards/accuracies",
    "val/rewards/margins",
    "val/margins/avg_logps",
    "val/accuracies/avg_logps",
    "val/logps/chosen",
    "val/logps/rejected",
    "val/nll_loss",
    "val/loss",
)


def _write_status(output_dir: Path, **status: Any) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "status.json").write_text(json.dumps(status, indent=2) + "\n")


def train(cfg: DictConfig) -> dict[str, float]:
    """Train and validate as ``cfg`` says; return the final ``val/`` metrics."""
    objective = instantiate(cfg.objective)
    check_config(cfg, objective)
    output_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)

    tokenizer = load_tokenizer(cfg.model.tokenizer)
    datamodule = instantiate(cfg.data, tokenizer=tokenizer)
    model = instantiate(cfg.model, tokenizer=tokenizer)
    module = instantiate(
        cfg.module,
        model=model,
        objective=objective,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
    )
    loggers = [instantiate(cfg.logger)] if cfg.get("logger") else []
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    strategy = instantiate(cfg.strategy) if cfg.get("strategy") else "auto"
    trainer: L.Trainer = instantiate(
        cfg.trainer, logger=loggers or False, callbacks=callbacks, strategy=strategy
    )
    log_hyperparameters(trainer, cfg, metric_tags=SUMMARY_KEYS)

    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    results = trainer.validate(module, datamodule=datamodule, verbose=False)
    final = {k: float(v) for k, v in (results[0] if results else {}).items()}
    if trainer.is_global_zero:
        _save(module, tokenizer, cfg, output_dir)
        _print_summary(final, output_dir)
    return final


def _save(module: PreferenceModule, tokenizer, cfg: DictConfig, output_dir: Path) -> None:
    OmegaConf.save(cfg, output_dir / "config_resolved.yaml", resolve=True)
    if cfg.get("save_hf_model", True):
        hf_dir = output_dir / "hf_model"
        module.model.save_pretrained(hf_dir)
        tokenizer.save_pretrained(hf_dir)
        log.info("saved the trained model (transformers format) to %s", hf_dir)


def _print_summary(final: dict[str, float], output_dir: Path) -> None:
    lines = [f"  {k:<28} {final[k]: .4f}" for k in SUMMARY_KEYS if k in final]
    print("final validation metrics:\n" + "\n".join(lines))
    print(f"outputs: {output_dir}  (tensorboard --logdir {output_dir})")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns ``cfg.optimized_metric`` for sweepers such as Optuna."""
    output_dir = Path(cfg.paths.output_dir)
    _write_status(output_dir, status="running")
    try:
        final = train(cfg)
    except ConfigError as err:
        _write_status(output_dir, status="failed", error=f"ConfigError: {err}")
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        print(f"prefopt-train: error: {err}", file=sys.stderr)
        sys.exit(2)
    except BaseException as err:
        last = traceback.format_exception_only(type(err), err)[-1].strip()
        _write_status(output_dir, status="failed", error=last)
        raise
    _write_status(output_dir, status="completed", metrics=final)
    metric = cfg.get("optimized_metric")
    return final.get(metric) if metric else None


if __name__ == "__main__":
    main()
