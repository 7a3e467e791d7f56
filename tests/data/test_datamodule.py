"""PreferenceDataModule: sources, bad rows, fatal errors, splits, loaders, reference log-probs."""

from __future__ import annotations

import json
import logging
import types
from pathlib import Path

import pandas as pd
import pytest
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch

from prefopt.data import PreferenceDataModule


def _rows(n: int) -> list[dict[str, str]]:
    return [
        {
            "prompt": f"Is {i} odd?",
            "chosen": f"{i} is {'odd' if i % 2 else 'even'}.",
            "rejected": f"{i} is {'even' if i % 2 else 'odd'}.",
        }
        for i in range(n)
    ]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _setup(path, tokenizer, cache_dir, **kwargs) -> PreferenceDataModule:
    dm = PreferenceDataModule(tokenizer, path=str(path), cache_dir=cache_dir, **kwargs)
    dm.setup("fit")
    return dm


def test_bad_rows_are_dropped_counted_and_logged(fixtures, builtin_tokenizer, cache_dir, caplog):
    with caplog.at_level(logging.INFO, logger="prefopt.data"):
        dm = _setup(fixtures / "bad_rows.jsonl", builtin_tokenizer, cache_dir)
    assert dm.skipped == {
        "train": {"bad_type": 1, "empty_response": 1, "identical_responses": 1, "missing_field": 2}
    }
    assert len(dm.train_dataset) == 2
    assert dm.lengths(dm.train_dataset) == [
        len(r["prompt_input_ids"]) + max(len(r["chosen_input_ids"]), len(r["rejected_input_ids"]))
        for r in dm.train_dataset
    ]
    assert (
        builtin_tokenizer.decode(dm.train_dataset[1]["prompt_input_ids"])
        == "<s>What comes after 9?"
    )
    lines = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert lines == [
        f"{fixtures / 'bad_rows.jsonl'} (train split): dropped {n} of 7 rows: {reason}"
        for reason, n in dm.skipped["train"].items()
    ]


def test_response_truncated_away_and_prompt_too_long(tmp_path, builtin_tokenizer, cache_dir):
    rows = _rows(3) + [{"prompt": "x" * 40, "chosen": "a", "rejected": "b"}]
    path = _write_jsonl(tmp_path / "pairs.jsonl", rows)
    dm = _setup(path, builtin_tokenizer, cache_dir, max_length=30, max_prompt_length=None)
    assert dm.skipped == {"train": {"response_truncated_away": 1}}
    dm = _setup(
        path,
        builtin_tokenizer,
        cache_dir,
        max_length=60,
        max_prompt_length=30,
        drop_prompts_longer_than=20,
    )
    assert dm.skipped == {"train": {"prompt_too_long": 1}} and len(dm.train_dataset) == 3


@pytest.mark.parametrize(
    ("name", "exception", "message"),
    [
        (
            "malformed.jsonl",
            ValueError,
            r"malformed.jsonl: line 3: invalid JSON: Expecting property name",
        ),
        ("absent.jsonl", FileNotFoundError, r"data.path=.*absent.jsonl: no such file or folder"),
    ],
)
def test_fatal_file_errors_are_one_line_with_file_and_line(
    fixtures, builtin_tokenizer, cache_dir, name, exception, message
):
    with pytest.raises(exception, match=message) as err:
        _setup(fixtures / name, builtin_tokenizer, cache_dir)
    assert "\n" not in str(err.value)


def test_malformed_json_array_names_the_line(tmp_path, builtin_tokenizer, cache_dir):
    path = tmp_path / "pairs.json"
    path.write_text(
        '[\n{"prompt": "a", "chosen": "b", "rejected": "c"},\n{"prompt": "a" "chosen"}\n]\n'
    )
    with pytest.raises(ValueError, match=r"pairs.json: line 3: invalid JSON"):
        _setup(path, builtin_tokenizer, cache_dir)


def test_non_object_line_fails(tmp_path, builtin_tokenizer, cache_dir):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"pairs.jsonl: line 3: expected a JSON object"):
        _setup(path, builtin_tokenizer, cache_dir)


