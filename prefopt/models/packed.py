"""The forward over packed rows (``data.packing``): several sequences per row, each isolated.

A packed batch (``prefopt.data.packing``) holds R rows of L tokens; ``sequence_ids`` (R, L) says
which of the 2B sequences each token belongs to (-1: padding) and ``position_ids`` (R, L) its
position inside that sequence. How the model is kept from attending across sequences depends on
its attention implementation:

* ``sdpa`` (CPU and GPU): padding-free, like flash attention below, through
  :func:`varlen_sdpa_attention`, registered with transformers as ``prefopt_sdpa_varlen`` (a
  packed forward switches an sdpa model to it; for unpacked inputs it *is* transformers' sdpa):
  one causal sdpa call per sequence, so no token sees another sequence and no attention is
  computed over keys it may not see (a block mask over a whole row would cost ``L²`` per row).
* ``eager``: a 4D block-diagonal causal mask built here, token q may see token k iff both are in
  the same sequence and ``position[k] <= position[q]`` (and within the sliding window, in
  positions, for Mistral and Qwen2's sliding layers: one mask per layer type). transformers
  passes a 4D mask through unchanged. Isolation is by construction.
* ``flash_attention_2`` / ``flash_attention_3`` (GPU): padding-free. The real tokens are
  flattened into one row with their per-sequence position ids, and the sequence boundaries go to
  ``flash_attn_varlen_func`` as ``cu_seq_lens_q/k`` and ``max_length_q/k`` (transformers'
  "padding-free" path); no mask, no padding, the window is flash-attention's own.

Anything else (``flex_attention``, paged or hub kernels) is refused: its isolation is not tested.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

from prefopt.errors import ConfigError
from prefopt.models.shared_prompt import SUPPORTED_MODEL_TYPES

VARLEN_SDPA = "prefopt_sdpa_varlen"
MASK_ATTENTION = ("eager",)
VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3", VARLEN_SDPA)
PACKING_ATTENTION = ("sdpa", *MASK_ATTENTION, *VARLEN_ATTENTION)
LAYER_TYPES = ("full_attention", "sliding_attention")


@dataclass(frozen=True)
class PackedRows:
    """The packed layout of a batch: where each sequence sits in the rows.

    Attributes:
        position_ids: (R, L) position of each token inside its sequence (0 on padding).
        sequence_ids: (R, L) the sequence of each token: pair i's chosen is i, its rejected
            B + i; -1 on padding.
        num_pairs: B.
    """

    position_ids: Tensor
    sequence_ids: Tensor
    num_pairs: int

    @classmethod
    def of(cls, batch: dict[str, Tensor]) -> PackedRows | None:
        """The layout of a packed batch, ``None`` for an unpacked one."""
        if "sequence_ids" not in batch:
            return None
        return cls(batch["position_ids"], batch["sequence_ids"], len(batch["prompt_lengths"]))


def varlen_sdpa_attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """transformers' sdpa attention, packed-sequence aware.

    With ``cu_seq_lens_q`` (the packed forward's sequence boundaries over the flattened tokens)
    each sequence attends causally to itself only (within ``sliding_window`` if the layer has
    one), one ``scaled_dot_product_attention`` call per sequence; without, exactly transformers'
    ``sdpa_attention_forward``.

    Args:
        query: (1, heads, N, head_dim); key, value: (1, kv_heads, N, head_dim).

    Returns:
        ``((1, N, heads, head_dim) output, None)``, as transformers' attention functions.
    """
    bounds = kwargs.get("cu_seq_lens_q")
    if bounds is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # grouped-query attention: each key/value head serves `groups` query heads
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    window = kwargs.get("sliding_window")
    edges = bounds.tolist()
    outputs = []
    for start, end in zip(edges[:-1], edges[1:]):
        q, k, v = query[:, :, start:end], key[:, :, start:end], value[:, :, start:end]
        mask = None
        if window is not None and end - start > window:  # causal and inside the window
            i = torch.arange(end - start, device=query.device)
            mask = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - window)  # (n, n)
        outputs.append(
            F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=mask is None, scale=scaling
            )
        )
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous(), None  # (1, N, heads, dim)


AttentionInterface.register(VARLEN_SDPA, varlen_sdpa_attention)
AttentionMaskInterface.register(VARLEN_SDPA, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])


def _use_varlen_sdpa(model: nn.Module) -> None:
    """Switch an sdpa model to :data:`VARLEN_SDPA` (the same attention for unpacked inputs)."""
    if attention_implementation(model) == "sdpa":
        setter = getattr(model, "set_attn_implementation", None)
        if setter is not None:
            setter(VARLEN_SDPA)
        else:
            model.config._attn_implementation = VARLEN_SDPA


def attention_implementation(model: nn.Module) -> str | None:
    """The attention implementation transformers dispatches to (``config._attn_implementation``)."""
    return getattr(getattr(model, "config", None), "_attn_implementation", None)


def check_packing_support(model: nn.Module) -> None:
    """Raise one line unless packed rows keep the sequences of ``model`` apart.

    Raises:
        ConfigError: a model family whose packed forward is not tested, or an attention
            implementation that cannot isolate the sequences.
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ConfigError(
            f"data.packing=true supports {', '.join(SUPPORTED_MODEL_TYPES)} models, not "
            f"{model_type or type(model).__name__}: set data.packing=false"
        )
    implementation = attention_implementation(model)
    if implementation not in PACKING_ATTENTION:
        raise ConfigError(
            f"data.packing=true cannot keep packed sequences apart with attn_implementation="
            f"{implementation}: use model.attn_implementation=sdpa, eager or flash_attention_2"
        )


def block_causal_mask(
    sequence_ids: Tensor, position_ids: Tensor, window: int | None = None
) -> Tensor:
    """Which keys each query may attend to in packed rows.

    Args:
        sequence_ids: (R, L) sequence of each token, -1 on padding.
        position_ids: (R, L) position of each token inside its sequence.
        window: a sliding attention window in positions (``q - k < window``), or ``None``.

    Returns:
        (R, 1, L, L) bool, True where query q may attend to key k: same sequence, not after q
        (and inside the window). A padding token sees only itself, so no row is empty.
    """
    length = sequence_ids.shape[1]
    allowed = sequence_ids[:, :, None] == sequence_ids[:, None, :]  # (R, L, L)
    allowed &= sequence_ids[:, None, :] >= 0
    allowed &= position_ids[:, None, :] <= position_ids[:, :, None]
    if window is not None:
        allowed &= position_ids[:, None, :] > position_ids[:, :, None] - window
    allowed |= torch.eye(length, dtype=torch.bool, device=sequence_ids.device)
    return allowed[:, None]  # (R, 1, L, L)


def _attention_masks(model: nn.Module, packed: PackedRows) -> Tensor | dict[str, Tensor]:
    """The 4D mask for ``sdpa`` (bool) or ``eager`` (additive float), or one per layer type."""
    config = model.config
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if layer_types is None:  # one mask for every layer: Llama (no window), Mistral (its window)
        windows = {"all": window}
    else:  # Qwen2: a window only on its sliding layers
        if set(layer_types) - set(LAYER_TYPES):
            raise ValueError(f"packed rows support the layer types {LAYER_TYPES}: {layer_types}")
        windows = {k: window if k == "sliding_attention" else None for k in set(layer_types)}
    eager = attention_implementation(model) == "eager"
    dtype = model.get_input_embeddings().weight.dtype
    masks = {}
    for kind, kind_window in windows.items():
        mask = block_causal_mask(packed.sequence_ids, packed.position_ids, kind_window)
        if eager:  # eager attention adds its mask to the scores
            mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(
                ~mask, torch.finfo(dtype).min
            )
        masks[kind] = mask
    return masks if len(masks) > 1 else next(iter(masks.values()))  # a dict for mixed layers


def packed_model_inputs(
    model: nn.Module, input_ids: Tensor, packed: PackedRows
) -> tuple[dict[str, Any], Callable[[Tensor], Tensor]]:
    """The model's keyword arguments for a packed batch, and how to read its hidden states.

    Args:
        model: a causal LM that passed :func:`check_packing_support`.
        input_ids: (R, L) the packed token ids.
        packed: the batch's layout.

    Returns:
        ``(kwargs, unflatten)``: ``model(**kwargs)`` runs the isolated forward; ``unflatten``
        turns its final hidden states into (R, L, H) aligned with ``input_ids`` (padding
        positions hold zeros or arbitrary finite values).
    """
    check_packing_support(model)
    _use_varlen_sdpa(model)
    if attention_implementation(model) in MASK_ATTENTION:
        kwargs = {
            "input_ids": input_ids,
            "attention_mask": _attention_masks(model, packed),
            "position_ids": packed.position_ids,
        }
        return kwargs, lambda hidden: hidden
    real = packed.sequence_ids >= 0  # (R, L)
    sequences = packed.sequence_ids[real]  # (N,) the real tokens, row after row
    starts = torch.ones_like(sequences, dtype=torch.bool)
    starts[1:] = sequences[1:] != sequences[:-1]
    end = torch.tensor([len(sequences)], device=sequences.device)
    boundaries = torch.cat([starts.nonzero().flatten(), end])  # (S + 1,) first token of each
    cu_seq_lens = boundaries.to(torch.int32)  # (S + 1,)
    longest = int((boundaries[1:] - boundaries[:-1]).max())
    kwargs = {
        "input_ids": input_ids[real][None],  # (1, N)
        "attention_mask": None,
        "position_ids": packed.position_ids[real][None],  # (1, N)
        "cu_seq_lens_q": cu_seq_lens,
        "cu_seq_lens_k": cu_seq_lens,
        "max_length_q": longest,
        "max_length_k": longest,
    }

    def unflatten(hidden: Tensor) -> Tensor:  # (1, N, H) -> (R, L, H)
        out = hidden.new_zeros((*real.shape, hidden.shape[-1]))
        out[real] = hidden[0]
        return out

    return kwargs, unflatten
