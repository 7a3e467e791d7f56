"""The reference log-prob cache's parts: a weights hash that sees every byte, keys, and files
that are written atomically and refused (with a warning) when they do not fit."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from prefopt.models.reference_cache import (
    ReferenceCache,
    model_description,
    reference_cache_key,
    weights_digest,
)


def _model(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    cfg = AutoConfig.for_model(
        "llama",
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        **overrides,
    )
    return AutoModelForCausalLM.from_config(cfg)


def test_the_weights_hash_sees_every_parameter_byte_and_dtype():
    model = _model()
    digest = weights_digest(model)
    assert len(digest) == 64 and weights_digest(copy.deepcopy(model)) == digest
    assert weights_digest(model.requires_grad_(False)) == digest  # only the values count
    assert weights_digest(_model(seed=1)) != digest
    nudged = copy.deepcopy(model)
    with torch.no_grad():
        weight = nudged.model.layers[0].mlp.down_proj.weight
        weight[3, 5] = torch.nextafter(weight[3, 5], torch.tensor(1.0))  # one ulp, one entry
    assert weights_digest(nudged) != digest
    assert weights_digest(copy.deepcopy(model).to(torch.bfloat16)) != digest
    on_meta = copy.deepcopy(model).to("meta")
    assert weights_digest(on_meta) is None  # nothing to hash: no cache


def test_the_key_changes_with_each_of_its_parts():
    settings = {"reduction": "sum", "chunk_size": 4096}
    base = ("w" * 64, model_description(_model()), "d" * 64, settings)
    key = reference_cache_key(*base)
    assert len(key) == 32 and reference_cache_key(*base) == key
    assert reference_cache_key("x" * 64, *base[1:]) != key
    assert (
        reference_cache_key(base[0], model_description(_model(rms_norm_eps=1e-5)), *base[2:]) != key
    )
    assert reference_cache_key(*base[:2], "e" * 64, settings) != key
    assert reference_cache_key(*base[:3], {**settings, "reduction": "mean"}) != key


def test_a_saved_file_loads_back_and_leaves_no_temporary(tmp_path):
    cache = ReferenceCache(tmp_path / "cache")
    chosen, rejected = torch.tensor([-1.0, -2.5]), torch.tensor([-3.0, -4.0])
    cache.save("k", chosen, rejected, {"split": "train", "pairs": 2})
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["k.pt"]
    loaded = cache.load("k", 2)
    assert torch.equal(loaded[0], chosen) and torch.equal(loaded[1], rejected)
    assert cache.load("other", 2) is None


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"not a torch file", "ignoring the reference log-prob cache file"),
        (None, "not 3 finite float32 values per side"),
    ],
)
def test_a_file_that_does_not_fit_is_refused_with_a_warning(tmp_path, caplog, content, reason):
    cache = ReferenceCache(tmp_path)
    if content is None:  # a valid file, for 2 pairs, asked for 3
        cache.save("k", torch.zeros(2), torch.zeros(2), {})
    else:
        (tmp_path / "k.pt").write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="prefopt.models.reference_cache"):
        assert cache.load("k", 3) is None
    assert reason in caplog.text and "rescoring" in caplog.text


def test_a_folder_that_cannot_be_written_only_warns(tmp_path, caplog):
    blocked = tmp_path / "file"
    blocked.write_text("")
    with caplog.at_level(logging.WARNING, logger="prefopt.models.reference_cache"):
        ReferenceCache(blocked / "cache").save("k", torch.zeros(1), torch.zeros(1), {})
    assert "cannot write the reference log-prob cache" in caplog.text
