"""Batched generation: left padding gives what one prompt at a time gives, stop tokens end a
completion (EOS, the chat template's end-of-turn token), the limit is respected, and sampling is
seeded."""

from __future__ import annotations

import pytest
import torch

from prefopt.data import build_builtin_tokenizer
from prefopt.evaluation.generation import (
    Sampling,
    end_of_turn_id,
    generate,
    left_pad,
    stop_token_ids,
    trim,
)
from prefopt.models import build_tiny_model
from tests.evaluation.helpers import bigram_lm, ids

PROMPTS = ["Is 7 odd or even?", "Which is larger, 12 or 85?", "Last digit of 4410?", "Hi"]


def _prompt_ids(tokenizer, text: str) -> list[int]:
    out = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True
    )
    return list(out if isinstance(out, list) else out["input_ids"])


def test_left_pad_puts_every_prompt_at_the_right_edge():
    input_ids, mask = left_pad([[5, 6, 7], [8]], pad_token_id=0)
    assert input_ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_trim_keeps_the_stop_token_and_says_whether_there_was_one():
    assert trim([4, 5, 9, 0, 0], stop_ids=[9]) == ([4, 5, 9], True)
    assert trim([4, 5, 6], stop_ids=[9]) == ([4, 5, 6], False)


def test_stop_tokens_are_eos_and_the_templates_end_of_turn_token(tokenizer):
    # the built-in template ends an assistant turn with EOS itself
    assert end_of_turn_id(tokenizer) == tokenizer.eos_token_id
    assert stop_token_ids(tokenizer) == [tokenizer.eos_token_id]
    chatml = build_builtin_tokenizer()  # assistant turns end with <|end|>, as ChatML's <|im_end|>
    chatml.chat_template = (
        "{% for m in messages %}{{ '<|' + m['role'] + '|>' + m['content'] + '<|end|>' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
    )
    end = chatml.convert_tokens_to_ids("<|end|>")
    assert end_of_turn_id(chatml) == end
    assert stop_token_ids(chatml) == sorted([chatml.eos_token_id, end])
    chatml.chat_template = None
    assert end_of_turn_id(chatml) is None


def test_generation_stops_at_the_end_of_turn_token_and_at_the_limit(tokenizer):
    a, b, end = ord("a"), ord("b"), tokenizer.convert_tokens_to_ids("<|end|>")
    assistant = tokenizer.convert_tokens_to_ids("<|assistant|>")
    # after the generation prompt: "ab" then <|end|>; after <|end|>, "a" again (never reached)
    model = bigram_lm(tokenizer, {assistant: a, a: b, b: end}, default=a)
    prompts = [_prompt_ids(tokenizer, p) for p in PROMPTS]
    out = generate(model, prompts, tokenizer.pad_token_id, [end], Sampling(max_new_tokens=8))
    assert out == [([a, b, end], True)] * len(PROMPTS)
    looping = bigram_lm(tokenizer, {assistant: a, a: a}, default=a)  # never stops
    out = generate(looping, prompts[:2], tokenizer.pad_token_id, [end], Sampling(max_new_tokens=5))
    assert out == [([a] * 5, False)] * 2
    # the model's own generation defaults do not apply (this one would ban the repeated "a")
    looping.generation_config.update(no_repeat_ngram_size=1, repetition_penalty=100.0)
    looping.generation_config.update(max_new_tokens=2, min_new_tokens=2)
    out = generate(looping, prompts[:2], tokenizer.pad_token_id, [end], Sampling(max_new_tokens=5))
    assert out == [([a] * 5, False)] * 2


def test_batched_left_padded_greedy_equals_one_prompt_at_a_time(tokenizer):
    torch.manual_seed(0)
    model = build_tiny_model(tokenizer, hidden_size=64, num_layers=2).eval()
    prompts = [_prompt_ids(tokenizer, p) for p in PROMPTS]
    assert len({len(p) for p in prompts}) == len(prompts)  # every row padded differently
    stops = stop_token_ids(tokenizer, model)
    batched = generate(
        model, prompts, tokenizer.pad_token_id, stops, Sampling(max_new_tokens=12, batch_size=4)
    )
    for prompt, got in zip(prompts, batched):
        alone = model.generate(
            input_ids=torch.tensor([prompt]),
            max_new_tokens=12,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=stops,
        )[0, len(prompt) :].tolist()
        assert got == trim(alone, stops)


def test_sampling_follows_the_seed_and_differs_from_greedy(tokenizer):
    torch.manual_seed(0)
    model = build_tiny_model(tokenizer, hidden_size=32, num_layers=1).eval()
    prompts = [_prompt_ids(tokenizer, p) for p in PROMPTS]
    sampling = Sampling(max_new_tokens=10, do_sample=True, batch_size=2)

    def run(seed: int):
        torch.manual_seed(seed)
        return generate(model, prompts, tokenizer.pad_token_id, [], sampling)

    assert run(1) == run(1)
    assert run(1) != run(2)
    greedy = generate(model, prompts, tokenizer.pad_token_id, [], Sampling(max_new_tokens=10))
    assert run(1) != greedy
    assert all(len(tokens) == 10 for tokens, _ in run(1))  # no stop token: the limit


def test_generated_text_decodes_without_special_tokens(tokenizer):
    a, end = ord("a"), tokenizer.eos_token_id
    assistant = tokenizer.convert_tokens_to_ids("<|assistant|>")
    model = bigram_lm(tokenizer, {assistant: a, a: end}, default=a)
    ((tokens, stopped),) = generate(
        model, [_prompt_ids(tokenizer, "x")], tokenizer.pad_token_id, [end], Sampling()
    )
    assert tokens == ids(tokenizer, "a", eos=True) and stopped
    assert tokenizer.decode(tokens, skip_special_tokens=True) == "a"


def test_phi3_stops_at_its_end_of_turn_token():
    """A real chat template whose assistant turns end with ``<|end|>``, not with EOS."""
    from tests.data.conftest import PHI3

    if not PHI3.is_dir():
        pytest.skip(f"no Phi-3 tokenizer at {PHI3}")
    from prefopt.data import load_tokenizer

    phi3 = load_tokenizer(str(PHI3))
    end = phi3.convert_tokens_to_ids("<|end|>")
    assert end_of_turn_id(phi3) == end != phi3.eos_token_id
    assert stop_token_ids(phi3) == sorted({phi3.eos_token_id, end})
