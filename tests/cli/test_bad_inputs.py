"""The bad-input corpus: every mistake a user can make gives one line and exit code 2, no traceback.

Each case runs ``prefopt-train`` in this process (``prefopt.cli.train.main`` with its argv), as a
user would type it, and asserts the whole message. Most cases stop before any model is built.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from prefopt.data import build_builtin_tokenizer
from prefopt.models import build_tiny_model
from tests.cli.conftest import one_line

ROWS = [
    {"prompt": f"Is {n} odd or even?", "chosen": f"{n} is odd.", "rejected": f"{n} is even."}
    for n in range(1, 81, 2)
]
CHAT = [
    {
        "prompt": [{"role": "user", "content": r["prompt"]}],
        "chosen": [{"role": "assistant", "content": r["chosen"]}],
        "rejected": [{"role": "assistant", "content": r["rejected"]}],
    }
    for r in ROWS
]


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _data(*extra: str) -> list[str]:
    return ["data=local_jsonl", "data.eval_fraction=0.25", *extra]


# ---- data files ------------------------------------------------------------------------------
def test_malformed_json_names_the_file_and_line(prefopt_train, tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + '{"prompt": "a", "chosen": "b",}\n')
    message = one_line(*prefopt_train(*_data(f"data.path={path}"))[::2])
    assert message == (
        f"{path}: line 2: invalid JSON: Expecting property name enclosed in double quotes "
        "(column 31)"
    )


def test_a_file_that_is_not_utf8(prefopt_train, tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(
        json.dumps(ROWS[0]).encode() + b"\n" + '{"prompt": "caf\xe9"}\n'.encode("latin-1")
    )
    message = one_line(*prefopt_train(*_data(f"data.path={path}"))[::2])
    assert message == (
        f"{path}: line 2: not UTF-8 text (invalid continuation byte at byte 15): save the file "
        "as UTF-8"
    )


def test_a_json_array_holding_a_non_object(prefopt_train, tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps([ROWS[0], 5]))
    message = one_line(*prefopt_train(*_data(f"data.path={path}"))[::2])
    assert message == f"{path}: record 1: expected a JSON object, got 5"


@pytest.mark.parametrize("content", [b"", b"\n\n"])
def test_an_empty_file(prefopt_train, tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    message = one_line(*prefopt_train(*_data(f"data.path={path}"))[::2])
    assert message in (f"{path}: the file is empty", f"{path}: the file is empty (no JSON records)")


def test_every_row_dropped(prefopt_train, tmp_path):
    path = _jsonl(tmp_path / "pairs.jsonl", [{"prompt": "a", "chosen": "b", "rejected": None}] * 8)
    message = one_line(*prefopt_train(*_data(f"data.path={path}"))[::2])
    assert message.startswith(
        f"{path} (train split): no usable rows left (missing_field: 6); see docs/data.md"
    )


def test_a_one_row_file_with_the_default_eval_fraction(prefopt_train, tmp_path):
    path = _jsonl(tmp_path / "one.jsonl", ROWS[:1])
    message = one_line(*prefopt_train("data=local_jsonl", f"data.path={path}")[::2])
    assert message == (
        f"data.eval_fraction=0.05 of 1 row(s) of {path} leaves no training rows: set "
        "data.eval_fraction=0 (no eval split) or use more rows"
    )


def test_a_missing_path_and_a_folder_without_data(prefopt_train, tmp_path):
    message = one_line(*prefopt_train(*_data(f"data.path={tmp_path}/nope.jsonl"))[::2])
    assert message == f"data.path={tmp_path}/nope.jsonl: no such file or folder"
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("no data here")
    message = one_line(*prefopt_train(*_data(f"data.path={tmp_path}/folder"))[::2])
    assert message.startswith(f"{tmp_path}/folder: no data files in this folder (expected .jsonl,")


def test_an_unsupported_file_type(prefopt_train, tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("prompt\tchosen\trejected\n")
    message = one_line(*prefopt_train(*_data(f"data.path={path}"))[::2])
    assert message.startswith(f"{path}: unsupported file type; expected one of .jsonl, .json,")
    assert ".jsonl.gz" in message


def test_gzipped_jsonl_trains(prefopt_train, tmp_path):
    path = tmp_path / "pairs.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in ROWS))
    code, out, err = prefopt_train(*_data(f"data.path={path}"))
    assert code == 0, err[-2000:]
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "completed"


def test_format_standard_on_chat_messages(prefopt_train, tmp_path):
    path = _jsonl(tmp_path / "chat.jsonl", CHAT)
    message = one_line(*prefopt_train(*_data(f"data.path={path}", "data.format=standard"))[::2])
    assert message == (
        f"{path}: data.format=standard, but the 'chosen' column holds chat messages: use "
        "data.format=auto or conversational"
    )


# ---- tokenizers and models -------------------------------------------------------------------
def _saved_tokenizer(folder: Path, **changes) -> Path:
    tokenizer = build_builtin_tokenizer()
    for key, value in changes.items():
        setattr(tokenizer, key, value)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_tokenizer_without_a_chat_template_on_chat_data(prefopt_train, tmp_path):
    folder = _saved_tokenizer(tmp_path / "tok", chat_template=None)
    path = _jsonl(tmp_path / "chat.jsonl", CHAT)
    message = one_line(
        *prefopt_train(*_data(f"data.path={path}", f"model.tokenizer={folder}"))[::2]
    )
    assert message == (
        f"{path}: the rows are chat messages, but the tokenizer ({folder}) has no chat template: "
        "use a tokenizer that has one (model.tokenizer=...), or data.format=standard for string "
        "rows"
    )


def test_a_tokenizer_with_neither_pad_nor_eos(prefopt_train, tmp_path):
    folder = _saved_tokenizer(tmp_path / "tok", pad_token=None, eos_token=None)
    message = one_line(*prefopt_train(f"model.tokenizer={folder}")[::2])
    assert message == (
        f"model.tokenizer: {folder}: the tokenizer has neither a pad nor an EOS token, so batches "
        "cannot be padded and responses cannot end: use a tokenizer that defines eos_token (e.g. "
        "in its tokenizer_config.json)"
    )


def test_a_tokenizer_path_that_does_not_exist(prefopt_train, tmp_path):
    message = one_line(*prefopt_train(f"model.tokenizer={tmp_path}/missing")[::2])
    assert message == f"model.tokenizer: {tmp_path}/missing: no such tokenizer folder"


def test_a_folder_with_only_vocab_and_merges(prefopt_train, tmp_path):
    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "vocab.json").write_text(json.dumps({"a": 0, "b": 1, "ab": 2}))
    (folder / "merges.txt").write_text("#version: 0.2\na b\n")
    message = one_line(*prefopt_train(f"model.tokenizer={folder}")[::2])
    assert message == (
        f"model.tokenizer: {folder}: no tokenizer.json, tokenizer_config.json or config.json "
        "(found merges.txt, vocab.json), so transformers cannot tell which tokenizer this is: "
        "save it with tokenizer.save_pretrained(folder), or add a tokenizer_config.json naming "
        "its tokenizer_class"
    )


def _saved_model(folder: Path, extra_tokens: int = 0) -> Path:
    """A tiny model and the built-in tokenizer, with ``extra_tokens`` the model has no rows for."""
    tokenizer = build_builtin_tokenizer()
    model = build_tiny_model(tokenizer, hidden_size=16, num_layers=1, num_heads=2)
    model.save_pretrained(folder)
    tokenizer.add_tokens([f"<extra_{i}>" for i in range(extra_tokens)])
    tokenizer.save_pretrained(folder)
    return folder


def test_a_pretrained_model_trains_with_its_own_tokenizer(prefopt_train, tmp_path):
    folder = _saved_model(tmp_path / "model")
    code, _, err = prefopt_train(f"model.name_or_path={folder}", "save_hf_model=true")
    assert code == 0, err[-2000:]
    resolved = (tmp_path / "run" / "config_resolved.yaml").read_text()
    assert "tokenizer: null" in resolved
    saved = AutoTokenizer.from_pretrained(tmp_path / "run" / "hf_model")
    assert saved.chat_template == build_builtin_tokenizer().chat_template and len(saved) == 263
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "hf_model")
    assert model.get_input_embeddings().num_embeddings == 263


def test_a_tokenizer_that_does_not_fit_the_embeddings(prefopt_train, tmp_path):
    folder = _saved_model(tmp_path / "model", extra_tokens=40)
    message = one_line(*prefopt_train(f"model.name_or_path={folder}")[::2])
    assert message == (
        f"the tokenizer ({folder}) has 303 tokens but the model's embeddings have 263 rows, so "
        "ids 263..302 index past them: use the model's own tokenizer (model.tokenizer=null) or "
        "one made for this model"
    )


def test_a_model_folder_that_does_not_exist(prefopt_train, tmp_path):
    message = one_line(
        *prefopt_train(f"model.name_or_path={tmp_path}/m", "model.tokenizer=builtin")[::2]
    )
    assert message == f"model.name_or_path={tmp_path}/m: no such model folder"


# ---- config values ---------------------------------------------------------------------------
@pytest.mark.parametrize("lr", ["0", "-1e-3", "nan", "inf"])
def test_a_learning_rate_that_is_not_positive_and_finite(prefopt_train, lr):
    message = one_line(*prefopt_train(f"optimizer.lr={lr}")[::2])
    value = message.removeprefix("optimizer.lr=").split(" ")[0]
    assert float(value) == float(lr) or math.isnan(float(lr))
    assert message.endswith(" must be a finite number > 0 (e.g. 1e-3 tiny, 5e-6 7B)")


@pytest.mark.parametrize("key", ["flush_denormal", "validate_before_training", "save_hf_model"])
def test_a_switch_that_is_not_true_or_false(prefopt_train, key):
    message = one_line(*prefopt_train(f"{key}=ture")[::2])
    assert message == f"{key}='ture' must be true or false"


def test_a_batch_size_of_zero(prefopt_train):
    message = one_line(*prefopt_train("data.batch_size=0")[::2])
    assert message == "data.batch_size=0 must be a whole number of pairs >= 1"


def test_drop_last_with_fewer_pairs_than_a_batch(prefopt_train):
    message = one_line(*prefopt_train("data.batch_size=64", "data.drop_last=true")[::2])
    assert message == (
        "48 training pair(s) make no batch of data.batch_size=64 on 1 process(es) with "
        "data.drop_last=True: lower data.batch_size, set data.drop_last=false, or use more data"
    )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["module.prompt_sharing=true"],
            "data.packing=true and module.prompt_sharing=true do not combine (packed rows hold "
            "each prompt per response): set module.prompt_sharing=auto or false",
        ),
        (
            ["module.router_aux_loss_coef=0.01"],
            "data.packing=true does not support module.router_aux_loss_coef > 0 (the MoE router "
            "loss of packed rows is not the unpacked one): set data.packing=false",
        ),
        (
            ["+model.attn_implementation=flex_attention"],
            "data.packing=true cannot keep packed sequences apart with model.attn_implementation="
            "flex_attention: use sdpa, eager, flash_attention_2, flash_attention_3",
        ),
        (
            ["data.pack_length=32"],
            "data.pack_length (32) must be at least data.max_length (64): a packed row holds at "
            "least the longest sequence",
        ),
    ],
)
def test_packing_with_a_setting_it_cannot_honour(prefopt_train, overrides, expected):
    assert one_line(*prefopt_train("data.packing=true", *overrides)[::2]) == expected


def test_an_unknown_group_option_lists_the_available_ones(prefopt_train):
    message = one_line(*prefopt_train("objective=orp")[::2])
    assert message.startswith(
        "In 'train': Could not find 'objective/orp'; available options in 'objective': "
    )
    assert "orpo" in message and "sft" in message


def test_an_override_of_a_key_that_does_not_exist(prefopt_train):
    message = one_line(*prefopt_train("module.gradient_checkpointing=true")[::2])
    assert message.startswith("Could not override 'module.gradient_checkpointing'.")
    assert "+module.gradient_checkpointing=true" in message


def test_a_key_the_target_does_not_take(prefopt_train):
    message = one_line(*prefopt_train("+objective.beta=0.2")[::2])
    assert message.startswith("Error in call to target 'prefopt.objectives.orpo.ORPO'")
    assert "unexpected keyword argument 'beta'" in message


# ---- checkpoints and divergence --------------------------------------------------------------
def test_a_truncated_checkpoint(prefopt_train, tmp_path):
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1000)}, "global_step": 3, "loops": {}}, path)
    path.write_bytes(path.read_bytes()[:200])
    message = one_line(*prefopt_train(f"ckpt_path={path}")[::2])
    assert message.startswith(
        f"{path}: not a readable checkpoint (truncated, or not a file torch.save wrote):"
    )


def test_a_foreign_checkpoint(prefopt_train, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.ones(3)}, path)
    message = one_line(*prefopt_train(f"ckpt_path={path}")[::2])
    assert message == (
        f"{path}: not a training checkpoint Lightning wrote (no state_dict, global_step, loops): "
        "give ckpt_path a run's checkpoints/last.ckpt or best-step*.ckpt"
    )


def test_a_divergence_names_the_step_and_the_fix(prefopt_train):
    message = one_line(*prefopt_train("optimizer.lr=1e6", "trainer.max_steps=20")[::2])
    assert message.startswith("the model's log-probs became non-finite (")
    step = int(message.split(" at step ")[1].split(":")[0])
    assert 1 < step <= 20
    assert message.endswith(
        "training diverged; lower optimizer.lr or clip gradients harder "
        "(trainer.gradient_clip_val is 1.0)"
    )


def test_the_status_file_records_the_same_line(prefopt_train, tmp_path):
    code, _, err = prefopt_train("data.batch_size=0")
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status == {"status": "failed", "error": one_line(code, err)}


def test_with_the_debug_switch_the_traceback_is_shown(prefopt_train, monkeypatch):
    monkeypatch.setenv("PREFOPT_DEBUG", "1")
    code, _, err = prefopt_train("data.batch_size=0")
    assert code != 2 and "Traceback" in err and "ConfigError: data.batch_size=0" in err


def test_nan_in_a_metric_is_never_reported_as_a_result(prefopt_train, tmp_path):
    """A healthy short run: every final value finite (the counterpart of the cases above)."""
    code, _, err = prefopt_train()
    assert code == 0, err[-2000:]
    metrics = json.loads((tmp_path / "run" / "status.json").read_text())["metrics"]
    assert metrics and all(math.isfinite(v) for v in metrics.values())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("objective.lam=1e38", "orpo: lam must be in [0, 1e+06], got 1e+38"),
        ("objective.lam=-0.1", "orpo: lam must be in [0, 1e+06], got -0.1"),
    ],
)
def test_a_hyperparameter_that_would_overflow_the_metrics(prefopt_train, override, message):
    assert one_line(*prefopt_train(override)[::2]) == message
