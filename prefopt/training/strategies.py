"""Sharding strategies: FSDP2 (per decoder layer, then the root) and FSDP1 (auto-wrap by layer).

Both find a model's decoder layers generically: the modules whose class is named in the Hugging
Face model's ``_no_split_modules`` (e.g. ``LlamaDecoderLayer``), so any architecture works
without naming its layer class in the config.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.collectives.torch_collective import default_pg_timeout
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from torch import nn

from prefopt.models.load import enable_activation_checkpointing

log = logging.getLogger(__name__)


def decoder_layer_classes(module: nn.Module) -> set[type[nn.Module]]:
    """Classes of the decoder layers inside ``module`` (a model, a peft model or a wrapper).

    Raises:
        ValueError: when no submodule declares ``_no_split_modules`` or none of them is found.
    """
    names = set()
    for sub in module.modules():
        names.update(getattr(sub, "_no_split_modules", None) or ())
    classes = {type(sub) for sub in module.modules() if type(sub).__name__ in names}
    if not classes:
        raise ValueError(
            f"found no decoder layers to shard in {type(module).__name__}: no submodule's class is "
            f"in the model's _no_split_modules ({sorted(names) or 'not declared'})"
        )
    return classes


def decoder_layers(module: nn.Module) -> list[nn.Module]:
    """The decoder layers inside ``module``, in order (see :func:`decoder_layer_classes`)."""
    classes = tuple(decoder_layer_classes(module))
    return [sub for sub in module.modules() if isinstance(sub, classes)]


def _dtype(name: str | None) -> torch.dtype | None:
    return None if name is None else getattr(torch, name)


class FSDP2Strategy(ModelParallelStrategy):
    """FSDP2 data parallelism: ``fully_shard`` on every decoder layer, then on the model.

    ``PreferenceModule.configure_model`` calls :meth:`shard_module` for the policy and for a
    frozen-copy reference model, so both are sharded the same way. Sharded checkpoints (the
    default) are folders written by every rank; they are written under a hidden name and
    published by atomically swapping the ``last.ckpt`` (or ``best-...ckpt``) symlink, so a kill
    during a save leaves the previous checkpoint intact.

    Args:
        param_dtype: compute dtype of the gathered parameters (``bfloat16`` on GPUs; ``None``
            keeps the parameters' dtype).
        reduce_dtype: dtype of the gradient reduce-scatter (``None``: ``param_dtype``).
        cpu_offload: keep sharded parameters, gradients and optimizer states in CPU memory.
        activation_checkpointing: recompute each decoder layer's activations in backward.
        reshard_after_forward: free gathered layer parameters after forward (ZeRO-3 style);
            ``False`` keeps them until backward (ZeRO-2 style, more memory, less communication).
        save_distributed_checkpoint: every rank writes its shard (a folder); ``False`` gathers
            a full checkpoint file on rank 0.
        process_group_backend: ``None``: nccl on GPUs, gloo on CPUs.
        timeout: collective timeout.
    """

    def __init__(
        self,
        param_dtype: str | None = None,
        reduce_dtype: str | None = None,
        cpu_offload: bool = False,
        activation_checkpointing: bool = False,
        reshard_after_forward: bool = True,
        save_distributed_checkpoint: bool = True,
        process_group_backend: str | None = None,
        timeout: timedelta | None = default_pg_timeout,
    ) -> None:
        super().__init__(
            data_parallel_size="auto",
            tensor_parallel_size=1,
            save_distributed_checkpoint=save_distributed_checkpoint,
            process_group_backend=process_group_backend,
            timeout=timeout,
        )
        self.param_dtype = _dtype(param_dtype)
        self.reduce_dtype = _dtype(reduce_dtype)
        self.cpu_offload = cpu_offload
        self.activation_checkpointing = activation_checkpointing
        self.reshard_after_forward = reshard_after_forward

    def setup_environment(self) -> None:
        if self._data_parallel_size == "auto":  # every process is a data-parallel replica
            self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()

    def shard_module(self, module: nn.Module) -> nn.Module:
        """Apply ``fully_shard`` to each decoder layer of ``module``, then to ``module`` itself."""
        from torch.distributed.fsdp import (
            CPUOffloadPolicy,
            FSDPModule,
            MixedPrecisionPolicy,
            fully_shard,
        )

        if isinstance(module, FSDPModule):  # configure_model runs again for trainer.validate
            return module
        if self.activation_checkpointing:  # per decoder layer; FSDP2 unshards for the recompute
            enable_activation_checkpointing(module)
        kwargs: dict[str, Any] = {
            "mesh": self.device_mesh["data_parallel"],
            "mp_policy": MixedPrecisionPolicy(self.param_dtype, self.reduce_dtype),
        }
        if self.cpu_offload:
            kwargs["offload_policy"] = CPUOffloadPolicy(pin_memory=torch.cuda.is_available())
        layers = decoder_layers(module)
        for layer in layers:
            fully_shard(layer, reshard_after_forward=self.reshard_after_forward, **kwargs)
        fully_shard(module, **kwargs)
        log.info("FSDP2: sharded %s (%d decoder layers)", type(module).__name__, len(layers))
        return module

    def save_checkpoint(
        self, checkpoint: dict[str, Any], filepath: str | Path, storage_options: Any | None = None
    ) -> None:
        if not self._save_distributed_checkpoint:
            return super().save_checkpoint(checkpoint, filepath, storage_options)
        path = Path(self.broadcast(str(filepath)))
        target = path.with_name(self.broadcast(f".{path.name}.{time.time_ns()}"))
        super().save_checkpoint(checkpoint, target, storage_options)
        self.barrier()
        if self.is_global_zero:
            _publish(path, target)
        self.barrier()

    def remove_checkpoint(self, filepath: str | Path) -> None:
        path = Path(filepath)
        if self.is_global_zero and path.is_symlink():
            target = path.resolve()
            path.unlink()
            shutil.rmtree(target, ignore_errors=True)
        else:
            super().remove_checkpoint(filepath)


def _publish(path: Path, target: Path) -> None:
    """Point the ``path`` symlink at the complete folder ``target`` (an atomic rename), then
    delete the folder it pointed at and any folder left by an interrupted save."""
    link = path.with_name(f".{path.name}.link")
    link.unlink(missing_ok=True)
    link.symlink_to(target.name)
    if path.is_dir() and not path.is_symlink():  # a plain folder from Lightning's own save
        shutil.rmtree(path)
    os.replace(link, path)
    for stale in path.parent.glob(f".{path.name}.*"):
        if stale.is_dir() and stale.name != target.name:
            shutil.rmtree(stale, ignore_errors=True)


class FSDP1Strategy(FSDPStrategy):
    """Lightning's FSDP (FSDP1), auto-wrapping each decoder layer (its class found from the model
    at setup: none is named in the config). GPU only.

    Args:
        activation_checkpointing: recompute each decoder layer's activations in backward
            (transformers' gradient checkpointing of ``PreferenceModule.model``).
        **kwargs: :class:`lightning.pytorch.strategies.FSDPStrategy` arguments, e.g.
            ``sharding_strategy``, ``state_dict_type`` (``sharded`` or ``full``), ``cpu_offload``.
    """

    def __init__(self, activation_checkpointing: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation_checkpointing = activation_checkpointing

    def _configure_launcher(self) -> None:  # at Trainer creation, before any process starts
        if isinstance(self.accelerator, CPUAccelerator):
            raise ValueError(
                "strategy=fsdp1 (Lightning's FSDPStrategy) requires a GPU accelerator; "
                "on CPUs use strategy=fsdp (FSDP2)"
            )
        super()._configure_launcher()

    def setup(self, trainer) -> None:
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        classes = decoder_layer_classes(self.lightning_module)
        self.kwargs["auto_wrap_policy"] = ModuleWrapPolicy(classes)
        if self.activation_checkpointing:  # transformers' own, per decoder layer
            enable_activation_checkpointing(self.lightning_module.model)
        super().setup(trainer)
