"""``prefopt-train``: compose the config groups with Hydra, fit, validate, save.

prefopt-train                                   # ORPO, tiny model, built-in data, CPU
prefopt-train objective=sft                     # the SFT-only ablation arm
prefopt-train evaluation=[exact_match,reward_model] evaluation.reward_model.path=RM_DIR
prefopt-train -m objective.lam=0.05,0.1,0.5     # a sweep (see docs/sweeps.md)
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from prefopt.cli.checks import check_config, check_values
from prefopt.cli.errors import OWN_FULL_ERROR, debug, describe, exit_with_error, user_message
from prefopt.errors import CheckpointError, TrainingError
from prefopt.evaluation import Evaluation
from prefopt.models.build import build_model, build_tokenizer
from prefopt.models.packed import check_packing_support
from prefopt.models.save import policy_weights, save_hf
from prefopt.training import tensorboard
from prefopt.training.callbacks import PrecomputeReference
from prefopt.training.checkpoint import AtomicCheckpointIO
from prefopt.training.hparams import log_hyperparameters
from prefopt.training.interrupt import StopOnSignal, TrainingInterrupted
from prefopt.training.module import PreferenceModule

log = logging.getLogger("prefopt")
PROG = "prefopt-train"

# the config groups ship inside the package (configs/ is prefopt.configs); `--config-dir DIR`
# adds a folder of your own
CONFIG_PATH = "pkg://prefopt.configs"

# the end-of-run summary and the HParams columns: what means something for every arm first
SUMMARY_KEYS = (
    "val/accuracies/avg_logps",
    "val/margins/avg_logps",
    "val/logps/chosen",
    "val/logps/rejected",
    "val/nll_loss",
    "val/loss",
    "val/rewards/accuracies",
    "val/rewards/margins",
)
# Lightning's resume warnings that do not apply: the data module restores the data position
# itself, and a resumed run's checkpoint folder is expected to hold checkpoints
RESUME_WARNINGS = (".*is not resumable.*", ".*exists and is not empty.*")
# library deprecation notices a user can do nothing about
NOISE = (r".*isinstance\(treespec, LeafSpec\).*",)


def _write_status(output_dir: Path, **status: Any) -> None:
    if rank_zero_only.rank != 0:
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "status.json").write_text(json.dumps(status, indent=2) + "\n")


def train(cfg: DictConfig) -> dict[str, float]:
    """Train and validate as ``cfg`` says; return the final ``val/`` metrics.

    Raises:
        UserError: a mistake in the config, the data, the tokenizer, the model or the
            checkpoint, with one line saying which and how to fix it.
        TrainingInterrupted: SIGINT/SIGTERM (a checkpoint was written if training had started).
    """
    stop = StopOnSignal()
    stop.install()  # Ctrl-C during the (possibly long) setup stops cleanly too
    try:
        return _train(cfg, stop)
    finally:
        stop.uninstall()


def _train(cfg: DictConfig, stop: StopOnSignal) -> dict[str, float]:
    check_values(cfg)
    objective = instantiate(cfg.objective)
    check_config(cfg, objective)
    # built before anything loads, so a bad evaluator option fails at once
    evaluation: Evaluation | None = instantiate(cfg.evaluation) if cfg.get("evaluation") else None
    output_dir = Path(cfg.paths.output_dir)
    if rank_zero_only.rank == 0:  # written first: prefopt-export rebuilds the model from it
        output_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, output_dir / "config_resolved.yaml", resolve=True)
    # CPUs compute on denormal floats ~150x slower (a 1024² GEMM); a well-separated pair under a
    # sigmoid of a summed log-prob margin (CPO, measured) gives the rejected row a denormal
    # gradient, and the step then takes 5x longer
    torch.set_flush_denormal(bool(cfg.get("flush_denormal", True)))
    L.seed_everything(cfg.seed, workers=True)

    tokenizer = build_tokenizer(cfg.model)
    datamodule = instantiate(cfg.data, tokenizer=tokenizer)
    model, _ = build_model(cfg.model, cfg.get("peft"), tokenizer)
    if getattr(datamodule, "packing", False):
        check_packing_support(model)  # the model family and attention, now that they are known
    module = instantiate(
        cfg.module,
        model=model,
        objective=objective,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
    )
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    callbacks += [PrecomputeReference(), stop]  # the former acts only for reference=precomputed
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
    log_hyperparameters(
        trainer, cfg, metric_tags=(*SUMMARY_KEYS, *eval_keys), recipe=_choice("objective")
    )

    try:
        initial, final = _fit_and_validate(cfg, trainer, module, datamodule)
    finally:
        tensorboard.close(trainer)
    if cfg.get("save_hf_model", True):
        _save_hf(trainer, module, tokenizer, cfg, output_dir / "hf_model")
    if trainer.is_global_zero:
        _print_summary(final, initial, output_dir)
    return final


def _fit_and_validate(
    cfg: DictConfig, trainer: L.Trainer, module: PreferenceModule, datamodule
) -> tuple[dict[str, float], dict[str, float]]:
    """The step-0 validation (unless resuming), the fit, the final validation."""
    ckpt_path = cfg.get("ckpt_path")
    initial: dict[str, float] = {}
    if ckpt_path is None and cfg.get("validate_before_training", True):
        initial = _metrics(trainer.validate(module, datamodule=datamodule, verbose=False))
    with warnings.catch_warnings():
        for message in RESUME_WARNINGS if ckpt_path else ():
            warnings.filterwarnings("ignore", message=message)
        _fit(trainer, module, datamodule, ckpt_path)
    return initial, _metrics(trainer.validate(module, datamodule=datamodule, verbose=False))


def _fit(trainer: L.Trainer, module: PreferenceModule, datamodule, ckpt_path: str | None) -> None:
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except RuntimeError as err:
        if ckpt_path and "state_dict" in str(err):  # e.g. another model's weights
            first = str(err).strip().splitlines()[0]
            raise CheckpointError(
                f"ckpt_path={ckpt_path}: the checkpoint does not fit this run's model ({first}): "
                "resume with the config the checkpoint was trained with"
            ) from err
        raise
    if trainer.global_step == 0:
        raise TrainingError(
            "training ran 0 optimizer steps: check trainer.max_steps, trainer.max_epochs and "
            "trainer.limit_train_batches; nothing was saved as a trained model"
        )


def _metrics(results: list[dict[str, Any]]) -> dict[str, float]:
    return {k: float(v) for k, v in (results[0] if results else {}).items() if k.startswith("val/")}


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


def _print_summary(final: dict[str, float], initial: dict[str, float], output_dir: Path) -> None:
    since = " (change since the step-0 validation)" if initial else ""
    lines = []
    keys = [*SUMMARY_KEYS, *sorted(k for k in final if k.startswith("val/gen/"))]
    for key in keys:
        if key in final:
            change = f"  ({final[key] - initial[key]:+.4f})" if key in initial else ""
            lines.append(f"  {key:<36} {final[key]: .4f}{change}")
    print(f"final validation metrics{since}:\n" + "\n".join(lines))
    print(f"outputs: {output_dir}  (tensorboard --logdir {output_dir})")


def _choice(group: str) -> str | None:
    """The option of ``group`` Hydra composed (``None`` outside Hydra's app, e.g. in tests)."""
    if not HydraConfig.initialized():
        return None
    return HydraConfig.get().runtime.choices.get(group)


def _multirun() -> bool:
    return HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def _job(cfg: DictConfig) -> float | None:
    """One job: train, record the outcome in ``status.json``; returns ``cfg.optimized_metric``
    for sweepers such as Optuna (NaN for a job that failed on a user's mistake)."""
    output_dir = Path(cfg.paths.output_dir)
    _write_status(output_dir, status="running")
    try:
        final = train(cfg)
    except TrainingInterrupted as err:
        _write_status(output_dir, status="interrupted", step=err.step, signal=err.signum)
        raise
    except Exception as err:
        _write_status(output_dir, status="failed", error=describe(err))
        message = user_message(err)
        if message is None or debug():
            raise
        if not _multirun():
            exit_with_error(PROG, message)
        print(f"{PROG}: error: {output_dir.name}: {message}", file=sys.stderr)
        return math.nan  # the other jobs go on; the sweep exits with 1 at the end
    _write_status(output_dir, status="completed", metrics=final)
    metric = cfg.get("optimized_metric")
    return final.get(metric) if metric else None


def main() -> None:
    """``prefopt-train``: Hydra's app, with its errors and Ctrl-C as one line each."""
    if not debug():  # Hydra re-raises its errors to us instead of printing them itself
        os.environ["HYDRA_FULL_ERROR"] = os.environ[OWN_FULL_ERROR] = "1"
    for message in NOISE:
        warnings.filterwarnings("ignore", message=message)
    try:
        _job()
    except TrainingInterrupted as err:
        if rank_zero_only.rank == 0:
            resume = " (resume with ckpt_path=last and the same hydra.run.dir)" * bool(err.step)
            print(f"{PROG}: {err}{resume}", file=sys.stderr)
        sys.exit(err.exit_code)
    except Exception as err:
        message = user_message(err)
        if message is None or debug():
            raise
        exit_with_error(PROG, message)


if __name__ == "__main__":
    main()
