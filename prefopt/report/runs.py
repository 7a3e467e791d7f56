"""Runs of a sweep, as found on disk: config, status and validation curves of each job."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from prefopt.objectives import name_of_target

METRICS = (
    "val/margins/avg_logps",
    "val/accuracies/avg_logps",
    "val/logps/chosen",
    "val/logps/rejected",
    "val/nll_loss",
)
SKIP_DIRS = {"tensorboard", "checkpoints", "hf_model", ".hydra", ".submitit", "report"}

Curve = list[tuple[int, float]]


@dataclass
class Run:
    """One job of a sweep, as found on disk.

    Attributes:
        name: folder relative to the sweep dir (Hydra's override dirname).
        status: ``completed``, ``failed``, ``running`` or ``unfinished`` (no status, or
            "running" without a new event for ``stale_minutes``: a killed job).
        error: the failed job's exception, one line.
        objective: the objective's registered name (``orpo``, ``sft``, ``dpo``, ...).
        lam: ORPO's lambda (``None`` for ``sft``, whose loss has none, and ``dpo``).
        group: the config without the seed: equal for runs that differ only by seed.
        curves: ``val/`` tag -> ``[(step, value)]``, sorted, one value per step.
    """

    name: str
    status: str
    error: str | None = None
    objective: str | None = None
    lam: float | None = None
    lr: float | None = None
    seed: int | None = None
    group: str = ""
    curves: dict[str, Curve] = field(default_factory=dict)

    @property
    def arm(self) -> str:
        """``orpo``, ``sft (λ=0)`` for ORPO with lam 0 (exactly SFT), ``sft``, ``dpo``, ..."""
        if self.objective == "orpo" and self.lam == 0:
            return "sft (λ=0)"
        return self.objective or "?"

    @property
    def is_sft(self) -> bool:
        return self.arm.startswith("sft")

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
    """The ``val/`` scalars of every event file in ``tensorboard_dir`` (fit and final validate);
    a step logged more than once keeps the value written last."""
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


def _select(cfg: DictConfig, key: str) -> object:
    return OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)


def _config(run_dir: Path) -> tuple[DictConfig | None, str]:
    """The run's config (resolved if saved) and its group key: the config as composed, without
    ``seed``, so that runs with equal keys differ only by seed."""
    resolved, composed = run_dir / "config_resolved.yaml", run_dir / ".hydra" / "config.yaml"
    if composed.exists():  # unresolved: data.seed is still ${seed}, paths ${hydra:...}
        raw_cfg = OmegaConf.load(composed)
        cfg = OmegaConf.load(resolved) if resolved.exists() else raw_cfg
        raw = OmegaConf.to_container(raw_cfg, resolve=False)
    elif resolved.exists():  # a run made without Hydra's app: drop what the seed and dir set
        cfg = OmegaConf.load(resolved)
        raw = OmegaConf.to_container(cfg, resolve=False)
        raw.pop("paths", None)
        raw.get("data", {}).pop("seed", None)
    else:
        return None, f"<no config: {run_dir}>"
    raw.pop("seed", None)
    return cfg, json.dumps(raw, sort_keys=True, default=str).replace(str(run_dir.resolve()), "")


def _status(run_dir: Path, stale_minutes: float) -> tuple[str, str | None]:
    try:
        status = json.loads((run_dir / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return "unfinished", None
    state, error = status.get("status", "unfinished"), status.get("error")
    if state == "running":
        files = [run_dir / "status.json", *run_dir.glob("*.log"), *run_dir.glob("tensorboard/*")]
        last = max(f.stat().st_mtime for f in files if f.exists())
        if time.time() - last > stale_minutes * 60:
            state = "unfinished"
    return state, " ".join(error.split()) if error else None


def load_run(run_dir: Path, sweep_dir: Path, stale_minutes: float = 30.0) -> Run:
    """Everything the report needs about the run in ``run_dir``."""
    status, error = _status(run_dir, stale_minutes)
    cfg, group = _config(run_dir)
    run = Run(name=str(run_dir.relative_to(sweep_dir)) or ".", status=status, error=error)
    run.group = group
    run.curves = read_curves(run_dir / "tensorboard")
    if cfg is None:
        return run
    target = _select(cfg, "objective._target_")
    run.objective = (name_of_target(str(target)) or str(target)) if target else None
    lam, lr, seed = (_select(cfg, k) for k in ("objective.lam", "optimizer.lr", "seed"))
    run.lam = float(lam) if isinstance(lam, (int, float)) and run.objective != "sft" else None
    run.lr = float(lr) if isinstance(lr, (int, float)) else None
    run.seed = int(seed) if isinstance(seed, int) else None
    return run


def load_runs(sweep_dir: Path, stale_minutes: float = 30.0) -> list[Run]:
    """Every run under ``sweep_dir``, ordered by arm, lr, lambda, seed."""
    runs = [load_run(d, sweep_dir, stale_minutes) for d in find_run_dirs(sweep_dir)]
    return sorted(runs, key=sort_key)


def sort_key(run: Run) -> tuple:
    none_last = float("inf")
    return (not run.is_sft, run.arm, run.lr or none_last, run.lam or 0.0, run.seed or 0, run.name)
