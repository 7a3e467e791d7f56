"""Models whose outputs the tests choose: a bigram causal LM (the next token is a function of the
current one) and a reward model (the reward is a function of the last token), both real Llama
modules whose layers add nothing to the residual stream, so the final hidden state of a position
is its token's one-hot embedding."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedTokenizerBase,
)

from prefopt.evaluation import EvalRow, Policy
from prefopt.models.logps import Scoring


def _one_hot_llama(cls, tokenizer: PreTrainedTokenizerBase, **config):
    vocab = len(tokenizer)
    hidden = -(-vocab // 4) * 4  # a dimension per token, divisible by the heads
    model = cls(
        LlamaConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            num_hidden_layers=1,
            num_attention_heads=4,
            intermediate_size=8,
            rms_norm_eps=1e-12,
            tie_word_embeddings=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **config,
        )
    )
    with torch.no_grad():
        model.model.embed_tokens.weight.zero_()
        model.model.embed_tokens.weight[:, :vocab] = torch.eye(vocab)
        for layer in model.model.layers:  # attention and MLP write nothing
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
    return model.eval(), hidden  # final hidden state of token t: sqrt(hidden) * e_t


def bigram_lm(tokenizer: PreTrainedTokenizerBase, next_token: Mapping[int, int], default: int):
    """A causal LM that greedily emits ``next_token[t]`` after token t (``default`` otherwise)."""
    model, hidden = _one_hot_llama(LlamaForCausalLM, tokenizer)
    with torch.no_grad():
        head = model.lm_head.weight  # (V, H)
        head.zero_()
        for token in range(len(tokenizer)):
            head[next_token.get(token, default), token] = 10.0 / math.sqrt(hidden)
    return model


def save_reward_model(
    folder: Path, tokenizer: PreTrainedTokenizerBase, token_rewards: Mapping[int, float]
) -> Path:
    """Save a reward model whose reward is ``token_rewards[last token]`` (0 for other tokens),
    with ``tokenizer`` beside it."""
    model, hidden = _one_hot_llama(LlamaForSequenceClassification, tokenizer, num_labels=1)
    with torch.no_grad():
        model.score.weight.zero_()
        for token, reward in token_rewards.items():
            model.score.weight[0, token] = reward / math.sqrt(hidden)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def ids(tokenizer: PreTrainedTokenizerBase, text: str, eos: bool = False) -> list[int]:
    """Token ids of ``text`` (bytes for the built-in tokenizer), with EOS if asked."""
    out = tokenizer(text, add_special_tokens=False)["input_ids"]
    return out + [tokenizer.eos_token_id] if eos else out


def make_row(
    tokenizer: PreTrainedTokenizerBase,
    generation: str,
    chosen: str = "437 is odd.",
    rejected: str = "437 is even.",
    prompt: str = "Is 437 odd or even?",
    reference: str | None = None,
    stopped: bool = True,
    position: int = 0,
) -> EvalRow:
    """A row as the callback builds it: the prompt through the chat template, the responses and
    (when ``stopped``) the generation ending with EOS."""
    prompt_ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True
    )
    if not isinstance(prompt_ids, list):
        prompt_ids = prompt_ids["input_ids"]
    return EvalRow(
        position=position,
        prompt_ids=list(prompt_ids),
        chosen_ids=ids(tokenizer, chosen, eos=True),
        rejected_ids=ids(tokenizer, rejected, eos=True),
        generation_ids=ids(tokenizer, generation, eos=stopped),
        stopped=stopped,
        prompt=prompt,
        generation=generation,
        chosen=chosen,
        rejected=rejected,
        reference=reference,
    )


def make_policy(model, tokenizer: PreTrainedTokenizerBase, batch_size: int = 32) -> Policy:
    return Policy(model, tokenizer, torch.device("cpu"), Scoring(), batch_size)
