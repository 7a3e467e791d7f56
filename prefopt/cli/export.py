"""``prefopt-export``: a training checkpoint -> a Hugging Face model folder.

prefopt-export outputs/train/RUN OUT_DIR                   # the run's checkpoints/last.ckpt
prefopt-export outputs/train/RUN/checkpoints/best-step400.ckpt OUT_DIR
prefopt-export RUN OUT_DIR --adapter                       # LoRA runs: the adapter, not merged

Any checkpoint Lightning wrote works: a single file (single device, DDP, FSDP2 with
``save_distributed_checkpoint=false``), a sharded folder (FSDP2, FSDP1 ``state_dict_type=sharded``)
or a DeepSpeed folder (needs ``deepspeed``). The model and tokenizer are rebuilt from the run's
``config_resolved.yaml`` (only prefopt's, torch's, transformers', peft's and lightning's classes
may be named there); the folder gets the weights (``save_pretrained``), the tokenizer and its
chat template, and loads with ``AutoModelForCausalLM.from_pretrained``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from omegaconf import OmegaConf

from prefopt.cli.checks import check_trusted_targets
from prefopt.cli.errors import run_main
from prefopt.errors import CheckpointError, DataNotFoundError
from prefopt.models.build import build_model
from prefopt.models.save import load_policy_state, save_hf, tied_keys

log = logging.getLogger(__name__)

CONFIG_NAME = "config_resolved.yaml"


def find_config(path: Path) -> Path:
    """The ``config_resolved.yaml`` of the run that ``path`` (a run folder or checkpoint) is in."""
    for folder in (path, *path.parents):
        if (folder / CONFIG_NAME).is_file():
            return folder / CONFIG_NAME
    raise DataNotFoundError(f"no {CONFIG_NAME} in {path} or its parents: pass --config")


def export(
    checkpoint: Path, out_dir: Path, merge_lora: bool = True, config: Path | None = None
) -> Path:
    """Rebuild the run's model, load ``checkpoint`` (or a run folder's ``last.ckpt``), save it.

    Returns:
        ``out_dir``.
    """
    if not checkpoint.exists():
        raise DataNotFoundError(f"{checkpoint}: no such checkpoint or run folder")
    if (checkpoint / "checkpoints" / "last.ckpt").exists():
        checkpoint = checkpoint / "checkpoints" / "last.ckpt"
    config = config or find_config(checkpoint)
    cfg = OmegaConf.load(config)
    for node in ("model", "peft"):  # the only nodes export instantiates
        check_trusted_targets(cfg.get(node), f"{config}: {node}")
    state = load_policy_state(checkpoint.resolve())
    model, tokenizer = build_model(cfg.model, cfg.get("peft"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in tied_keys(model)]
    if missing or unexpected:
        raise CheckpointError(
            f"{checkpoint} does not match the model of {config}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    log.info("loaded %d tensors from %s", len(state), checkpoint)
    return save_hf(model, tokenizer, out_dir, merge_lora=merge_lora)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (``prefopt-export``)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = run_main(
        "prefopt-export", export, args.checkpoint, args.out_dir, args.merge_lora, args.config
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
