"""Callbacks: greedy generations from fixed eval prompts, logged as TensorBoard text."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger


class GenerationLogger(L.Callback):
    """At each validation, greedily complete the first ``num_prompts`` eval prompts.

    The table (prompt, generation, chosen) goes to TensorBoard's Text tab as ``val/generations``.
    All ranks generate (sharded models need every rank in the forward); rank 0 logs.

    Args:
        num_prompts: how many eval prompts (0 disables the callback).
        max_new_tokens: generation length.
    """

    def __init__(self, num_prompts: int = 4, max_new_tokens: int = 32) -> None:
        self.num_prompts = num_prompts
        self.max_new_tokens = max_new_tokens

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.num_prompts <= 0 or trainer.sanity_checking:
            return
        datamodule = trainer.datamodule
        rows = datamodule.eval_dataset.select(
            range(min(self.num_prompts, len(datamodule.eval_dataset)))
        )
        tokenizer = datamodule.tokenizer
        lines = ["| prompt | generation | chosen |", "|---|---|---|"]
        was_training = pl_module.model.training
        pl_module.model.eval()
        for row in rows:
            prompt = torch.tensor([row["prompt_input_ids"]], device=pl_module.device)
            with torch.no_grad():
                out = pl_module.model.generate(
                    input_ids=prompt,
                    attention_mask=torch.ones_like(prompt),
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
            cells = (
                tokenizer.decode(row["prompt_input_ids"], skip_special_tokens=True),
                tokenizer.decode(out[0, prompt.shape[1] :], skip_special_tokens=True),
                tokenizer.decode(row["chosen_input_ids"], skip_special_tokens=True),
            )
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        pl_module.model.train(was_training)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger) and trainer.is_global_zero:
                logger.experiment.add_text("val/generations", "\n".join(lines), trainer.global_step)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()
