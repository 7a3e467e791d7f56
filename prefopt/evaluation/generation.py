"""Batched generation for the evaluators: left-padded prompts, the KV cache, stop tokens.

The prompts are the tokenized dataset's ``prompt_input_ids``: the chat template is already
applied and they end with the generation prompt, so they go to ``model.generate`` as they are.
Generation stops at the EOS token, at the chat template's end-of-turn token (e.g. ``<|im_end|>``,
``<|eot_id|>``) and at the model's own ``generation_config.eos_token_id``. Only the settings
given here apply: a model's ``generation_config`` defaults (top-k, repetition penalty, n-gram
bans, minimum length) do not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformers import GenerationConfig, PreTrainedTokenizerBase

_MARKER = "\x00prefopt-end-of-turn-probe\x00"


@dataclass(frozen=True)
class Sampling:
    """How to generate.

    Attributes:
        max_new_tokens: Most tokens per completion (the stop token included).
        do_sample: Sample (seeded by the caller) instead of greedy decoding.
        temperature: Sampling temperature (``do_sample`` only).
        top_p: Nucleus sampling mass (1: off).
        top_k: Sample among the k most likely tokens (0: off).
        batch_size: Prompts per ``generate`` call.
    """

    max_new_tokens: int = 24
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    batch_size: int = 64


def end_of_turn_id(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The special token the chat template writes right after an assistant message, if any.

    Found by rendering a one-turn conversation: for the built-in tokenizer it is the EOS token,
    for ChatML templates ``<|im_end|>``, for Llama 3 ``<|eot_id|>``.
    """
    if not getattr(tokenizer, "chat_template", None):
        return None
    messages = [{"role": "user", "content": "?"}, {"role": "assistant", "content": _MARKER}]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception:  # a template that refuses this conversation: no end-of-turn token found
        return None
    after = text.split(_MARKER, 1)[-1] if _MARKER in text else ""
    ids = tokenizer(after.lstrip(), add_special_tokens=False)["input_ids"] if after else []
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}))
    return ids[0] if ids and ids[0] in special else None


def stop_token_ids(tokenizer: PreTrainedTokenizerBase, model: nn.Module | None = None) -> list[int]:
    """EOS, the end-of-turn token and the model's ``generation_config.eos_token_id``(s)."""
    found = [tokenizer.eos_token_id, end_of_turn_id(tokenizer)]
    model_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    found += model_eos if isinstance(model_eos, list) else [model_eos]
    return sorted({int(i) for i in found if i is not None})


def left_pad(prompts: Sequence[Sequence[int]], pad_token_id: int) -> tuple[Tensor, Tensor]:
    """``(input_ids, attention_mask)``, each (B, T): prompts left-padded to the longest."""
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, prompt in enumerate(prompts):
        input_ids[i, width - len(prompt) :] = torch.as_tensor(list(prompt), dtype=torch.long)
        attention_mask[i, width - len(prompt) :] = 1
    return input_ids, attention_mask


def trim(new_tokens: Sequence[int], stop_ids: Sequence[int]) -> tuple[list[int], bool]:
    """The tokens up to and including the first stop token, and whether there was one."""
    stops = set(stop_ids)
    for i, token in enumerate(new_tokens):
        if token in stops:
            return list(new_tokens[: i + 1]), True
    return list(new_tokens), False


@torch.no_grad()
def generate(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    pad_token_id: int,
    stop_ids: Sequence[int],
    sampling: Sampling,
    device: torch.device | str = "cpu",
    synced: bool = False,
) -> list[tuple[list[int], bool]]:
    """Complete every prompt, ``sampling.batch_size`` prompts per ``model.generate`` call.

    Prompts are sorted by length before batching (less padding) and returned in input order.
    Sampling draws from the global torch generator: the caller seeds and restores it.

    Args:
        model: A Hugging Face causal LM, in eval mode.
        prompts: Token ids of each prompt.
        pad_token_id: Id written on the padding.
        stop_ids: Tokens that end a completion (:func:`stop_token_ids`).
        sampling: The generation settings.
        device: Where the inputs go.
        synced: Keep calling the model until every rank is done (``synced_gpus``): needed when
            the model is sharded (FSDP, ZeRO-3) and the ranks' completions end at different steps.

    Returns:
        For each prompt, ``(new token ids, stopped)``: the stop token included when ``stopped``.
    """
    sample = sampling.do_sample
    # every setting a model's generation_config could change is given (generate fills the unset
    # ones from it); greedy decoding gets the neutral defaults, which it does not read
    config = GenerationConfig(
        max_new_tokens=sampling.max_new_tokens,
        min_new_tokens=0,
        do_sample=sample,
        num_beams=1,
        temperature=sampling.temperature if sample else 1.0,
        top_p=sampling.top_p if sample else 1.0,
        top_k=sampling.top_k if sample else 50,
        typical_p=1.0,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        eos_token_id=list(stop_ids),
        pad_token_id=pad_token_id,
        use_cache=True,
    )
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[tuple[list[int], bool] | None] = [None] * len(prompts)
    for start in range(0, len(order), sampling.batch_size):
        batch = order[start : start + sampling.batch_size]
        input_ids, attention_mask = left_pad([prompts[i] for i in batch], pad_token_id)
        sequences = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            generation_config=config,
            synced_gpus=synced,
        )  # (b, T + new)
        new = sequences[:, input_ids.shape[1] :].tolist()
        for i, tokens in zip(batch, new):
            out[i] = trim(tokens, stop_ids)
    return out  # type: ignore[return-value]
