"""The built-in byte-level tokenizer and ``load_tokenizer``."""

from __future__ import annotations

import pytest
from jinja2 import TemplateError
from transformers import AutoTokenizer

from prefopt.data import build_builtin_tokenizer, load_tokenizer

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Is 7 odd?"},
    {"role": "assistant", "content": "Yes."},
]


def test_byte_ids_and_special_tokens(builtin_tokenizer):
    tok = builtin_tokenizer
    assert len(tok) == 263
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (256, 257, 258)
    assert tok.convert_tokens_to_ids(["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]) == [
        259,
        260,
        261,
        262,
    ]
    # token id == byte value; plain text gets one BOS
    assert tok("é!").input_ids == [257, 0xC3, 0xA9, 0x21]
    assert tok("é!", add_special_tokens=False).input_ids == [0xC3, 0xA9, 0x21]


@pytest.mark.parametrize(
    "text", ["hello world", "  two  spaces\n\ttab", "héllo 😀 中文", "<s> x </s>", ""]
)
def test_utf8_round_trip(builtin_tokenizer, text):
    ids = builtin_tokenizer(text, add_special_tokens=False).input_ids
    assert builtin_tokenizer.decode(ids) == text


def test_chat_template_one_bos_and_eos_closes_assistant_turn(builtin_tokenizer):
    tok = builtin_tokenizer
    rendered = tok.apply_chat_template(MESSAGES, tokenize=False)
    assert rendered == "<s><|system|>Be brief.<|end|><|user|>Is 7 odd?<|end|><|assistant|>Yes.</s>"
    prompt = tok.apply_chat_template(MESSAGES[:2], tokenize=False, add_generation_prompt=True)
    assert prompt == "<s><|system|>Be brief.<|end|><|user|>Is 7 odd?<|end|><|assistant|>"
    ids = tok.apply_chat_template(MESSAGES)["input_ids"]
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    assert ids.count(tok.eos_token_id) == 1 and ids[-1] == tok.eos_token_id


def test_unknown_role_fails(builtin_tokenizer):
    with pytest.raises(TemplateError, match="unknown role: tool"):
        builtin_tokenizer.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_survives_save_and_auto_tokenizer(tmp_path):
    tok = build_builtin_tokenizer()
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.chat_template == tok.chat_template
    assert (
        loaded.apply_chat_template(MESSAGES)["input_ids"]
        == tok.apply_chat_template(MESSAGES)["input_ids"]
    )
    assert loaded("héllo").input_ids == tok("héllo").input_ids
    assert (loaded.pad_token_id, loaded.eos_token_id, len(loaded)) == (256, 258, 263)
    assert loaded.decode(loaded("héllo 😀", add_special_tokens=False).input_ids) == "héllo 😀"


def test_load_tokenizer_builtin_and_saved_folder(tmp_path):
    assert len(load_tokenizer("builtin")) == 263
    build_builtin_tokenizer().save_pretrained(tmp_path)
    assert load_tokenizer(str(tmp_path)).pad_token_id == 256


def test_load_tokenizer_sets_missing_pad_to_eos(tmp_path):
    tok = build_builtin_tokenizer()
    tok.pad_token = None
    tok.save_pretrained(tmp_path)
    loaded = load_tokenizer(str(tmp_path))
    assert loaded.pad_token == loaded.eos_token == "</s>"