def test_unknown_column_lists_the_available_ones(fixtures, builtin_tokenizer, cache_dir):
    with pytest.raises(
        ValueError,
        match=r"columns maps prompt -> 'instruction', which is not a column; "
        r"available: system, question, chosen, rejected",
    ):
        _setup(
            fixtures / "orca_columns.jsonl",
            builtin_tokenizer,
            cache_dir,
            columns={"prompt": "instruction"},
        )


def test_nothing_usable_left_fails_with_the_counts(tmp_path, builtin_tokenizer, cache_dir):
    path = _write_jsonl(
        tmp_path / "same.jsonl", [{"prompt": "a", "chosen": "b", "rejected": "b"}] * 2
    )
    with pytest.raises(
        ValueError,
        match=r"same.jsonl \(train split\): no usable rows left \(identical_responses: 2\)",
    ):
        _setup(path, builtin_tokenizer, cache_dir)


def test_chat_template_failure_names_the_row(tmp_path, builtin_tokenizer, cache_dir):
    rows = [
        {
            "prompt": [{"role": "user", "content": "a"}],
            "chosen": [{"role": "assistant", "content": "b"}],
            "rejected": [{"role": "assistant", "content": "c"}],
        }
    ] * 2
    # a tool result after the question: a valid chat, but the built-in template knows no tools
    tool = [{"role": "user", "content": "a"}, {"role": "tool", "content": "42"}]
    rows[1] = {**rows[1], "prompt": tool}
    path = _write_jsonl(tmp_path / "tool.jsonl", rows)
    with pytest.raises(
        ValueError,
        match=r"tool.jsonl \(train split\): row 1: the chat template failed: unknown role: tool",
    ):
        _setup(path, builtin_tokenizer, cache_dir)


def test_constructor_validates_lengths_and_options(builtin_tokenizer):
    with pytest.raises(
        ValueError,
        match=r"^data.max_prompt_length \(512\) must be smaller than data.max_length \(512\)$",
    ):
        PreferenceDataModule(builtin_tokenizer, max_length=512, max_prompt_length=512)
    with pytest.raises(ValueError, match="data.prompt='both' must be auto, explicit or implicit"):
        PreferenceDataModule(builtin_tokenizer, prompt="both")


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".json", "folder"])
def test_every_file_type_gives_the_same_ids_as_jsonl(
    suffix, tmp_path, builtin_tokenizer, cache_dir
):
    rows = _rows(12)
    reference = _setup(_write_jsonl(tmp_path / "a.jsonl", rows), builtin_tokenizer, cache_dir)
    if suffix == "folder":
        (tmp_path / "dir").mkdir()
        _write_jsonl(tmp_path / "dir" / "train.jsonl", rows)
        _write_jsonl(tmp_path / "dir" / "test.jsonl", rows[:3])
        dm = _setup(tmp_path / "dir", builtin_tokenizer, cache_dir, eval_split="test")
        assert len(dm.eval_dataset) == 3
    else:
        path = tmp_path / f"b{suffix}"
        frame = pd.DataFrame(rows)
        if suffix == ".csv":
            frame.to_csv(path, index=False)
        elif suffix == ".parquet":
            frame.to_parquet(path)
        else:
            path.write_text(json.dumps(rows, indent=1))
        dm = _setup(path, builtin_tokenizer, cache_dir)
    assert dm.train_dataset[:] == reference.train_dataset[:]


def test_single_file_has_only_a_train_split(fixtures, builtin_tokenizer, cache_dir):
    with pytest.raises(ValueError, match="is one file, so its only split is 'train', not 'test'"):
        _setup(
            fixtures / "standard_explicit.jsonl", builtin_tokenizer, cache_dir, eval_split="test"
        )


