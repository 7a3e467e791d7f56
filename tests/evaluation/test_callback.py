"""The Evaluation callback in real runs: what lands in TensorBoard and status.json, when it runs,
and that it leaves training alone (same train/ losses with and without it)."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import prefopt.evaluation.callback as callback_module
from prefopt.cli.errors import user_error
from prefopt.cli.train import train
from prefopt.errors import ConfigError
from prefopt.evaluation import UnknownEvaluatorError, available, get_evaluator, registry
from prefopt.evaluation.exact_match import NORMALIZERS
from prefopt.evaluation.runtime import eval_mode, gather, sample_positions, shard
from tests.conftest import CONFIG_DIR, FAST, ROOT, compose_train
from tests.evaluation.helpers import make_row

EVAL_CONFIGS = CONFIG_DIR / "evaluation"
# LoRA dropout: training draws from the torch generator at every step, so evaluation's sampling
# would change the later losses if it shared the generator
DROPOUT = ["peft=lora", "peft.dropout=0.1", "model.disable_dropout=false"]


def _events(run: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def _tables(acc: EventAccumulator) -> list[tuple[int, str]]:
    return [
        (e.step, e.tensor_proto.string_val[0].decode())
        for e in acc.Tensors("val/gen/samples/text_summary")
    ]


def test_every_registered_evaluator_has_a_config_and_vice_versa():
    assert sorted(p.stem for p in EVAL_CONFIGS.glob("*.yaml")) == available()
    for name in available():
        text = (EVAL_CONFIGS / f"{name}.yaml").read_text()
        assert text.startswith(f"# @package evaluation.{name}\n"), name  # merges under its key
        target = OmegaConf.create(text)._target_
        assert target.rsplit(".", 1)[0] == f"prefopt.evaluation.{name}"


def test_unknown_evaluator_lists_the_available_ones():
    with pytest.raises(UnknownEvaluatorError) as err:
        get_evaluator("exact")
    assert str(err.value) == f"unknown evaluator 'exact'; available: {', '.join(available())}"


def test_evaluators_compose_under_their_own_keys_with_the_shared_settings(tmp_path):
    cfg = compose_train(tmp_path, ["evaluation=[exact_match,reward_model]"], fast=False)
    assert set(cfg.evaluation) >= {"every_n_val", "num_prompts", "exact_match", "reward_model"}
    assert "length" not in cfg.evaluation
    default = compose_train(tmp_path, [], fast=False).evaluation
    assert {"exact_match", "length"} <= set(default) and default.num_prompts == 64
    assert "exact_match" not in compose_train(tmp_path, ["evaluation=[]"], fast=False).evaluation
    with pytest.raises(InstantiationException) as err:  # prefopt-train prints the one line
        train(compose_train(tmp_path, ["evaluation.exact_match.normalize=x"]))
    assert isinstance(user_error(err.value), ConfigError)
    assert str(user_error(err.value)).startswith("evaluation.exact_match.normalize='x' is unknown")


def test_the_documented_example_evaluator_registers_and_scores(tokenizer):
    """docs/evaluation.md, "Adding an evaluator": its code and config, as written there."""
    doc = (ROOT / "docs" / "evaluation.md").read_text().split("## Adding an evaluator")[1]
    code = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
    config = re.search(r"```yaml\n(.*?)```", doc, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/evaluation.md", "exec"), namespace)
    try:
        assert "contains" in available()
        node = OmegaConf.create(config)
        assert node._target_ == "prefopt.evaluation.contains.Contains"
        evaluator = namespace["Contains"](text=node.text)
        rows = [make_row(tokenizer, g) for g in ("Sorry, no.", "437 is odd.", "so SORRY", "?")]
        values = evaluator.score(rows, policy=None)
        assert evaluator.summarize(values, policy=None) == {"rate": 0.5}
    finally:
        registry._REGISTRY.pop("contains")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["callbacks.model_checkpoint.monitor=val/gen/length/mean_tokens"],
            "monitor='val/gen/length/mean_tokens' needs evaluation.every_n_val=1 (it is 2)",
        ),
        (
            ["callbacks.model_checkpoint.monitor=val/gen/reward_model/win_rate"],
            "'reward_model' is not among the selected evaluators: add it",
        ),
    ],
)
def test_a_checkpoint_monitor_on_val_gen_needs_an_evaluation_at_every_validation(
    tmp_path, overrides, message
):
    with pytest.raises(ConfigError, match=re.escape(message)):
        train(compose_train(tmp_path, overrides))


def test_sample_shards_and_gather_cover_the_sample_once():
    positions = sample_positions(200, 64, seed=0)
    assert len(set(positions)) == 64 and positions == sorted(positions)
    assert positions == sample_positions(200, 64, seed=0) != sample_positions(200, 64, seed=1)
    assert sample_positions(5, 64, seed=0) == [0, 1, 2, 3, 4]
    # 5 items on 2 ranks: 3 each, position 5 is padding (dropped when gathered)
    assert shard(5, 2, 0) == [0, 2, 4] and shard(5, 2, 1) == [1, 3, 5]
    parts = [(p, f"row{p}") for p in [*shard(5, 2, 1), *shard(5, 2, 0)]]
    assert gather(parts, 5, world_size=1) == [f"row{p}" for p in range(5)]


def test_eval_mode_restores_each_submodules_own_flag():
    model = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(2, 2))
    model.train()
    model[1].eval()  # a submodule kept in eval mode on purpose
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == [True, True, False]


def test_prefopt_train_logs_exact_match_during_and_after_training(tmp_path):
    """The CLI: val/gen/exact_match/* in TensorBoard at each evaluation, the sample table, the
    HParams columns, and the final values in status.json."""
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "prefopt.cli.train", *FAST, "evaluation=exact_match"]
        + ["evaluation.every_n_val=1", "save_hf_model=false", f"hydra.run.dir={run}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    acc = _events(run)
    accuracy = [(e.step, e.value) for e in acc.Scalars("val/gen/exact_match/accuracy")]
    # at the step-0 validation, at both validations during training (after optimizer steps 2
    # and 4; val/ scalars are logged at the steps done) and at the final one (step 4 again)
    assert [step for step, _ in accuracy] == [0, 2, 4, 4]
    assert [e.step for e in acc.Scalars("val/loss")] == [0, 2, 4, 4]
    assert not any(t.startswith("val/gen/length/") for t in acc.Tags()["scalars"])
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "completed"
    assert status["metrics"]["val/gen/exact_match/accuracy"] == pytest.approx(accuracy[-1][1])
    assert "val/gen/exact_match/closer_to_chosen" in status["metrics"]
    assert "val/gen/exact_match/accuracy" in proc.stdout  # the printed summary
    # the table: one per evaluation, at its scalars' step (the final one evaluates the weights of
    # step 4 again: not redrawn), the first 4 prompts of the sample (FAST: num_prompts=4); the
    # accuracy is the mean of its match column
    tables = _tables(acc)
    assert [step for step, _ in tables] == [0, 2, 4]
    lines = tables[-1][1].splitlines()
    assert lines[0] == "| prompt | generation | reference | exact_match |"
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines[2:]]
    assert len(cells) == 4
    norm = NORMALIZERS["lower_strip_punct"]
    for prompt, generation, reference, match in cells:
        assert re.fullmatch(r"(Is|Which|What|Last).*\?", prompt)  # the built-in questions
        assert float(match) == float(norm(generation) == norm(reference))
    assert accuracy[-1][1] == pytest.approx(sum(float(c[3]) for c in cells) / 4)
    raw = b"".join(p.read_bytes() for p in (run / "tensorboard").glob("events*"))
    assert b"val/gen/exact_match/accuracy" in raw and b"val/gen/exact_match/closer_to_chosen" in raw


def test_every_nth_validation_and_the_end_reuses_the_last_evaluation(tmp_path, monkeypatch):
    calls = []
    real = callback_module.generate
    monkeypatch.setattr(
        callback_module, "generate", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    cfg = compose_train(tmp_path / "run", ["trainer.max_steps=8", "evaluation=[length]"])
    # the step-0 validation evaluates; then validations at steps 2, 4, 6, 8 with every_n_val=2;
    # then the final one, at step 8 again: the values of step 8, not generated again
    final = train(cfg)
    acc = _events(Path(cfg.paths.output_dir))
    mean_tokens = acc.Scalars("val/gen/length/mean_tokens")
    assert [e.step for e in mean_tokens] == [0, 4, 8, 8] and len(calls) == 3
    assert final["val/gen/length/mean_tokens"] == mean_tokens[-1].value
    assert 1 <= final["val/gen/length/mean_tokens"] <= 8  # FAST: max_new_tokens=8
    assert [step for step, _ in _tables(acc)] == [0, 4, 8]


def _train_scalars(run: Path) -> dict[tuple[str, int], float]:
    acc = _events(run)
    return {
        (tag, e.step): e.value
        for tag in acc.Tags()["scalars"]
        if tag.startswith("train/")
        for e in acc.Scalars(tag)
    }


def test_evaluation_leaves_the_training_losses_unchanged(tmp_path, monkeypatch):
    """Same seed, sampled generation at every validation (steps 2, 4, 6 of 8), LoRA dropout:
    every train/ scalar is the same as without evaluation; without the forked generators not."""
    common = [*DROPOUT, "trainer.max_steps=8", "save_hf_model=false"]
    sampled = ["evaluation=[exact_match,length]", "evaluation.do_sample=true"]
    sampled += ["evaluation.every_n_val=1"]
    train(compose_train(tmp_path / "without", [*common, "evaluation=[]"]))
    train(compose_train(tmp_path / "with", [*common, *sampled]))
    without, with_ = _train_scalars(tmp_path / "without"), _train_scalars(tmp_path / "with")
    assert ("train/loss", 7) in without and len(without) > 50
    assert with_ == without  # exactly
    # step 0, the validations at steps 2, 4, 6, 8, and the final one
    assert len(_events(tmp_path / "with").Scalars("val/gen/length/mean_tokens")) == 6

    monkeypatch.setattr(callback_module, "isolated_rng", lambda seed: contextlib.nullcontext())
    train(compose_train(tmp_path / "shared_rng", [*common, *sampled]))
    leaked = _train_scalars(tmp_path / "shared_rng")
    # the evaluations draw from the training generators: the test can see a leak (not at the
    # first step: LoRA's B starts at zero, so its dropout mask cannot change that loss)
    assert leaked[("train/loss", 0)] == without[("train/loss", 0)]
    assert leaked[("train/loss", 7)] != without[("train/loss", 7)]
