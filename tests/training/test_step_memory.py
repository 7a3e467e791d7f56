"""A training step never allocates a (2B, T, V) tensor: every tensor that spans the vocabulary
holds at most ``logits_chunk_size`` positions (a dispatch-level probe over forward + backward)."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from transformers import AutoConfig, AutoModelForCausalLM

from prefopt.data.collate import PreferenceCollator
from prefopt.models.logps import Scoring
from prefopt.models.reference import PrecomputedReference
from prefopt.objectives.dpo import DPO
from prefopt.objectives.orpo import ORPO
from prefopt.objectives.sft import SFT
from prefopt.training import batch_loss

VOCAB = 997  # prime: no other dimension of the step equals it
HIDDEN = 32
CHUNK = 8


class ShapeProbe(TorchDispatchMode):
    """Records the shape of every tensor produced by every operator, backward included."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.shapes += [tuple(t.shape) for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        return out

    def vocabulary_tensors(self) -> list[tuple[int, ...]]:
        """Shapes with a vocabulary dimension, except the (V, H) weight, its gradient and their
        transposes."""
        weights = ((VOCAB, HIDDEN), (HIDDEN, VOCAB))
        return [s for s in self.shapes if VOCAB in s and s not in weights]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = AutoConfig.for_model(
        "llama",
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
    )
    return AutoModelForCausalLM.from_config(cfg)


def _batch(with_reference: bool = False):
    """Three pairs, T = 13: 2B x T x V = 77,766 elements; a chunk is 8 x 997 = 7,976."""
    g = torch.Generator().manual_seed(0)
    rows = []
    for p, c, r in [(5, 8, 3), (4, 2, 9), (6, 5, 5)]:
        ids = [torch.randint(1, VOCAB, (n,), generator=g).tolist() for n in (p, c, r)]
        row = dict(zip(("prompt_input_ids", "chosen_input_ids", "rejected_input_ids"), ids))
        if with_reference:
            row |= {"ref_chosen_logps": -10.0, "ref_rejected_logps": -12.0}
        rows.append(row)
    return PreferenceCollator(pad_token_id=0)(rows)


@pytest.mark.parametrize("objective", [ORPO(lam=0.1), SFT(lam=0.1), DPO(beta=0.1)])
@pytest.mark.parametrize("prompt_sharing", [False, True])
def test_training_step_never_holds_more_than_a_chunk_of_logits(model, objective, prompt_sharing):
    scoring = Scoring(chunk_size=CHUNK, prompt_sharing=prompt_sharing)
    batch = _batch(with_reference=objective.needs_reference)
    two_b, width = batch["input_ids"].shape
    probe = ShapeProbe()
    with probe:
        out = batch_loss(model, objective, batch, scoring, PrecomputedReference())
        out.loss.backward()
    sizes = [torch.Size(s).numel() for s in probe.vocabulary_tensors()]
    assert sizes, "the probe saw no logits at all"
    assert max(sizes) <= CHUNK * VOCAB < two_b * width * VOCAB
    assert model.lm_head.weight.grad is not None
    model.zero_grad()


def test_probe_catches_the_full_logits_of_the_straightforward_forward(model):
    batch = _batch()
    probe = ShapeProbe()
    with probe:
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert tuple(batch["input_ids"].shape) + (VOCAB,) in probe.vocabulary_tensors()


def test_a_tiled_vocabulary_never_holds_a_row_of_logits(model):
    """With vocab_chunk_size below the vocabulary, no tensor but the LM-head weight (and its
    gradient) spans the vocabulary: the loss stage holds chunk x tile logits, whatever V."""
    tile = 100
    scoring = Scoring(chunk_size=CHUNK, vocab_chunk_size=tile)
    probe = ShapeProbe()
    with probe:
        out = batch_loss(model, ORPO(lam=0.1), _batch(), scoring)
        out.loss.backward()
    # only the model's own head on one position per row (logits_to_keep=1): (2B, 1, V)
    rows = _batch()["input_ids"].shape[0]
    assert set(probe.vocabulary_tensors()) <= {(rows, VOCAB), (rows, 1, VOCAB)}
    assert any(s[-1] == tile and s[0] <= CHUNK for s in probe.shapes if len(s) == 2)
    model.zero_grad()