def test_eval_fraction_is_a_seeded_disjoint_split(tmp_path, builtin_tokenizer, cache_dir):
    path = _write_jsonl(tmp_path / "pairs.jsonl", _rows(100))

    def prompts(dm, split):
        return {tuple(r) for r in getattr(dm, f"{split}_dataset")["prompt_input_ids"]}

    a = _setup(path, builtin_tokenizer, cache_dir, eval_fraction=0.2, seed=1)
    b = _setup(path, builtin_tokenizer, cache_dir, eval_fraction=0.2, seed=1)
    c = _setup(path, builtin_tokenizer, cache_dir, eval_fraction=0.2, seed=2)
    assert (len(a.train_dataset), len(a.eval_dataset)) == (80, 20)
    assert not prompts(a, "train") & prompts(a, "eval")
    assert prompts(a, "eval") == prompts(b, "eval") != prompts(c, "eval")


def test_max_samples_and_no_eval(tmp_path, builtin_tokenizer, cache_dir):
    path = _write_jsonl(tmp_path / "pairs.jsonl", _rows(30))
    dm = _setup(path, builtin_tokenizer, cache_dir, max_train_samples=10)
    assert len(dm.train_dataset) == 10 and dm.eval_dataset is None
    assert dm.val_dataloader() == []


def test_loaders_shard_the_global_batch_over_ranks(builtin_tokenizer):
    kwargs = {"batch_size": 4, "builtin": {"train_size": 64, "eval_size": 10}, "seed": 7}
    single = PreferenceDataModule(builtin_tokenizer, **{**kwargs, "batch_size": 8})
    single.setup()
    global_batches = list(single.train_dataloader())
    shards = []
    for rank in (0, 1):
        dm = PreferenceDataModule(builtin_tokenizer, **kwargs)
        dm.trainer = types.SimpleNamespace(world_size=2, global_rank=rank)
        dm.setup()
        shards.append(list(dm.train_dataloader()))
        assert sum(b["prompt_lengths"].numel() for b in dm.val_dataloader()) == 5
    assert len(shards[0]) == len(shards[1]) == len(global_batches) == 8
    for batch, *rank_batches in zip(global_batches, *shards):
        # the chosen rows (first half) of both ranks' batches are the global batch's chosen rows
        assert set().union(*map(_chosen_rows, rank_batches)) == _chosen_rows(batch)


def _chosen_rows(batch: dict[str, torch.Tensor]) -> set[tuple[int, ...]]:
    b = batch["prompt_lengths"].numel()
    ids, mask = batch["input_ids"][:b], batch["attention_mask"][:b].bool()
    return {tuple(row[m].tolist()) for row, m in zip(ids, mask)}


def test_lightning_reshuffles_each_epoch_and_same_seed_same_order(builtin_tokenizer):
    kwargs = {"batch_size": 4, "builtin": {"train_size": 32, "eval_size": 4}, "seed": 3}
    dm, other = (
        PreferenceDataModule(builtin_tokenizer, **kwargs),
        PreferenceDataModule(builtin_tokenizer, **kwargs),
    )
    dm.setup(), other.setup()
    loader = dm.train_dataloader()
    torch.manual_seed(0)
    epoch0 = [b["input_ids"].tolist() for b in loader]
    torch.manual_seed(1)
    assert [b["input_ids"].tolist() for b in other.train_dataloader()] == epoch0
    _set_sampler_epoch(loader, 1)  # what Lightning's fit loop calls at each epoch start
    assert [b["input_ids"].tolist() for b in loader] != epoch0


