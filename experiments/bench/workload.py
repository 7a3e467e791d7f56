"""What the benchmark trains: the tiny model, the preference pairs, the batches, FLOPs.

The pairs are random token ids. Their lengths are either drawn from a pool of real pairs' token
lengths (the ``real`` workload: :mod:`experiments.bench.real_data`) or log-normal (``synthetic``:
median prompt 128, responses 192, shaped like UltraFeedback-style sets in a 32k vocabulary), and
truncated the way TRL and prefopt both truncate (prompt first, then the responses). Only the
lengths matter for speed, and random ids keep the benchmark free of downloads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from prefopt.data.collate import PreferenceCollator
from prefopt.data.sampler import PreferenceSampler
from prefopt.data.tokenize import Truncation, truncate_pair

PAD_ID = 0
Pair = dict[str, list[int]]  # prompt_input_ids, chosen_input_ids, rejected_input_ids


@dataclass(frozen=True)
class Workload:
    """Model, data and batch sizes of one benchmark run."""

    vocab_size: int = 32000
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 768
    architecture: str = "llama"
    batch_size: int = 4  # pairs per step
    steps: int = 6  # timed steps per variant; the data is steps * batch_size pairs
    max_length: int = 512
    max_prompt_length: int = 256
    prompt_median: float = 128.0  # median tokens before truncation
    response_median: float = 192.0
    length_sigma: float = 0.8  # std of log-length
    memory_seq_len: int = 1024  # the peak-memory step: every row exactly this long
    memory_batch_size: int = 2  # pairs in the peak-memory step
    seed: int = 0
    workload: str = "synthetic"  # or "real": lengths drawn from ``length_pool``
    # (prompt, chosen, rejected) token lengths of real pairs, before truncation
    length_pool: tuple[tuple[int, int, int], ...] = field(default=(), repr=False, compare=False)

    def build_model(self) -> PreTrainedModel:
        """The tiny model with weights drawn from ``seed`` (call once, copy for each variant)."""
        config = AutoConfig.for_model(
            self.architecture,
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=max(self.max_length, self.memory_seq_len, 1024) * 2,
            tie_word_embeddings=True,
            pad_token_id=PAD_ID,
        )
        torch.manual_seed(self.seed)
        model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
        return model.float()

    def pairs(self, num_pairs: int, seed_offset: int = 0) -> list[Pair]:
        """``num_pairs`` truncated pairs of random token ids (ids 1..V-1; 0 is padding), their
        lengths drawn from ``length_pool`` (uniformly, with replacement) or log-normal."""
        g = torch.Generator().manual_seed(self.seed + 1000 + seed_offset)
        limits = Truncation(max_length=self.max_length, max_prompt_length=self.max_prompt_length)

        def length(median: float) -> int:
            noise = float(torch.randn(1, generator=g))
            return max(2, int(math.exp(math.log(median) + self.length_sigma * noise)))

        def ids(n: int) -> list[int]:
            return torch.randint(1, self.vocab_size, (n,), generator=g).tolist()

        def draw() -> tuple[list[int], list[int], list[int]]:
            if self.length_pool:
                i = int(torch.randint(len(self.length_pool), (1,), generator=g))
                p, c, r = self.length_pool[i]
                return ids(p), ids(c), ids(r)
            prompt = ids(length(self.prompt_median))  # the order of draws of earlier runs
            return prompt, ids(length(self.response_median)), ids(length(self.response_median))

        out: list[Pair] = []
        while len(out) < num_pairs:
            prompt, chosen, rejected = draw()
            pair = truncate_pair(prompt, chosen, rejected, limits)
            if isinstance(pair, str):
                continue
            p, c, r = pair
            out.append({"prompt_input_ids": p, "chosen_input_ids": c, "rejected_input_ids": r})
        return out

    def long_pairs(self, seed_offset: int = 0) -> list[Pair]:
        """``memory_batch_size`` pairs whose two rows are ``memory_seq_len`` tokens each (no
        padding): a quarter prompt, three quarters response."""
        g = torch.Generator().manual_seed(self.seed + 2000 + seed_offset)
        prompt = self.memory_seq_len // 4
        response = self.memory_seq_len - prompt

        def ids(n: int) -> list[int]:
            return torch.randint(1, self.vocab_size, (n,), generator=g).tolist()

        return [
            {
                "prompt_input_ids": ids(prompt),
                "chosen_input_ids": ids(response),
                "rejected_input_ids": ids(response),
            }
            for _ in range(self.memory_batch_size)
        ]


def pair_length(pair: Pair) -> int:
    """Prompt + the longer response (what the collator pads to)."""
    return len(pair["prompt_input_ids"]) + max(
        len(pair["chosen_input_ids"]), len(pair["rejected_input_ids"])
    )


def random_batches(num_pairs: int, batch_size: int, seed: int) -> list[list[int]]:
    """Shuffled batches, as a plain ``RandomSampler`` (TRL's default) forms them."""
    order = torch.randperm(num_pairs, generator=torch.Generator().manual_seed(seed)).tolist()
    return [order[i : i + batch_size] for i in range(0, num_pairs, batch_size)]


def grouped_batches(pairs: list[Pair], batch_size: int, seed: int) -> list[list[int]]:
    """prefopt's default batches: :class:`PreferenceSampler` with ``group_by_length``."""
    sampler = PreferenceSampler([pair_length(p) for p in pairs], batch_size, seed=seed)
    return sampler.batches()


def collate(pairs: list[Pair], index: list[int]) -> dict[str, torch.Tensor]:
    """prefopt's collated batch of the pairs at ``index``."""
    return PreferenceCollator(PAD_ID)([pairs[i] for i in index])


def padding_efficiency(pairs: list[Pair], batches: list[list[int]]) -> float:
    """Real tokens / padded tokens of the ``[chosen; rejected]`` batches."""
    real = padded = 0
    for index in batches:
        rows = [pairs[i] for i in index]
        real += sum(real_tokens(p) for p in rows)
        padded += 2 * len(rows) * max(pair_length(p) for p in rows)
    return real / padded


def real_tokens(pair: Pair) -> int:
    """Non-pad tokens of the pair's two rows (prompt + chosen, prompt + rejected)."""
    prompt = len(pair["prompt_input_ids"])
    return 2 * prompt + len(pair["chosen_input_ids"]) + len(pair["rejected_input_ids"])


# what each loss needs: (the rejected row, the chosen prompt's positions through the LM head)
NEEDS = {
    "orpo": (True, True),  # NLL over prompt + response (nll_scope=full), odds ratio
    "preference": (True, False),  # DPO, SimPO, CPO (completion NLL): the responses only
    "sft": (False, False),  # the chosen response's NLL (completion)
    "sft_full": (False, True),  # the chosen row's NLL (nll_scope=full)
}


def useful_flops(
    model: PreTrainedModel, pairs: list[Pair], objective: str = "orpo"
) -> tuple[float, float]:
    """Training FLOPs (forward + backward) that the loss needs on these pairs, no padding.

    Args:
        model: the model.
        pairs: the pairs trained on.
        objective: a key of ``NEEDS``: which rows and LM-head positions the loss reads.

    Returns:
        ``(useful, dense)``. ``useful``: the decoder over every real token of the rows the loss
        needs (6 x decoder parameters per token), the LM head only at the positions it reads
        (6 x H x V each; ORPO: chosen prompt + response, rejected response), and causal attention
        (6 x layers x width x s^2 per row of s tokens). ``dense``: the textbook 6 x parameters
        (LM head included) x the real tokens of both rows, plus their attention.
    """
    rejected_needed, prompt_needed = NEEDS[objective]
    config = model.config
    head = model.get_output_embeddings().weight.numel()
    embedding = model.get_input_embeddings().weight.numel()
    decoder = sum(p.numel() for p in model.model.parameters()) - embedding
    width = config.num_attention_heads * getattr(
        config, "head_dim", config.hidden_size // config.num_attention_heads
    )
    useful = dense = 0.0
    for pair in pairs:
        p, c, r = (len(pair[f"{k}_input_ids"]) for k in ("prompt", "chosen", "rejected"))
        attention = 6 * config.num_hidden_layers * width
        dense += 6 * (decoder + head) * (2 * p + c + r) + attention * ((p + c) ** 2 + (p + r) ** 2)
        tokens, squares = p + c, (p + c) ** 2
        positions = c + (p - 1 if prompt_needed else 0)
        if rejected_needed:
            tokens, squares, positions = tokens + p + r, squares + (p + r) ** 2, positions + r
        useful += 6 * decoder * tokens + 6 * head * positions + attention * squares
    return useful, dense


# `--quick`: tiny sizes for a smoke run (and the tests)
QUICK = Workload(
    vocab_size=2048,
    hidden_size=64,
    num_layers=2,
    num_heads=2,
    intermediate_size=128,
    batch_size=2,
    steps=2,
    max_length=96,
    max_prompt_length=48,
    prompt_median=24.0,
    response_median=32.0,
    memory_seq_len=128,
)
