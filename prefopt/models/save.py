"""Write a trained policy in the Hugging Face format, and read it back from any checkpoint.

A checkpoint is whatever Lightning wrote: a single file (single device, DDP, FSDP2 with
``save_distributed_checkpoint=false``), a sharded folder (FSDP2, FSDP1 ``state_dict_type=sharded``)
or a DeepSpeed folder (needs ``deepspeed``). Files are loaded with ``weights_only=True``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from prefopt.errors import CheckpointError, DataNotFoundError, MissingDependencyError

log = logging.getLogger(__name__)

POLICY_PREFIX = "model."  # PreferenceModule.model; the reference model's weights are skipped


def load_checkpoint_file(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``: tensors and plain values only, never code.

    Raises:
        DataNotFoundError: no such file.
        CheckpointError: one line naming the file, for a file that holds other objects (a
            crafted or foreign pickle), a truncated or non-torch file, or not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: refused to load: it holds objects other than tensors and plain values "
            f"(loaded with weights_only=True; {reason[:160]})"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated, or not a file torch.save wrote): "
            f"{str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__}"
        ) from err
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: not a Lightning checkpoint (a {type(checkpoint).__name__})")
    return checkpoint


def load_policy_state(path: Path) -> dict[str, Tensor]:
    """The policy's weights in a Lightning checkpoint, keyed as in the Hugging Face model.

    Args:
        path: a checkpoint file, a sharded (torch.distributed.checkpoint) folder or a DeepSpeed
            folder.

    Raises:
        MissingDependencyError: for a DeepSpeed checkpoint without ``deepspeed`` installed.
        CheckpointError: a file that cannot be loaded, or holds no policy weights.
    """
    if (path / "latest").is_file():
        state = _deepspeed_state(path)
    elif (path / ".metadata").is_file():
        state = _sharded_state(path)
    else:
        checkpoint = load_checkpoint_file(path)
        if "state_dict" not in checkpoint:
            raise CheckpointError(f"{path}: not a Lightning checkpoint (no state_dict)")
        state = checkpoint["state_dict"]
    weights = policy_weights(state)
    if not weights:
        raise CheckpointError(f"{path}: holds no policy weights (no 'model.' entries)")
    return weights


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
        raise MissingDependencyError(
            f"{path} is a DeepSpeed checkpoint: consolidating it needs deepspeed "
            "(pip install 'prefopt[deepspeed]')"
        )
    from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

    log.warning(
        "%s: DeepSpeed checkpoints are read with deepspeed's own loader, which unpickles "
        "arbitrary objects: export only DeepSpeed checkpoints you trust",
        path,
    )
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


def tied_keys(model: nn.Module) -> set[str]:
    """Parameter names that alias another parameter (tied embeddings): absent from some
    checkpoints, filled by the tie."""
    seen, tied = set(), set()
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            tied.add(name)
        seen.add(id(param))
    return tied
