"""``prefopt-train``: compose the config groups with Hydra, fit, validate, save.

prefopt-train                                   # ORPO, tiny model, built-in data, CPU
prefopt-train objective=sft                     # the SFT-only ablation arm
prefopt-train evaluation=[exact_match,reward_model] evaluation.reward_model.path=RM_DIR
prefopt-train -m objective.lam=0.05,0.1,0.5     # a sweep (see docs/sweeps.md)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from prefopt.cli.checks import check_config
from prefopt.cli.errors import debug, describe, exit_with_error, user_error
from prefopt.evaluation import Evaluation
from prefopt.models.build import build_model, build_tokenizer
from prefopt.models.save import policy_weights, save_hf
from prefopt.training.callbacks import PrecomputeReference
from prefopt.training.checkpoint import AtomicCheckpointIO
from prefopt.training.hparams import log_hyperparameters
from prefopt.training.module import PreferenceModule

log = logging.getLogger("prefopt")

# the config groups ship inside the package (configs/ is prefopt.configs); `--config-dir DIR`
# adds a folder of your own
CONFIG_PATH = "pkg://prefopt.configs"

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
    # built before anything loads, so a bad evaluator option fails at once
    evaluation: Evaluation | None = instantiate(cfg.evaluation) if cfg.get("evaluation") else None
    output_dir = Path(cfg.paths.output_dir)
    if rank_zero_only.rank == 0:  # written first: prefopt-export rebuilds the model from it
        output_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, output_dir / "config_resolved.yaml", resolve=True)
    L.seed_everything(cfg.seed, workers=True)

    tokenizer = build_tokenizer(cfg.model)
    datamodule = instantiate(cfg.data, tokenizer=tokenizer)
    model, _ = build_model(cfg.model, cfg.get("peft"), tokenizer)
    module = instantiate(
        cfg.module,
        model=model,
        objective=objective,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
    )
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    callbacks.append(PrecomputeReference())  # acts only for module.reference=precomputed
    if evaluation is not None:
        callbacks.append(evaluation)
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        logger=[instantiate(cfg.logger)] if cfg.get("logger") else False,
        callbacks=callbacks,
        strategy=instantiate(cfg.strategy) if cfg.get("strategy") else "auto",
        plugins=[AtomicCheckpointIO()],  # a killed save never leaves a broken checkpoint
    )
    eval_keys = evaluation.metric_keys() if evaluation is not None else ()
    log_hyperparameters(trainer, cfg, metric_tags=(*SUMMARY_KEYS, *eval_keys))

    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    results = trainer.validate(module, datamodule=datamodule, verbose=False)
    final = {k: float(v) for k, v in (results[0] if results else {}).items()}
    if cfg.get("save_hf_model", True):
        _save_hf(trainer, module, tokenizer, cfg, output_dir / "hf_model")
    if trainer.is_global_zero:
        _print_summary(final, output_dir)
    return final


def _save_hf(
    trainer: L.Trainer, module: PreferenceModule, tokenizer, cfg: DictConfig, hf_dir: Path
) -> None:
    """Write the trained policy (LoRA merged) in the transformers format; runs on every rank,
    since a sharded model is first gathered (rank 0 gets the full weights)."""
    if getattr(trainer.strategy, "zero_stage_3", False):
        log.warning("DeepSpeed ZeRO-3: no hf_model written; run prefopt-export on a checkpoint")
        return
    model = module.model
    if isinstance(trainer.strategy, (FSDPStrategy, ModelParallelStrategy)):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        state = get_model_state_dict(trainer.strategy.model, options=options)
        if trainer.is_global_zero:
            model = build_model(cfg.model, cfg.get("peft"), tokenizer)[0]
            model.load_state_dict(policy_weights(state))
    if trainer.is_global_zero:
        save_hf(model, tokenizer, hf_dir, merge_lora=True)
        log.info("saved the trained model (transformers format) to %s", hf_dir)


def _print_summary(final: dict[str, float], output_dir: Path) -> None:
    keys = [*SUMMARY_KEYS, *sorted(k for k in final if k.startswith("val/gen/"))]
    lines = [f"  {k:<36} {final[k]: .4f}" for k in keys if k in final]
    print("final validation metrics:\n" + "\n".join(lines))
    print(f"outputs: {output_dir}  (tensorboard --logdir {output_dir})")


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns ``cfg.optimized_metric`` for sweepers such as Optuna."""
    output_dir = Path(cfg.paths.output_dir)
    _write_status(output_dir, status="running")
    try:
        final = train(cfg)
    except BaseException as err:
        _write_status(output_dir, status="failed", error=describe(err))
        found = user_error(err) if isinstance(err, Exception) else None
        if found is None or debug() or HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        exit_with_error("prefopt-train", found)
    _write_status(output_dir, status="completed", metrics=final)
    metric = cfg.get("optimized_metric")
    return final.get(metric) if metric else None


if __name__ == "__main__":
    main()
