"""Every objective trains the same on packed batches: ``batch_loss`` of a packed batch gives the
padded batch's loss, metrics and gradients (every config in configs/objective/, Llama, Qwen2 and
Mistral, each NLL scope, a precomputed or a frozen-copy reference)."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.testing import assert_close

from prefopt.data.collate import PreferenceCollator
from prefopt.data.packing import PackedPreferenceCollator
from prefopt.models.logps import Scoring
from prefopt.models.reference import PrecomputedReference, make_reference
from prefopt.training import batch_loss
from tests.conftest import tiny_decoder

VOCAB = 53
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "objective"
OBJECTIVES = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _model(architecture: str):
    return tiny_decoder(architecture, VOCAB).train()  # training mode, as the step under test


def _rows():
    """Five pairs of 2 to 9 tokens per part, with reference log-probs for the DPO family."""
    g = torch.Generator().manual_seed(3)
    rows = []
    for i, lengths in enumerate([(4, 3, 5), (2, 7, 2), (6, 1, 4), (3, 9, 8), (5, 2, 2)]):
        ids = [torch.randint(1, VOCAB, (n,), generator=g).tolist() for n in lengths]
        row = dict(zip(("prompt_input_ids", "chosen_input_ids", "rejected_input_ids"), ids))
        rows.append(row | {"ref_chosen_logps": -14.0 - i, "ref_rejected_logps": -15.0 + i})
    return rows


def _loss(model, objective, batch, scoring, reference):
    model.zero_grad()
    out = batch_loss(model, objective, batch, scoring, reference)
    out.loss.backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same_step(model, objective, scoring, reference):
    rows = _rows()
    plain = PreferenceCollator(pad_token_id=0)(rows)
    packed = PackedPreferenceCollator(pad_token_id=0, pack_length=24)(rows)
    assert packed["input_ids"].shape[0] < plain["input_ids"].shape[0]  # fewer, longer rows
    expected, expected_grads = _loss(model, objective, plain, scoring, reference)
    actual, actual_grads = _loss(model, objective, packed, scoring, reference)
    assert_close(actual.loss, expected.loss, atol=1e-6, rtol=1e-5)
    assert set(actual.values) == set(expected.values)
    for key, value in expected.values.items():
        assert_close(actual.values[key], value, atol=1e-5, rtol=1e-5, msg=key)
    for key, weight in expected.weights.items():
        assert_close(actual.weights[key], weight, msg=key)
    assert set(actual_grads) == set(expected_grads) and expected_grads
    # float rounding scales with the gradients: SPPO's squared log-ratios give entries near 50
    scale = max(1.0, max(float(g.abs().max()) for g in expected_grads.values()))
    for name, grad in expected_grads.items():
        assert_close(actual_grads[name], grad, atol=1e-6 * scale, rtol=1e-4, msg=name)


@pytest.mark.parametrize("architecture", ["llama", "qwen2", "mistral"])
@pytest.mark.parametrize("name", OBJECTIVES)
def test_every_objective_has_the_padded_loss_metrics_and_gradients(architecture, name):
    objective = instantiate(OmegaConf.load(CONFIG_DIR / f"{name}.yaml"))
    _assert_same_step(_model(architecture), objective, Scoring(), PrecomputedReference())


@pytest.mark.parametrize("scope", ["full", "completion", "completion_seq"])
@pytest.mark.parametrize("reference", ["precomputed", "model"])
def test_nll_scopes_and_a_frozen_reference_model(scope, reference):
    """DPO + NLL (rpo): the NLL of each scope, and a frozen copy scoring the packed batch too."""
    model = _model("llama")
    objective = instantiate(OmegaConf.load(CONFIG_DIR / "rpo.yaml"))
    provider = make_reference(reference, model)
    _assert_same_step(model, objective, Scoring(scope, chunk_size=5), provider)