def test_reference_logps_are_stored_in_dataset_order(builtin_tokenizer):
    dm = PreferenceDataModule(
        builtin_tokenizer,
        batch_size=4,
        eval_batch_size=3,
        builtin={"train_size": 10, "eval_size": 5},
    )
    dm.setup()
    predicted = [b["prompt_lengths"].tolist() for b in dm.predict_dataloader("eval")]
    assert sum(predicted, []) == [len(p) for p in dm.eval_dataset["prompt_input_ids"]]
    with pytest.raises(ValueError, match="ref_chosen_logps: 4 values for 5 eval rows"):
        dm.set_reference_logps("eval", [0.0] * 4, [0.0] * 5)
    with pytest.raises(ValueError, match="ref_rejected_logps: non-finite values"):
        dm.set_reference_logps("eval", [0.0] * 5, [float("nan")] * 5)
    dm.set_reference_logps("eval", [-1.0, -2.0, -3.0, -4.0, -5.0], [-6.0] * 5)
    dm.set_reference_logps("eval", [-1.0, -2.0, -3.0, -4.0, -5.0], [-7.0] * 5)  # replaces
    batches = list(dm.predict_dataloader("eval"))
    torch.testing.assert_close(batches[0]["ref_chosen_logps"], torch.tensor([-1.0, -2.0, -3.0]))
    torch.testing.assert_close(batches[1]["ref_rejected_logps"], torch.tensor([-7.0, -7.0]))
    assert "ref_chosen_logps" in next(iter(dm.val_dataloader()))


def test_rows_with_wrong_roles_are_dropped_and_counted_by_reason(
    tmp_path, builtin_tokenizer, cache_dir
):
    def chat(prompt_roles, response_role="assistant"):
        return {
            "prompt": [{"role": r, "content": "Is 7 odd?"} for r in prompt_roles],
            "chosen": [{"role": response_role, "content": "7 is odd."}],
            "rejected": [{"role": "assistant", "content": "7 is even."}],
        }

    rows = [chat(["user"])] * 3 + [chat(["user"], "user"), chat(["user", "assistant"])]
    rows += [chat(["assistant", "user"])]
    dm = _setup(_write_jsonl(tmp_path / "roles.jsonl", rows), builtin_tokenizer, cache_dir)
    assert dm.skipped == {
        "train": {
            "prompt_ends_with_assistant": 1,
            "response_not_assistant": 1,
            "roles_out_of_order": 1,
        }
    }
    assert len(dm.train_dataset) == 3


def test_a_tiny_eval_split_gets_a_warning_naming_the_key(
    tmp_path, builtin_tokenizer, cache_dir, caplog
):
    path = _write_jsonl(tmp_path / "pairs.jsonl", _rows(16))
    with caplog.at_level("WARNING", logger="prefopt.data.datamodule"):
        dm = _setup(path, builtin_tokenizer, cache_dir, eval_fraction=0.05)
    assert len(dm.eval_dataset) == 1
    assert any(
        r.getMessage()
        == "the eval split has only 1 pair(s): its val/ metrics will be noisy; raise "
        "data.eval_fraction"
        for r in caplog.records
    )


def test_a_reference_answer_column_is_kept_as_text(builtin_tokenizer, cache_dir, tmp_path):
    """The built-in data carries its correct answer; elsewhere a ``reference`` or ``answer``
    column (or ``columns.reference``) is kept through tokenization, and none is made up."""
    builtin = PreferenceDataModule(
        builtin_tokenizer, format="conversational", builtin={"train_size": 8, "eval_size": 4}
    )
    builtin.setup("fit")
    row = builtin.eval_dataset[0]
    chosen = builtin_tokenizer.decode(row["chosen_input_ids"], skip_special_tokens=True)
    assert row["reference"] == chosen  # e.g. "437 is odd.": the one correct answer
    rows = [{**r, "answer": r["chosen"][:2]} for r in _rows(6)]
    rows[1]["answer"] = None
    dm = _setup(_write_jsonl(tmp_path / "answers.jsonl", rows), builtin_tokenizer, cache_dir)
    assert dm.train_dataset["reference"][:3] == ["0 ", None, "2 "]
    renamed = [{**r, "gold": str(i)} for i, r in enumerate(_rows(4))]
    path = _write_jsonl(tmp_path / "gold.jsonl", renamed)
    dm = _setup(path, builtin_tokenizer, cache_dir, columns={"reference": "gold"})
    assert dm.train_dataset["reference"] == ["0", "1", "2", "3"]
    plain = _setup(_write_jsonl(tmp_path / "plain.jsonl", _rows(4)), builtin_tokenizer, cache_dir)
    assert "reference" not in plain.train_dataset.column_names
