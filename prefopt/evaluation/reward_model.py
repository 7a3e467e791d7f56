"""``reward_model``: a local sequence-classification reward model scores the generation and the
chosen response of each prompt.

* ``win_rate``: the share of prompts whose generation gets a higher reward than the chosen
  response (ties count as losses).
* ``reward_margin``: the mean of reward(prompt + generation) - reward(prompt + chosen).
* ``reward``, ``reward_chosen``: the mean rewards of the generations and of the chosen responses.

The reward is logit ``label_index`` of any ``AutoModelForSequenceClassification`` folder
(``save_pretrained``, with its tokenizer beside it). When the reward model's tokenizer has the
policy's vocabulary, it reads the policy's token ids as they are (the prompt with its chat
template); otherwise the prompt and response are decoded to text and tokenized again by the
reward model's tokenizer: through its chat template (one user and one assistant message) if it
has one, else as the plain concatenation.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from prefopt.errors import ConfigError, DataNotFoundError
from prefopt.evaluation.base import EvalData, EvalRow, Evaluator, Policy, Values
from prefopt.evaluation.registry import register

log = logging.getLogger(__name__)


@register("reward_model")
class RewardModel(Evaluator):
    """Rewards of the generations against those of the chosen responses.

    Args:
        path: A local folder with the reward model and its tokenizer.
        batch_size: Sequences per reward-model forward.
        max_length: Longest input in tokens (longer ones keep their end: the response).
        label_index: Which output logit is the reward (0 for the usual ``num_labels=1`` head).

    Raises:
        ConfigError: no ``path``. DataNotFoundError: ``path`` does not exist.
    """

    metrics = ("win_rate", "reward_margin", "reward", "reward_chosen")

    def __init__(
        self,
        path: str | None = None,
        batch_size: int = 16,
        max_length: int = 1024,
        label_index: int = 0,
    ) -> None:
        if not path:
            raise ConfigError(
                "evaluation.reward_model.path is not set: give the folder of a sequence-"
                "classification reward model, e.g. evaluation.reward_model.path=/models/rm"
            )
        if not Path(path).expanduser().is_dir():
            raise DataNotFoundError(
                f"evaluation.reward_model.path={path!r} is not a folder: give one written by "
                "save_pretrained (an AutoModelForSequenceClassification and its tokenizer)"
            )
        self.path = str(Path(path).expanduser())
        self.batch_size, self.max_length, self.label_index = batch_size, max_length, label_index
        self.model = self.tokenizer = None
        self.same_vocabulary = False

    def setup(self, data: EvalData) -> None:
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            self.model = AutoModelForSequenceClassification.from_pretrained(self.path)
        except (OSError, ValueError) as err:
            raise DataNotFoundError(
                f"evaluation.reward_model.path={self.path!r}: no reward model and tokenizer could "
                f"be loaded from it ({' '.join(str(err).split())[:200]})"
            ) from err
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        if self.model.config.pad_token_id is None:  # to find each row's last token
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        labels = self.model.config.num_labels
        if not 0 <= self.label_index < labels:
            raise ConfigError(
                f"evaluation.reward_model.label_index={self.label_index} but the reward model "
                f"has {labels} output(s): use 0..{labels - 1}"
            )
        self.model.requires_grad_(False).eval()
        self.same_vocabulary = self.tokenizer.get_vocab() == data.tokenizer.get_vocab()
        log.info(
            "reward model %s (%s its token ids)",
            self.path,
            "reads the policy's" if self.same_vocabulary else "re-tokenizes the text, not",
        )

    def encode(self, row: EvalRow, response_ids: list[int], response: str) -> list[int]:
        """The reward model's input ids for ``row``'s prompt followed by a response."""
        if self.same_vocabulary:
            return [*row.prompt_ids, *response_ids]
        tokenizer = self.tokenizer
        if getattr(tokenizer, "chat_template", None):
            messages = [
                {"role": "user", "content": row.prompt},
                {"role": "assistant", "content": response},
            ]
            text = tokenizer.apply_chat_template(messages, tokenize=False)
            return tokenizer(text, add_special_tokens=False)["input_ids"]
        return tokenizer(row.prompt + response)["input_ids"]

    @torch.no_grad()
    def rewards(self, inputs: list[list[int]], device: torch.device) -> list[float]:
        """One reward per input (right-padded batches of ``batch_size``)."""
        model = self.model.to(device)
        pad = self.tokenizer.pad_token_id
        out: list[float] = []
        for start in range(0, len(inputs), self.batch_size):
            batch = [ids[-self.max_length :] for ids in inputs[start : start + self.batch_size]]
            width = max(len(ids) for ids in batch)
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            attention_mask = torch.zeros_like(input_ids)
            for i, ids in enumerate(batch):
                input_ids[i, : len(ids)] = torch.tensor(ids)
                attention_mask[i, : len(ids)] = 1
            logits = model(
                input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)
            ).logits  # (b, num_labels)
            out += logits[:, self.label_index].float().cpu().tolist()
        return out

    def score(self, rows: list[EvalRow], policy: Policy) -> Values:
        """Per row: ``reward``, ``reward_chosen``, ``win`` (0 / 1) and ``margin``."""
        inputs = [self.encode(row, row.generation_ids, row.generation) for row in rows]
        inputs += [self.encode(row, row.chosen_ids, row.chosen) for row in rows]
        rewards = self.rewards(inputs, policy.device) if rows else []
        generated, chosen = rewards[: len(rows)], rewards[len(rows) :]
        return {
            "reward": generated,
            "reward_chosen": chosen,
            "win": [float(g > c) for g, c in zip(generated, chosen)],
            "margin": [g - c for g, c in zip(generated, chosen)],
        }

    def summarize(self, values: Values, policy: Policy) -> dict[str, float]:
        means = super().summarize(values, policy)
        nan = float("nan")
        return {
            "win_rate": means.get("win", nan),
            "reward_margin": means.get("margin", nan),
            "reward": means.get("reward", nan),
            "reward_chosen": means.get("reward_chosen", nan),
        }
