"""LoRA through peft: only the adapters train, DPO's reference is the model with its adapters
disabled (no copy); QLoRA composes and stops with one line where there is no CUDA."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from hydra.utils import instantiate

from prefopt.cli.train import train
from prefopt.data import build_builtin_tokenizer
from prefopt.errors import ConfigError
from prefopt.models import build_tiny_model, sequence_stats
from prefopt.models.peft import apply_lora
from prefopt.models.reference import AdaptersOffReference
from prefopt.objectives.dpo import DPO
from prefopt.training import PreferenceModule
from tests.conftest import compose_train


def _batch(num_pairs: int = 2, length: int = 12, prompt: int = 5) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, 250, (2 * num_pairs, length), generator=generator)
    labels = input_ids.clone()
    labels[:, :prompt] = -100
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}


def test_lora_dpo_reference_is_the_base_model_without_a_copy():
    torch.manual_seed(0)
    model = build_tiny_model(build_builtin_tokenizer(), hidden_size=32, num_layers=2, num_heads=4)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    model = apply_lora(model, r=4, alpha=8, dropout=0.0)
    for name, param in model.named_parameters():
        if "lora_B" in name:  # adapters that change the output (peft starts them at zero)
            torch.nn.init.normal_(param, std=0.5)
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    module = PreferenceModule(
        model, DPO(beta=0.1), partial(torch.optim.AdamW, lr=1e-3), reference="model"
    )
    assert isinstance(module.reference, AdaptersOffReference)
    assert not any(name.startswith("reference.") for name in module.state_dict())  # no copy

    batch = _batch()
    ref_chosen, ref_rejected = module.reference.logps(module.model, batch, module.scoring, "sum")
    plain = build_tiny_model(build_builtin_tokenizer(), hidden_size=32, num_layers=2, num_heads=4)
    plain.load_state_dict(base)
    expected = sequence_stats(plain, batch["input_ids"], batch["attention_mask"], batch["labels"])
    torch.testing.assert_close(torch.cat([ref_chosen, ref_rejected]), expected.logps)
    policy = sequence_stats(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert not torch.allclose(policy.logps, expected.logps)  # the adapters are on for the policy


def test_lora_config_adapts_the_named_modules(tmp_path):
    cfg = compose_train(tmp_path, ["peft=lora", "peft.r=8", "peft.target_modules=[q_proj,v_proj]"])
    model = instantiate(cfg.peft)(build_tiny_model(build_builtin_tokenizer(), hidden_size=32))
    adapted = {
        n.split(".lora_")[0].split(".")[-1] for n, p in model.named_parameters() if p.requires_grad
    }
    assert adapted == {"q_proj", "v_proj"}
    assert model.peft_config["default"].r == 8


def test_lora_run_trained_only_the_adapters(lora_run):
    checkpoint = torch.load(lora_run / "checkpoints" / "last.ckpt", weights_only=True)
    lora_b = [v for k, v in checkpoint["state_dict"].items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # moved away from their zero start
    (optimizer,) = checkpoint["optimizer_states"]
    num_trained = sum(len(group["params"]) for group in optimizer["param_groups"])
    assert num_trained == sum("lora_" in k for k in checkpoint["state_dict"])


def test_qlora_composes_and_stops_in_one_line_without_cuda(tmp_path):
    cfg = compose_train(tmp_path, ["peft=qlora"])
    assert cfg.model._target_ == "prefopt.models.load_model"
    assert cfg.model.quantization.quant_type == "nf4" and cfg.peft.r == 16
    assert cfg.peft._target_ == "prefopt.models.peft.apply_lora"
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the CPU error does not apply")
    with pytest.raises(ConfigError, match="peft=qlora loads 4-bit weights .* needs a CUDA GPU"):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()
