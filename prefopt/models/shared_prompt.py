"""Prompt sharing: run each pair's prompt once and reuse its keys and values for both responses.

The collated batch holds every prompt twice (row ``i`` with the chosen response, row ``B + i``
with the rejected one). Here the decoder runs over the B prompts once (stage 1, with a key/value
cache), then over the 2B responses (stage 2) on top of that cache, each prompt's cache row used
by both of its responses. A response attends to its prompt and to itself, never to the other
response, and the gradient reaching the prompt is the sum of both responses' contributions: the
same computation as the unshared forward over ``[prompt + chosen; prompt + rejected]``, with the
rejected copy of the prompt (and its padding) skipped.

The final hidden states are gathered back into the unshared ``(2B, T, H)`` layout, so everything
downstream (needed positions, LM head in chunks, reductions) is the code of
:func:`prefopt.models.logps.sequence_stats`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# Decoder-only families whose forward takes a DynamicCache and explicit position ids (RoPE) and
# whose attention masks are built from a 2D mask over [cache; new tokens]. Tested in
# tests/models/test_prompt_sharing.py; others fall back to the unshared forward.
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")


def supports_prompt_sharing(model: nn.Module, seq_len: int | None = None) -> bool:
    """Whether :func:`shared_prompt_hidden` gives the same result as the unshared forward.

    Args:
        model: a Hugging Face causal LM (optionally wrapped by peft).
        seq_len: the longest row, checked against a sliding attention window if the model has one
            (``None``: not checked).

    Returns:
        True for a supported model type without gradient checkpointing (which turns the cache
        off in training), and rows no longer than its sliding window if it has one.
    """
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) not in SUPPORTED_MODEL_TYPES:
        return False
    checkpointing = getattr(model, "is_activation_checkpointing", None)  # transformers >= 5.x
    if checkpointing is None:
        checkpointing = getattr(model, "is_gradient_checkpointing", False)
    if checkpointing:
        return False
    window = getattr(config, "sliding_window", None)
    if window is not None and getattr(config, "use_sliding_window", True) and seq_len is not None:
        return seq_len <= window
    return True


def shared_prompt_hidden(
    model: nn.Module, input_ids: Tensor, attention_mask: Tensor, prompt_lengths: Tensor
) -> Tensor:
    """Final hidden states of the collated batch, computing each prompt once.

    Args:
        model: a causal LM for which :func:`supports_prompt_sharing` holds.
        input_ids: (2B, T) chosen rows first, then rejected rows, right-padded; row ``i`` and row
            ``B + i`` start with the same ``prompt_lengths[i]`` prompt tokens.
        attention_mask: (2B, T) 1 on real tokens.
        prompt_lengths: (B,) prompt tokens of each pair.

    Returns:
        (2B, T, H) hidden states equal to the unshared forward's at every real position (padding
        positions hold arbitrary finite values).
    """
    num_pairs, width = prompt_lengths.shape[0], input_ids.shape[1]
    device = input_ids.device
    prompt_lengths = prompt_lengths.to(device)
    row_prompt = prompt_lengths.repeat(2)  # (2B,)
    row_response = attention_mask.sum(1) - row_prompt  # (2B,)
    p_max, r_max = int(prompt_lengths.max()), int(row_response.max())

    # stage 1: the B prompts, right-padded to p_max
    prompt_mask = (torch.arange(p_max, device=device) < prompt_lengths[:, None]).long()  # (B, P)
    prompt_hidden, cache = _decoder(
        model, input_ids[:num_pairs, :p_max], prompt_mask, use_cache=True
    )  # (B, P, H)
    cache.batch_select_indices(torch.arange(num_pairs, device=device).repeat(2))  # B -> 2B rows

    # stage 2: the 2B responses, right-padded to r_max, after their prompt's cache row
    offsets = torch.arange(r_max, device=device)
    positions = row_prompt[:, None] + offsets  # (2B, R): RoPE positions as in the unshared rows
    response_mask = (offsets < row_response[:, None]).long()  # (2B, R)
    response_ids = input_ids.gather(1, positions.clamp(max=width - 1)) * response_mask
    response_hidden, _ = _decoder(
        model,
        response_ids,
        torch.cat([prompt_mask.repeat(2, 1), response_mask], dim=1),  # (2B, P + R)
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
    )  # (2B, R, H)

    # gather both stages back into the unshared layout: row r, column t
    hidden = prompt_hidden.shape[-1]
    flat = torch.cat([prompt_hidden.reshape(-1, hidden), response_hidden.reshape(-1, hidden)])
    rows = torch.arange(2 * num_pairs, device=device)[:, None]  # (2B, 1)
    cols = torch.arange(width, device=device)[None, :]  # (1, T)
    in_prompt = cols < row_prompt[:, None]  # (2B, T)
    prompt_index = (rows % num_pairs) * p_max + cols.clamp(max=p_max - 1)
    response_index = (
        num_pairs * p_max + rows * r_max + (cols - row_prompt[:, None]).clamp(0, r_max - 1)
    )
    return flat[torch.where(in_prompt, prompt_index, response_index)]  # (2B, T, H)


def _decoder(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, **kwargs):
    """One root forward; returns the decoder's final hidden states (captured by a hook, as in
    ``logps._last_hidden_state``) and the key/value cache."""
    captured: list[Tensor] = []
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft
    hook = inner.base_model.register_forward_hook(
        lambda _module, _args, output: captured.append(output.last_hidden_state)
    )
    try:
        out = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=1, **kwargs)
    finally:
        hook.remove()
    return captured[-1], out.past_key_values
