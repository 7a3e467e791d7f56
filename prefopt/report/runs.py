"""Runs of a sweep, as found on disk: config, status and validation curves of each job."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from prefopt.objectives import name_of_target, objective_class

# The metrics every objective logs that do not scale with a hyperparameter (the first five are
# the Markdown tables' columns; logps/* follow each objective's reduction, so only the CSV has
# them). Generation metrics (val/gen/...) are added when a run logged them.
METRICS = (
    "val/margins/avg_logps",
    "val/accuracies/avg_logps",
    "val/avg_logps/chosen",
    "val/avg_logps/rejected",
    "val/nll_loss",
    "val/logps/chosen",
    "val/logps/rejected",
)
SHOWN = METRICS[:5]
GENERATION_PREFIX = "val/gen/"
SKIP_DIRS = {"tensorboard", "checkpoints", "hf_model", ".hydra", ".submitit", "report"}
# config keys that never define an arm: the seed (paired repeats), where the run writes, and the
# settings that only say how long or how often to validate and log
NOT_ARM_KEYS = ("seed", "data.seed", "paths.", "hydra.", "callbacks.", "logger.", "ckpt_path")

Curve = list[tuple[int, float]]


@dataclass
class Run:
    """One job of a sweep, as found on disk.

    Attributes:
        name: folder relative to the sweep dir (Hydra's override dirname).
        status: ``completed``, ``failed``, ``interrupted``, ``running`` or ``unfinished`` (no
            status, or "running" without a new event for ``stale_minutes``: a killed job).
        error: the failed job's error, one line.
        step: the step an interrupted job stopped at.
        objective: the objective's registered name (``orpo``, ``simpo``, ``weighted``, ...).
        recipe: the ``objective`` config the job chose (``objective=rpo``), from Hydra's record
            of the job; it names the arm (an ``rpo`` run's objective is ``weighted``).
        config: the composed config flattened to ``{dotted.key: value}``, without the seed and
            the output paths (equal for runs that differ only by seed).
        ignored: objective hyperparameters that only scale metrics (e.g. SFT's ``lam``): runs
            that differ only in them are one arm.
        seed: the run's seed.
        curves: ``val/`` tag -> ``[(step, value)]``, sorted, one value per step.
        label: the arm (set by :func:`prefopt.report.arms.label_arms`).
    """

    name: str
    status: str
    error: str | None = None
    step: int | None = None
    objective: str | None = None
    recipe: str | None = None
    config: dict[str, object] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()
    seed: int | None = None
    curves: dict[str, Curve] = field(default_factory=dict)
    label: str = ""

    @property
    def arm_name(self) -> str | None:
        """What the arm is called: the chosen objective config, else the objective's name."""
        return self.recipe or self.objective

    def final(self, tag: str) -> float | None:
        curve = self.curves.get(tag)
        return curve[-1][1] if curve else None

    def best_step(self, tag: str) -> int | None:
        """Step of the best value of ``tag`` (lowest for a ``loss`` tag, else highest)."""
        curve = self.curves.get(tag)
        if not curve:
            return None
        sign = -1.0 if "loss" in tag else 1.0
        return max(reversed(curve), key=lambda point: sign * point[1])[0]  # ties: the later

    def at(self, tag: str, step: int | None) -> float | None:
        return next((v for s, v in self.curves.get(tag, []) if s == step), None)

    @property
    def last_step(self) -> int | None:
        return max((curve[-1][0] for curve in self.curves.values()), default=None)


def find_run_dirs(sweep_dir: Path) -> list[Path]:
    """Folders under ``sweep_dir`` (itself included) that hold a run: a ``.hydra`` folder, a
    ``status.json`` or a ``config_resolved.yaml``."""
    found = []
    for root, dirs, files in os.walk(sweep_dir):
        if ".hydra" in dirs or "status.json" in files or "config_resolved.yaml" in files:
            found.append(Path(root))
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
    return sorted(found)


def read_curves(tensorboard_dir: Path) -> dict[str, Curve]:
    """The ``val/`` scalars of every event file in ``tensorboard_dir``; a step logged more than
    once keeps the value written last."""
    if not tensorboard_dir.is_dir():
        return {}
    acc = EventAccumulator(str(tensorboard_dir), size_guidance={"scalars": 0})
    acc.Reload()
    curves = {}
    for tag in acc.Tags()["scalars"]:
        if tag.startswith("val/"):
            by_step = {event.step: event.value for event in acc.Scalars(tag)}
            curves[tag] = sorted(by_step.items())
    return curves


def _flatten(node: object, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict):
        out: dict[str, object] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {
        prefix[:-1]: node if isinstance(node, (int, float, str, bool, type(None))) else str(node)
    }


def _config(run_dir: Path) -> tuple[DictConfig | None, dict[str, object]]:
    """The run's config (resolved if saved) and its flattened composed form without the keys
    that never define an arm (the seed, the paths, ...)."""
    resolved, composed = run_dir / "config_resolved.yaml", run_dir / ".hydra" / "config.yaml"
    if composed.exists():  # unresolved: data.seed is still ${seed}, paths ${hydra:...}
        raw_cfg = OmegaConf.load(composed)
        cfg = OmegaConf.load(resolved) if resolved.exists() else raw_cfg
    elif resolved.exists():  # a run made without Hydra's app
        cfg = raw_cfg = OmegaConf.load(resolved)
    else:
        return None, {}
    flat = _flatten(OmegaConf.to_container(raw_cfg, resolve=False))
    flat = {k: v for k, v in flat.items() if not k.startswith(NOT_ARM_KEYS)}
    return cfg, flat


def _status(run_dir: Path, stale_minutes: float) -> dict[str, object]:
    try:
        status = json.loads((run_dir / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {"status": "unfinished"}
    if status.get("status") == "running":
        files = [run_dir / "status.json", *run_dir.glob("*.log"), *run_dir.glob("tensorboard/*")]
        last = max(f.stat().st_mtime for f in files if f.exists())
        if time.time() - last > stale_minutes * 60:
            status["status"] = "unfinished"
    return status


def _select(cfg: DictConfig, key: str) -> object:
    return OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)


def load_run(run_dir: Path, sweep_dir: Path, stale_minutes: float = 30.0) -> Run:
    """Everything the report needs about the run in ``run_dir``."""
    status = _status(run_dir, stale_minutes)
    error = status.get("error")
    cfg, flat = _config(run_dir)
    run = Run(
        name=str(run_dir.relative_to(sweep_dir)) or ".",
        status=str(status.get("status", "unfinished")),
        error=" ".join(str(error).split()) if error else None,
        step=status.get("step") if isinstance(status.get("step"), int) else None,
        config=flat,
        curves=read_curves(run_dir / "tensorboard"),
    )
    if cfg is None:
        return run
    target = _select(cfg, "objective._target_")
    run.objective = (name_of_target(str(target)) or str(target)) if target else None
    if run.objective and name_of_target(str(target)):
        run.ignored = tuple(getattr(objective_class(run.objective), "metrics_only", ()))
    seed = _select(cfg, "seed")
    run.seed = int(seed) if isinstance(seed, int) else None
    run.recipe = _choice(run_dir, "objective")
    return run


def _choice(run_dir: Path, group: str) -> str | None:
    """The option of ``group`` Hydra composed for the job (``None``: not recorded)."""
    hydra_file = run_dir / ".hydra" / "hydra.yaml"
    if not hydra_file.is_file():
        return None
    choice = OmegaConf.select(OmegaConf.load(hydra_file), f"hydra.runtime.choices.{group}")
    return str(choice) if isinstance(choice, str) else None


def metrics_of(runs: list[Run]) -> list[str]:
    """:data:`METRICS` and every generation metric a run logged."""
    generation = sorted({t for r in runs for t in r.curves if t.startswith(GENERATION_PREFIX)})
    return [*METRICS, *generation]
