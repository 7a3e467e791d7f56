"""The one log-prob function: one forward over [chosen; rejected], shift, mask, reduce.

Only the positions the loss reads go through the LM head: response tokens of every row, plus the
prompt tokens of the chosen rows when the NLL covers them (``nll_scope="full"``). They are scored
in chunks of ``chunk_size`` positions; with gradients, each chunk is recomputed in backward
(activation checkpointing), so no ``(2B, T, V)`` tensor exists and the loss stage holds at most
``chunk_size x V`` logits at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prefopt.models.fused_head import (  # token_logps: re-exported
    VOCAB_CHUNK_SIZE,
    ChunkScorer,
    token_logps,
)
from prefopt.models.packed import PackedRows, packed_model_inputs
from prefopt.models.shared_prompt import (
    SUPPORTED_MODEL_TYPES,
    shared_prompt_hidden,
    supports_prompt_sharing,
)

IGNORE_INDEX = -100
NLL_SCOPES = ("full", "completion", "completion_seq")
PROMPT_SHARING = ("auto", True, False)


def plain_score_chunk(hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor):
    """The unfused chunk scorer: ``log_softmax`` of the chunk's logits, gathered. Slower and
    larger than the fused head, but its graph can be differentiated more than once
    (``retain_graph``), which per-term gradients need."""
    logits = F.linear(hidden, weight, bias).float()  # (N, V)
    logps = logits.log_softmax(-1).gather(1, targets[:, None]).squeeze(1)  # (N,)
    return logps, logits.detach().mean(-1)


@dataclass
class SequenceStats:
    """Per-sequence results for 2B rows (chosen rows first).

    Attributes:
        logps: (2B,) summed log-probs of the response tokens.
        counts: (2B,) number of response tokens.
        nll_sum: () summed negative log-likelihood over the chosen rows' NLL tokens.
        nll_count: () the normaliser of ``nll_sum`` (tokens, or B for ``completion_seq``).
        logits_sum: (2B,) sum over response positions of the vocabulary-mean logit (detached).
        aux_loss: () the MoE router load-balancing loss, if the model returned one.
    """

    logps: Tensor
    counts: Tensor
    nll_sum: Tensor
    nll_count: Tensor
    logits_sum: Tensor
    aux_loss: Tensor | None = None

    @property
    def avg_logps(self) -> Tensor:
        """(2B,) mean per-token log-probs of the responses."""
        return self.logps / self.counts


@dataclass(frozen=True)
class Scoring:
    """How a batch is scored: the settings of :func:`sequence_stats` that stay fixed for a run.

    Attributes:
        nll_scope: which tokens the NLL covers and how it is pooled (see :func:`sequence_stats`).
        chunk_size: positions per LM-head chunk (``None``: no chunking).
        prompt_sharing: run each pair's prompt through the decoder once for both responses
            (:mod:`prefopt.models.shared_prompt`): ``"auto"`` where the model supports it,
            ``True`` (:meth:`check` raises where it does not) or ``False``. Same losses and
            gradients either way.
        score_chunk: the LM-head chunk scorer (see :func:`token_logps`; ``None``: the fused one).
        vocab_chunk_size: vocabularies larger than this are tiled (``None``: never); the loss
            stage then holds ``chunk_size x vocab_chunk_size`` logits at most.
    """

    nll_scope: str = "full"
    chunk_size: int | None = 4096
    prompt_sharing: bool | str = False
    score_chunk: ChunkScorer | None = None
    vocab_chunk_size: int | None = VOCAB_CHUNK_SIZE

    def __post_init__(self) -> None:
        if self.nll_scope not in NLL_SCOPES:
            raise ValueError(
                f"unknown nll_scope {self.nll_scope!r}; available: {', '.join(NLL_SCOPES)}"
            )
        if self.prompt_sharing not in PROMPT_SHARING:
            raise ValueError(
                f"prompt_sharing must be auto, true or false, got {self.prompt_sharing!r}"
            )

    def check(self, model: nn.Module) -> None:
        """Raise one line if ``prompt_sharing=True`` but ``model`` does not support it."""
        if self.prompt_sharing is True and not supports_prompt_sharing(model):
            raise ValueError(
                f"prompt_sharing=true, but {type(model).__name__} does not support it (supported: "
                f"{', '.join(SUPPORTED_MODEL_TYPES)}, without gradient checkpointing); use auto"
            )

    def __call__(
        self,
        model: nn.Module,
        batch: dict[str, Tensor],
        rejected_grad: bool = True,
        output_router_logits: bool = False,
    ) -> SequenceStats:
        """:func:`sequence_stats` of a collated batch, padded or packed (``docs/_interfaces.md``).

        A packed batch (``data.packing``) is scored unshared: ``auto`` means no prompt sharing
        there, ``True`` is refused.
        """
        packed = PackedRows.of(batch)
        if packed is not None and self.prompt_sharing is True:
            raise ValueError(
                "prompt_sharing=true does not combine with packed batches (data.packing=true): "
                "use prompt_sharing=auto or false"
            )
        share = packed is None and (
            self.prompt_sharing is True
            or (self.prompt_sharing == "auto" and not output_router_logits)
        )
        prompt_lengths = None  # rows longer than a sliding window: the unshared forward
        if share and "prompt_lengths" in batch:
            if supports_prompt_sharing(model, batch["input_ids"].shape[1]):
                prompt_lengths = batch["prompt_lengths"]
        return sequence_stats(
            model,
            batch["input_ids"],
            batch["attention_mask"],
            batch["labels"],
            nll_scope=self.nll_scope,
            chunk_size=self.chunk_size,
            rejected_grad=rejected_grad,
            output_router_logits=output_router_logits,
            prompt_lengths=prompt_lengths,
            score_chunk=self.score_chunk,
            packed=packed,
            vocab_chunk_size=self.vocab_chunk_size,
        )


def sequence_stats(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    labels: Tensor,
    nll_scope: str = "full",
    chunk_size: int | None = 4096,
    rejected_grad: bool = True,
    output_router_logits: bool = False,
    prompt_lengths: Tensor | None = None,
    score_chunk: ChunkScorer | None = None,
    packed: PackedRows | None = None,
    vocab_chunk_size: int | None = VOCAB_CHUNK_SIZE,
) -> SequenceStats:
    """One forward over the concatenated batch, then per-sequence log-probs and the NLL.

    Args:
        model: a Hugging Face causal LM (``base_model`` + ``get_output_embeddings()``).
        input_ids: (2B, T) chosen rows first, then rejected rows, right-padded; or, with
            ``packed``, (R, L) packed rows.
        attention_mask: (2B, T) 1 on real tokens (packed: (R, L), not given to the model).
        labels: (2B, T) unshifted; the token id on response tokens, -100 elsewhere (packed:
            (R, L), the same per token).
        nll_scope: ``full`` (prompt + response tokens of the chosen rows, token-pooled: the
            official ORPO code and TRL), ``completion`` (chosen response tokens, token-pooled),
            or ``completion_seq`` (per-sequence mean over the chosen response, then the batch
            mean: LLaMA-Factory).
        chunk_size: see :func:`token_logps`.
        rejected_grad: when False, the rejected rows are scored without gradients.
        output_router_logits: ask an MoE model for its router load-balancing loss.
        prompt_lengths: (B,) prompt tokens of each pair; when given, each prompt runs through the
            decoder once for both responses (``shared_prompt_hidden``; the caller checks
            ``supports_prompt_sharing``, both in :mod:`prefopt.models.shared_prompt`).
        score_chunk, vocab_chunk_size: see :func:`token_logps`.
        packed: the layout of a packed batch (:class:`prefopt.models.packed.PackedRows`): one
            isolated forward over its rows, then each scored position is mapped back to its
            sequence, so the results are the unpacked ones, in the same (2B,) order.

    Returns:
        :class:`SequenceStats` for the 2B sequences (chosen first).
    """
    if nll_scope not in NLL_SCOPES:
        raise ValueError(f"unknown nll_scope {nll_scope!r}; available: {', '.join(NLL_SCOPES)}")
    num_pairs = input_ids.shape[0] // 2 if packed is None else packed.num_pairs
    if packed is not None:  # several sequences per row, none attending to another
        if output_router_logits or prompt_lengths is not None:
            raise ValueError("packed rows support neither output_router_logits nor prompt sharing")
        kwargs, unflatten = packed_model_inputs(model, input_ids, packed)
        hidden, aux_loss = _last_hidden_state(model, **kwargs, output_router_logits=False)
        hidden = unflatten(hidden)  # (R, L, H)
    elif prompt_lengths is not None:  # each prompt once, for both responses
        if output_router_logits:
            raise ValueError("prompt sharing does not support output_router_logits (MoE)")
        hidden = shared_prompt_hidden(model, input_ids, attention_mask, prompt_lengths)
        aux_loss = None
    else:
        hidden, aux_loss = _last_hidden_state(
            model, input_ids, attention_mask, output_router_logits
        )

    # position t predicts token t+1 of its sequence; `sequence` is that token's (2B,) index
    if packed is None:
        real = attention_mask[:, 1:].bool()  # (2B, T-1)
        sequence = torch.arange(input_ids.shape[0], device=input_ids.device)[:, None]
        sequence = sequence.expand_as(real)  # (2B, T-1): row r is sequence r
    else:
        ids = packed.sequence_ids
        real = (ids[:, 1:] == ids[:, :-1]) & (ids[:, 1:] >= 0)  # (R, L-1)
        sequence = ids[:, 1:]  # (R, L-1)
    response = (labels[:, 1:] != IGNORE_INDEX) & real  # (2B, T-1) or (R, L-1)
    needed = response | (real & (sequence < num_pairs)) if nll_scope == "full" else response
    targets = torch.where(response, labels[:, 1:], input_ids[:, 1:])
    rows, cols = needed.nonzero(as_tuple=True)  # (N,), row-major: chosen rows come first
    if packed is not None:  # chosen positions first (stable), as token_logps expects
        order = torch.argsort((sequence[rows, cols] >= num_pairs).to(torch.int8), stable=True)
        rows, cols = rows[order], cols[order]
    seqs = sequence[rows, cols]  # (N,)
    grad_positions = None if rejected_grad else int((seqs < num_pairs).sum())
    logps, logit_means = token_logps(
        hidden[rows, cols],  # (N, H)
        model.get_output_embeddings(),
        targets[rows, cols],
        chunk_size=chunk_size,
        grad_positions=grad_positions,
        score_chunk=score_chunk,
        vocab_chunk_size=vocab_chunk_size,
    )

    is_response = response[rows, cols]  # (N,)
    zeros = logps.new_zeros(2 * num_pairs)
    seq_logps = zeros.index_add(0, seqs[is_response], logps[is_response])  # (2B,)
    logits_sum = zeros.index_add(0, seqs[is_response], logit_means[is_response])  # (2B,)
    if packed is None:
        counts = response.sum(1)  # (2B,)
    else:
        counts = torch.bincount(sequence[response], minlength=2 * num_pairs)  # (2B,)
    if nll_scope == "full":
        chosen = seqs < num_pairs
        nll_sum, nll_count = -logps[chosen].sum(), chosen.sum()
    elif nll_scope == "completion":
        nll_sum, nll_count = -seq_logps[:num_pairs].sum(), counts[:num_pairs].sum()
    else:
        nll_sum = -(seq_logps[:num_pairs] / counts[:num_pairs]).sum()
        nll_count = torch.tensor(num_pairs, device=logps.device)
    return SequenceStats(seq_logps, counts, nll_sum, nll_count, logits_sum, aux_loss)


def _last_hidden_state(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor | dict[str, Tensor] | None,
    output_router_logits: bool,
    **kwargs,
) -> tuple[Tensor, Tensor | None]:
    """(2B, T, H) final (normalised) hidden states, captured from the decoder inside the root
    forward (so that wrappers such as FSDP see an ordinary call), and the MoE aux loss.
    ``kwargs`` go to the model (a packed batch's position ids and varlen lengths)."""
    captured: list[Tensor] = []
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft
    hook = inner.base_model.register_forward_hook(
        lambda _module, _args, output: captured.append(output.last_hidden_state)
    )
    if output_router_logits:
        kwargs["output_router_logits"] = True
    try:
        # logits_to_keep=1: the model's own LM head runs on one position only; we run ours.
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            use_cache=False,
            logits_to_keep=1,
            **kwargs,
        )
    finally:
        hook.remove()
    return captured[-1], getattr(out, "aux_loss", None)
