"""The training app end to end: compose configs/train.yaml, train a few steps, check outputs."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.errors import MissingConfigException
from hydra.utils import instantiate
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from prefopt.cli.train import train
from prefopt.errors import ConfigError
from prefopt.objectives.base import METRIC_NAMES
from tests.conftest import CONFIG_DIR, assert_generates, compose_train


def _events(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def _curve(acc: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in acc.Scalars(tag)]


@pytest.mark.parametrize("objective", ["orpo", "sft", "dpo"])
def test_every_objective_trains_and_logs_the_documented_tags(make_cfg, objective):
    cfg = make_cfg(f"objective={objective}")
    final = train(cfg)
    run = Path(cfg.paths.output_dir)
    acc = _events(run)
    tags = set(acc.Tags()["scalars"])
    for stage in ("train", "val"):
        for name in ("loss", *METRIC_NAMES):
            assert f"{stage}/{name}" in tags, f"{stage}/{name} missing"
    assert "lr-AdamW/decay" in tags
    for key, value in final.items():  # what train() returns is what TensorBoard shows last
        assert _curve(acc, key)[-1] == (4, pytest.approx(value, rel=1e-6)), key
    if objective == "dpo":  # at step 1 the policy is its reference: loss log 2, rewards 0
        assert _curve(acc, "train/loss")[0] == (0, pytest.approx(math.log(2), abs=1e-6))
        assert _curve(acc, "train/rewards/margins")[0] == (0, 0.0)
    else:  # rewards are lam x mean log-probs, and the NLL fell from the first validation
        lam = cfg.objective.lam
        assert final["val/rewards/margins"] == pytest.approx(
            lam * final["val/margins/avg_logps"], rel=1e-5
        )
        nll = _curve(acc, "val/nll_loss")
        assert nll[-1][1] < nll[0][1]
    assert (run / "checkpoints" / "last.ckpt").exists()
    assert (run / "config_resolved.yaml").exists()


def test_tensorboard_holds_hparams_generations_and_final_values(make_cfg):
    cfg = make_cfg("objective.lam=0.25", "optimizer.lr=2e-3")
    final = train(cfg)
    acc = _events(Path(cfg.paths.output_dir))
    # the last val/ scalar equals what train() returned
    last = acc.Scalars("val/margins/avg_logps")[-1]
    assert last.value == pytest.approx(final["val/margins/avg_logps"], rel=1e-5)
    assert last.step == 4
    # HParams: the plugin data names lambda, lr, objective and the val/ metric columns
    raw = b"".join(
        open(p, "rb").read() for p in (Path(cfg.paths.output_dir) / "tensorboard").glob("events*")
    )
    assert b"hparams" in raw and b"objective.lam" in raw and b"optimizer.lr" in raw
    assert b"val/margins/avg_logps" in raw
    # the default evaluators' sample table (greedy generations of eval prompts) and scalars
    assert "val/gen/samples/text_summary" in acc.Tags()["tensors"]
    assert {"val/gen/exact_match/accuracy", "val/gen/length/mean_tokens"} <= set(final)
    assert b"val/gen/exact_match/accuracy" in raw  # an HParams column too


def test_exported_model_loads_with_transformers_and_generates(make_cfg):
    cfg = make_cfg()
    train(cfg)
    assert_generates(Path(cfg.paths.output_dir) / "hf_model", new_tokens=5)


def test_dpo_with_a_reference_model_in_memory_matches_precomputed(make_cfg, tmp_path):
    """Both reference sources give the same reference log-probs, hence the same training."""
    a = train(make_cfg("objective=dpo", "module.reference=precomputed"))
    b = train(compose_train(tmp_path / "b", ["objective=dpo", "module.reference=model"]))
    for key in ("val/loss", "val/rewards/margins", "val/logps/chosen"):
        assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key


def test_same_seed_same_result_and_other_seed_differs(make_cfg, tmp_path):
    a = train(make_cfg("seed=3"))
    b = train(compose_train(tmp_path / "b", ["seed=3"]))
    c = train(compose_train(tmp_path / "c", ["seed=4"]))
    assert a == b
    assert a["val/loss"] != c["val/loss"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            ["data.max_prompt_length=64", "data.max_length=64"],
            "data.max_prompt_length (64) must be smaller than data.max_length (64)",
        ),
        (
            ["objective=dpo", "module.reference=none"],
            "objective 'dpo' needs a reference but module.reference='none'",
        ),
        (["module.nll_scope=prompt"], "module.nll_scope='prompt' is not one of: full"),
    ],
)
def test_impossible_config_fails_before_loading_in_one_line(make_cfg, override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train(make_cfg(*override))


def test_cli_prints_one_line_error_and_exits_2(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "prefopt.cli.train",
            "data.max_prompt_length=64",
            "data.max_length=64",
            f"hydra.run.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "prefopt-train: error: data.max_prompt_length (64) must be smaller than "
        "data.max_length (64): no room would be left for the response"
    )
    assert '"status": "failed"' in (tmp_path / "status.json").read_text()


def test_unknown_group_option_lists_the_available_ones(tmp_path):
    with pytest.raises(MissingConfigException) as err:
        compose_train(tmp_path, ["objective=orp"])
    assert "orpo" in str(err.value) and "sft" in str(err.value) and "dpo" in str(err.value)


EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
# Run any experiment on the offline defaults: its objective, optimiser, scheduler and module
# settings stay; the model, data, precision and strategy become the tiny CPU ones.
OFFLINE = [
    "model=tiny",
    "data=builtin",
    "trainer=cpu",
    "strategy=auto",
    "data.path=builtin",
    "data.train_split=train",
    "data.eval_split=null",
    "data.max_length=64",
    "data.max_prompt_length=48",
    "data.drop_prompts_longer_than=null",
    "data.batch_size=4",
    "trainer.max_epochs=-1",
    "optimizer.lr=1e-3",
]


def test_experiments_exist():
    assert {"orpo_lambda_lr_sweep", "orpo_vs_sft", "paper_mistral_orpo_beta"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_config_trains_a_few_steps(tmp_path, name):
    real = compose_train(tmp_path / "real", [f"experiment={name}"], fast=False)
    assert real.objective._target_.startswith("prefopt.objectives.")
    cfg = compose_train(tmp_path / "run", [f"experiment={name}", *OFFLINE])
    assert cfg.objective == real.objective
    assert cfg.scheduler == real.scheduler
    final = train(cfg)
    assert all(math.isfinite(v) for v in final.values()) and "val/loss" in final
    # the experiment's learning-rate schedule is the one the run followed, step by step
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.optimizer.lr)
    schedule = instantiate(cfg.scheduler)(optimizer=optimizer, num_training_steps=4)
    expected = []
    for _ in range(4):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    logged = [value for _, value in _curve(_events(Path(cfg.paths.output_dir)), "lr-AdamW/decay")]
    assert logged == pytest.approx(expected, rel=1e-6)


def test_paper_recipe_is_the_official_one(tmp_path):
    cfg = compose_train(tmp_path, ["experiment=paper_mistral_orpo_beta"], fast=False)
    assert cfg.objective.lam == 0.1 and cfg.optimizer.lr == 5e-6
    assert (cfg.scheduler._target_, cfg.scheduler.name) == (
        "transformers.get_scheduler",
        "inverse_sqrt",
    )
    assert cfg.scheduler.num_warmup_steps == 200
    assert (cfg.data.max_length, cfg.data.drop_prompts_longer_than) == (2048, 1792)
    assert cfg.model.name_or_path == "mistralai/Mistral-7B-v0.1"


def test_progress_records_and_the_summary_a_person_can_read(prefopt_train, tmp_path):
    """stdout is not a terminal here: a record every 2 steps and after each validation goes to
    stdout and train.log; the summary leads with the λ-free metrics and their change."""
    code, out, err = prefopt_train("callbacks.progress_bar.every_n_steps=2")
    assert code == 0, err[-2000:]
    records = [line.split(" - ", 1)[1] for line in out.splitlines() if "prefopt.progress" in line]
    assert [r.split(" | ")[0] for r in records] == [
        "validation at step 0",
        "step 2/4",
        "validation at step 2",
        "step 4/4",
        "validation at step 4",
        "validation at step 4",  # the final validation
    ]
    step = records[1].split(" | ")
    assert [part.split(" ")[0] for part in step[1:4]] == ["loss", "margin", "acc"]
    assert step[4].endswith(" tok/s") and step[-1].startswith("ETA ")
    log_text = (tmp_path / "run" / "train.log").read_text()
    assert all(r in log_text for r in records)
    summary = out[out.index("final validation metrics") :].splitlines()
    assert summary[0] == "final validation metrics (change since the step-0 validation):"
    assert summary[1].split()[0] == "val/accuracies/avg_logps"
    assert summary[1].split()[2].startswith(("(+", "(-"))
    assert "Epoch" not in out + err


def _flushes_denormals() -> bool:
    return (torch.tensor([1e-39]) * 1.0).item() == 0.0


@pytest.mark.skipif(not torch.set_flush_denormal(False), reason="CPU without flush-to-zero")
def test_denormals_are_flushed_during_training_unless_switched_off(make_cfg):
    """A GEMM over denormal floats is ~150x slower on CPU, and CPO's sigmoid of a summed margin
    makes them (a bench step went from 1 s to 6 s): `flush_denormal` (default true) counts them
    as zero for the run; `flush_denormal=false` keeps IEEE behaviour."""
    try:
        train(make_cfg("flush_denormal=false"))
        assert not _flushes_denormals()
        train(make_cfg())
        assert _flushes_denormals()
    finally:
        torch.set_flush_denormal(False)
