"""Multiruns through the real CLI: one folder and TensorBoard run per job, paired arms, a failing
job that leaves the others alone, the report on the result, and the launcher/sweeper configs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
from tensorboard.plugins.hparams import plugin_data_pb2

from prefopt.cli.report import main as report_main
from tests.conftest import CONFIG_DIR, FAST

QUICK = [*FAST, "evaluation=[]", "save_hf_model=false"]
# keep the FAST settings out of the job folder names (as an experiment file would)
DEFAULT_EXCLUDED = yaml.safe_load((CONFIG_DIR / "hydra" / "default.yaml").read_text())["job"][
    "config"
]["override_dirname"]["exclude_keys"]
EXCLUDED = [*DEFAULT_EXCLUDED, *(o.split("=")[0] for o in QUICK)]
GRID = ["objective.lam=0,objective=orpo", "objective.lam=0.5,objective=orpo"]
GRID += ["objective.lam=0,objective=sft", "objective.lam=0.5,objective=sft"]


def multirun(sweep_dir: Path, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "prefopt.cli.train", "-m", *overrides, *QUICK]
        + [f"hydra.sweep.dir={sweep_dir}"]
        + [f"hydra.job.config.override_dirname.exclude_keys=[{','.join(EXCLUDED)}]"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # two sweeps share the 2 cores of CI
    )


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> dict[str, tuple[Path, int, str]]:
    """Two sweeps run side by side: objective x lambda (4 jobs) and a lambda sweep whose first
    job raises (2 jobs). ``name -> (dir, exit code, log)``. (hydra/launcher=parallel behaves the
    same but costs each worker a fresh torch import: only its config is tested here.)"""
    root = tmp_path_factory.mktemp("sweeps")
    procs = {
        "grid": multirun(root / "grid", "objective=orpo,sft", "objective.lam=0,0.5"),
        "failing": multirun(root / "failing", "objective.lam=-1,0.1"),
        "gamma": multirun(root / "gamma", "objective=simpo", "objective.gamma=0.5,1.0", "seed=0,1"),
    }
    results = {}
    for name, proc in procs.items():
        log, _ = proc.communicate(timeout=300)
        results[name] = (root / name, proc.returncode, log)
    return results


def status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


def test_every_job_has_its_own_folder_with_events_and_config(sweeps):
    sweep, returncode, log = sweeps["grid"]
    assert returncode == 0, log
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == sorted(GRID)
    for name in GRID:
        run = sweep / name
        assert status(run)["status"] == "completed"
        assert list((run / "tensorboard").glob("events.out.tfevents.*"))
        assert (run / "config_resolved.yaml").exists() and (run / ".hydra" / "config.yaml").exists()


def test_tensorboard_at_the_sweep_dir_lists_each_run_by_its_overrides_with_hparams(sweeps):
    sweep = sweeps["grid"][0]
    runs = EventMultiplexer().AddRunsFromDirectory(str(sweep)).Reload()
    assert sorted(runs.Runs()) == sorted(f"{name}/tensorboard" for name in GRID)
    for name in GRID:
        content = runs.GetAccumulator(f"{name}/tensorboard").PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(
            content["_hparams_/session_start_info"]
        ).session_start_info
        hparams = {k: getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
        lam, objective = (part.split("=")[1] for part in name.split(","))
        assert hparams["objective"] == objective
        assert hparams["objective.lam"] == float(lam)
        assert hparams["optimizer.lr"] == 1e-3 and hparams["seed"] == 42


def test_lambda_zero_is_sft_exactly_because_arms_see_the_same_data(sweeps):
    """Same seed, same data order and initial weights: ORPO with lambda 0 and SFT (whatever its
    lambda, which only scales rewards/*) end with identical lambda-free metrics."""
    sweep = sweeps["grid"][0]
    metrics = {name: status(sweep / name)["metrics"] for name in GRID}
    free = ("val/margins/avg_logps", "val/logps/chosen", "val/logps/rejected", "val/nll_loss")
    sft = metrics["objective.lam=0,objective=orpo"]
    for name in ("objective.lam=0,objective=sft", "objective.lam=0.5,objective=sft"):
        assert {k: metrics[name][k] for k in free} == pytest.approx({k: sft[k] for k in free})
    orpo = metrics["objective.lam=0.5,objective=orpo"]
    assert orpo["val/logps/rejected"] != pytest.approx(sft["val/logps/rejected"], rel=1e-5)


def test_a_failing_job_does_not_stop_the_others(sweeps):
    sweep, returncode, log = sweeps["failing"]
    assert returncode == 1  # the sweep summary exits with 1 once every job has run
    assert "Traceback" not in log
    assert "prefopt-train: error: objective.lam=-1: orpo: lam must be in [0, 1e+06], got -1" in log
    # the table of jobs and the report line, printed when the multirun ends
    table = log[log.index("job ") :].splitlines()
    assert table[0].split() == ["job", "status", "margin", "acc", "note"]
    rows = {line.split()[0]: line.split()[1] for line in table[1:3]}
    assert rows == {"objective.lam=-1": "failed", "objective.lam=0.1": "completed"}
    assert table[3] == f"report: prefopt-report {sweep}"
    assert status(sweep / "objective.lam=0.1")["status"] == "completed"
    assert status(sweep / "objective.lam=-1") == {
        "status": "failed",
        "error": "orpo: lam must be in [0, 1e+06], got -1",  # a ConfigError: its message alone
    }


def report(sweep: Path) -> dict[str, dict[str, str]]:
    """``prefopt-report SWEEP`` (in-process); the rows of ``runs.csv`` by run folder."""
    report_main([str(sweep)])
    with (sweep / "report" / "runs.csv").open() as f:
        return {row["run"]: row for row in csv.DictReader(f)}


def test_report_on_the_sweep_matches_the_event_files(sweeps):
    sweep = sweeps["grid"][0]
    rows = report(sweep)
    assert sorted(rows) == sorted(GRID)
    # labelled by the objective chosen and what was swept for it; SFT's lam only scales metrics
    assert rows["objective.lam=0,objective=orpo"]["arm"] == "orpo λ=0"
    assert rows["objective.lam=0.5,objective=orpo"]["arm"] == "orpo λ=0.5"
    assert rows["objective.lam=0.5,objective=sft"]["arm"] == "sft"
    assert rows["objective.lam=0,objective=sft"]["arm"] == "sft"
    for name, row in rows.items():
        acc = EventAccumulator(str(sweep / name / "tensorboard"), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in ("val/margins/avg_logps", "val/avg_logps/chosen", "val/nll_loss"):
            last = acc.Scalars(tag)[-1]
            assert float(row[f"final {tag}"]) == pytest.approx(last.value, rel=1e-6)
            assert last.value == pytest.approx(status(sweep / name)["metrics"][tag], rel=1e-6)
        assert row["last_step"] == "4" and row["status"] == "completed"
    for png in ("curves.png", "final_vs_lambda.png"):
        assert (sweep / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_marks_the_failed_job_with_its_error(sweeps):
    sweep = sweeps["failing"][0]
    rows = report(sweep)
    assert rows["objective.lam=-1"]["status"] == "failed"
    assert rows["objective.lam=-1"]["error"] == "orpo: lam must be in [0, 1e+06], got -1"
    assert rows["objective.lam=0.1"]["status"] == "completed"
    text = (sweep / "report" / "report.md").read_text()
    assert "- `objective.lam=-1`: orpo: lam must be in [0, 1e+06], got -1" in text


def compose_hydra(*overrides: str):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def test_launcher_and_sweeper_options_compose():
    parallel = compose_hydra("hydra/launcher=parallel").hydra.launcher
    assert parallel._target_.endswith("JoblibLauncher") and parallel.n_jobs == 2
    slurm = compose_hydra(
        "hydra/launcher=slurm", "trainer.num_nodes=2", "trainer.devices=4"
    ).hydra.launcher
    assert slurm._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (slurm.nodes, slurm.tasks_per_node, slurm.gpus_per_node) == (2, 4, 4)
    cfg = compose_hydra("hydra/sweeper=optuna_lam_lr")
    optuna = cfg.hydra.sweeper
    assert optuna._target_.endswith("OptunaSweeper") and optuna.direction == "maximize"
    assert set(optuna.params) == {"objective.lam", "optimizer.lr"}
    assert cfg.optimized_metric.startswith("val/")


def test_experiment_sweeps_define_their_grids():
    grid = compose_hydra("experiment=orpo_lambda_lr_sweep").hydra
    assert grid.mode.name == "MULTIRUN"
    assert grid.sweeper.params["objective.lam"] == "0,0.05,0.1,0.5"  # 0: the SFT arm, once per lr
    assert grid.sweeper.params["optimizer.lr"] == "5e-6,8e-6"
    ablation = compose_hydra("experiment=orpo_vs_sft").hydra
    assert dict(ablation.sweeper.params) == {"objective": "orpo,sft", "seed": "0,1,2"}


def test_a_simpo_gamma_sweep_is_tabulated_by_gamma(sweeps):
    sweep, returncode, log = sweeps["gamma"]
    assert returncode == 0, log
    report_main([str(sweep), "--baseline", "simpo γ=0.5"])
    with (sweep / "report" / "arms.csv").open() as f:
        arms = {row["arm"]: row for row in csv.DictReader(f)}
    assert list(arms) == ["simpo γ=0.5", "simpo γ=1"]
    assert all(row["seeds"] == "0 1" and row["completed"] == "2" for row in arms.values())
    with (sweep / "report" / "paired.csv").open() as f:
        (paired,) = list(csv.DictReader(f))
    assert paired["arm"] == "simpo γ=1" and paired["pairs val/margins/avg_logps"] == "2"
    assert (sweep / "report" / "final_vs_gamma.png").is_file()
