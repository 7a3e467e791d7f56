"""Callbacks seen from a run: dropped-row counts and the precomputed reference in TensorBoard and
checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from prefopt.cli.train import train

GOOD = [
    {"prompt": f"Is {n} odd or even?", "chosen": f"{n} is odd.", "rejected": f"{n} is even."}
    for n in range(1, 41, 2)
]
BAD = [
    {"prompt": "Is 2 odd or even?", "rejected": "2 is odd."},  # missing_field
    {"prompt": None, "chosen": "4 is even.", "rejected": "4 is odd."},  # missing_field
    {"prompt": "Is 6 odd or even?", "chosen": " ", "rejected": "6 is odd."},  # empty_response
    {"prompt": "Is 8 odd or even?", "chosen": "8 is even.", "rejected": "8 is even."},  # identical
    {"prompt": "Is 10 odd or even?", "chosen": 10, "rejected": "10 is odd."},  # bad_type
]


def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def test_dropped_rows_are_counted_in_tensorboard_per_reason(make_cfg, tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in GOOD + BAD))
    cfg = make_cfg("data=local_jsonl", f"data.path={data}", "data.eval_fraction=0.25")
    train(cfg)
    scalars = _scalars(Path(cfg.paths.output_dir))
    counts: dict[str, float] = {}
    for tag, points in scalars.items():
        if tag.startswith("data/skipped/"):
            assert [step for step, _ in points] == [0]
            reason = tag.rsplit("/", 1)[1]
            counts[reason] = counts.get(reason, 0.0) + points[0][1]
    expected = {"missing_field": 2, "empty_response": 1, "identical_responses": 1, "bad_type": 1}
    assert counts == expected  # summed over the train and eval splits


def test_the_precomputed_reference_is_stored_in_checkpoints_and_used_by_the_loss(make_cfg):
    cfg = make_cfg("objective=dpo", "data.builtin.train_size=12", "data.builtin.eval_size=8")
    train(cfg)
    run = Path(cfg.paths.output_dir)
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    (state,) = [
        v for k, v in checkpoint["callbacks"].items() if k.startswith("PrecomputeReference")
    ]
    chosen, rejected = state["logps"]["train"]
    assert chosen.shape == rejected.shape == (12,) and len(state["logps"]["eval"][0]) == 8
    assert (chosen < 0).all() and (rejected < 0).all()  # summed log-probs of real responses
    # at the first step the policy is the reference: every reward is exactly 0
    first = {tag: points[0] for tag, points in _scalars(run).items()}
    assert first["train/rewards/chosen"] == (0, 0.0)
    assert first["train/rewards/margins"] == (0, 0.0)
