"""A byte-level tokenizer built in code (no download), and the loader used by the configs."""

from __future__ import annotations

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import bytes_to_unicode

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

# Each role has its own literal token (no '<|' + role + '|>' concatenation, so transformers can
# tell the template's control tokens from user text). Assistant turns end with the EOS token, the
# others with <|end|>; the generation prompt is the bare <|assistant|> token. No newlines: every
# byte is a token.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>' + message['content'] + '<|end|>' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>' + message['content'] + '<|end|>' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ '<|assistant|>' + message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('unknown role: ' + message['role']) }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def build_builtin_tokenizer() -> PreTrainedTokenizerFast:
    """Build the built-in byte-level tokenizer: 256 byte tokens then 7 special tokens.

    Token id ``b`` (0..255) is the byte ``b``; ids 256..262 are ``<pad>``, ``<s>`` (BOS),
    ``</s>`` (EOS), ``<|system|>``, ``<|user|>``, ``<|assistant|>``, ``<|end|>``. Plain text gets
    a leading BOS (``add_special_tokens=True``); the chat template writes its own BOS and is
    tokenized without special tokens, so BOS is never doubled. Any UTF-8 text round-trips through
    ``decode``.

    Returns:
        A fast tokenizer with ``len(tokenizer) == 263``, pad/bos/eos set and a chat template.
    """
    # ByteLevel maps each byte to a printable stand-in (GPT-2's table): token id b <-> byte b
    vocab = {char: byte for byte, char in bytes_to_unicode().items()}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(
        [AddedToken(t, normalized=False, special=True) for t in SPECIAL_TOKENS]
    )
    bos_id = backend.token_to_id("<s>")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B:1", special_tokens=[("<s>", bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
        model_max_length=1 << 20,
    )


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """Load ``"builtin"`` (the byte-level tokenizer above) or any tokenizer by name or folder.

    Args:
        name_or_path: ``"builtin"``, a local folder, or a model name already in the local HF cache.

    Returns:
        The tokenizer, with ``pad_token`` set to ``eos_token`` when it had none.
    """
    if name_or_path == "builtin":
        return build_builtin_tokenizer()
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
