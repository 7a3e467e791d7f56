"""``prefopt-export``: a training checkpoint -> a Hugging Face model folder.

prefopt-export outputs/train/RUN OUT_DIR                   # the run's checkpoints/last.ckpt
prefopt-export outputs/train/RUN/checkpoints/best-step400.ckpt OUT_DIR
prefopt-export RUN OUT_DIR --adapter                       # LoRA runs: the adapter, not merged

Any checkpoint Lightning wrote works: a single file (single device, DDP, FSDP2 with
``save_distributed_checkpoint=false``), a sharded folder (FSDP2, FSDP1 ``state_dict_type=sharded``)
or a DeepSpeed folder (needs ``deepspeed``). The model and tokenizer are rebuilt from the run's
``config_resolved.yaml``; the folder gets the weights (``save_pretrained``), the tokenizer and its
chat template, and loads with ``AutoModelForCausalLM.from_pretrained``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
import tempfile
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from prefopt.data import load_tokenizer

log = logging.getLogger(__name__)

CONFIG_NAME = "config_resolved.yaml"
POLICY_PREFIX = "model."  # PreferenceModule.model; the reference model's weights are skipped


def build_model(cfg: DictConfig) -> tuple[nn.Module, PreTrainedTokenizerBase]:
    """The run's model (with its LoRA adapters if ``cfg.peft``) and tokenizer, from its config."""
    tokenizer = load_tokenizer(cfg.model.tokenizer)
    model = instantiate(cfg.model, tokenizer=tokenizer)
    if cfg.get("peft"):
        model = instantiate(cfg.peft)(model)
    return model, tokenizer


def find_config(path: Path) -> Path:
    """The ``config_resolved.yaml`` of the run that ``path`` (a run folder or checkpoint) is in."""
    for folder in (path, *path.parents):
        if (folder / CONFIG_NAME).is_file():
            return folder / CONFIG_NAME
    raise FileNotFoundError(f"no {CONFIG_NAME} in {path} or its parents: pass --config")


def load_policy_state(path: Path) -> dict[str, Tensor]:
    """The policy's weights in a Lightning checkpoint, keyed as in the Hugging Face model.

    Args:
        path: a checkpoint file, a sharded (torch.distributed.checkpoint) folder or a DeepSpeed
            folder.

    Raises:
        ImportError: for a DeepSpeed checkpoint without ``deepspeed`` installed.
    """
    if (path / "latest").is_file():
        state = _deepspeed_state(path)
    elif (path / ".metadata").is_file():
        state = _sharded_state(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return policy_weights(state)


def policy_weights(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The policy's entries of a ``PreferenceModule`` state dict, without the ``model.`` prefix
    (the reference model's are dropped)."""
    return {k[len(POLICY_PREFIX) :]: v for k, v in state.items() if k.startswith(POLICY_PREFIX)}


def _sharded_state(path: Path) -> dict[str, Tensor]:
    """Read only the model weights of a sharded checkpoint, in one process."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    reader = dcp.FileSystemReader(path)
    prefix = "state_dict."
    state = {
        key[len(prefix) :]: torch.empty(meta.size, dtype=meta.properties.dtype)
        for key, meta in reader.read_metadata().state_dict_metadata.items()
        if key.startswith(prefix) and isinstance(meta, TensorStorageMetadata)
    }
    dcp.load({"state_dict": state}, storage_reader=reader, no_dist=True)
    return state


def _deepspeed_state(path: Path) -> dict[str, Tensor]:
    if importlib.util.find_spec("deepspeed") is None:
        raise ImportError(
            f"{path} is a DeepSpeed checkpoint: consolidating it needs deepspeed "
            "(pip install 'prefopt[deepspeed]')"
        )
    from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "consolidated.ckpt"
        convert_zero_checkpoint_to_fp32_state_dict(path, out)
        return torch.load(out, map_location="cpu", weights_only=False)["state_dict"]


def save_hf(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, out_dir: Path, merge_lora: bool = True
) -> Path:
    """Write ``model`` and ``tokenizer`` to ``out_dir`` in the Hugging Face format.

    A LoRA model is merged into its base weights (``merge_lora``), or saved as an adapter whose
    ``base_model_name_or_path`` is the pretrained model, or ``out_dir/base`` (written here) for
    a model built from a config. Either loads with ``AutoModelForCausalLM.from_pretrained``.
    The model is modified (merged or unloaded) when it has adapters.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    is_peft = hasattr(model, "merge_and_unload")
    if is_peft and merge_lora:
        model = model.merge_and_unload()
    model.save_pretrained(out_dir)
    if is_peft and not merge_lora:
        base_path = model.peft_config["default"].base_model_name_or_path
        if not base_path:  # built from a config (tiny): write the base weights too
            base_path = str((out_dir / "base").resolve())
            model.unload().save_pretrained(base_path)
            tokenizer.save_pretrained(base_path)
        config_file = out_dir / "adapter_config.json"
        config = json.loads(config_file.read_text())
        config_file.write_text(
            json.dumps({**config, "base_model_name_or_path": base_path}, indent=2)
        )
    tokenizer.save_pretrained(out_dir)
    return out_dir


def export(
    checkpoint: Path, out_dir: Path, merge_lora: bool = True, config: Path | None = None
) -> Path:
    """Rebuild the run's model, load ``checkpoint`` (or a run folder's ``last.ckpt``), save it.

    Returns:
        ``out_dir``.
    """
    if (checkpoint / "checkpoints" / "last.ckpt").exists():
        checkpoint = checkpoint / "checkpoints" / "last.ckpt"
    cfg = OmegaConf.load(config or find_config(checkpoint))
    state = load_policy_state(checkpoint.resolve())
    model, tokenizer = build_model(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in _tied_keys(model)]
    if missing or unexpected:
        raise ValueError(
            f"{checkpoint} does not match the model of {config or find_config(checkpoint)}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    log.info("loaded %d tensors from %s", len(state), checkpoint)
    return save_hf(model, tokenizer, out_dir, merge_lora=merge_lora)


def _tied_keys(model: nn.Module) -> set[str]:
    """Parameter names that alias another parameter (tied embeddings): absent from some
    checkpoints, filled by the tie."""
    seen, tied = set(), set()
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            tied.add(name)
        seen.add(id(param))
    return tied


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (``prefopt-export``)."""
    parser = argparse.ArgumentParser(prog="prefopt-export", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a run folder or a checkpoint file/folder")
    parser.add_argument("out_dir", type=Path, help="the Hugging Face folder to write")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--merge-lora",
        dest="merge_lora",
        action="store_true",
        default=True,
        help="merge LoRA adapters into the base weights (default)",
    )
    mode.add_argument(
        "--adapter",
        dest="merge_lora",
        action="store_false",
        help="save LoRA adapters as a peft adapter folder",
    )
    parser.add_argument("--config", type=Path, help=f"the run's {CONFIG_NAME} (default: found)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        out = export(args.checkpoint, args.out_dir, args.merge_lora, args.config)
    except (FileNotFoundError, ImportError, ValueError) as err:
        print(f"prefopt-export: error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
