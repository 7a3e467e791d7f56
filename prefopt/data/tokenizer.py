"""A byte-level tokenizer built in code (no download), and the loader used by the configs."""

from __future__ import annotations

from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import bytes_to_unicode

from prefopt.errors import ConfigError, DataError, DataNotFoundError, brief

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


# files from which transformers can tell which tokenizer a folder holds
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "config.json")


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """Load ``"builtin"`` (the byte-level tokenizer above) or any tokenizer by name or folder.

    Args:
        name_or_path: ``"builtin"``, a local folder, or a model name already in the local HF cache.

    Returns:
        The tokenizer, with ``pad_token`` set to ``eos_token`` when it had none.

    Raises:
        DataNotFoundError: a folder that does not exist, or a name that is neither a folder nor in
            the Hugging Face cache (and the Hub is unreachable).
        DataError: a folder transformers cannot read as a tokenizer.
        ConfigError: a tokenizer with neither a pad nor an EOS token (batches cannot be padded).
    """
    if name_or_path == "builtin":
        return build_builtin_tokenizer()
    folder = Path(name_or_path).expanduser()
    looks_local = name_or_path.startswith(("/", "./", "../", "~")) or folder.exists()
    if looks_local and not folder.is_dir():
        raise DataNotFoundError(f"{name_or_path}: no such tokenizer folder")
    if folder.is_dir() and not any((folder / f).is_file() for f in TOKENIZER_FILES):
        found = ", ".join(sorted(p.name for p in folder.iterdir())[:6]) or "nothing"
        raise DataError(
            f"{name_or_path}: no tokenizer.json, tokenizer_config.json or config.json (found "
            f"{found}), so transformers cannot tell which tokenizer this is: save it with "
            "tokenizer.save_pretrained(folder), or add a tokenizer_config.json naming its "
            "tokenizer_class"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except OSError as err:
        reason = brief(err)
        if looks_local:
            raise DataError(f"{name_or_path}: cannot load the tokenizer: {reason}") from err
        raise DataNotFoundError(
            f"{name_or_path}: not a local folder, and not in the Hugging Face cache ({reason}); "
            "download it first or give its folder"
        ) from err
    except (ValueError, KeyError) as err:
        reason = brief(err)
        raise DataError(f"{name_or_path}: cannot load the tokenizer: {reason}") from err
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ConfigError(
                f"{name_or_path}: the tokenizer has neither a pad nor an EOS token, so batches "
                "cannot be padded and responses cannot end: use a tokenizer that defines "
                "eos_token (e.g. in its tokenizer_config.json)"
            )
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
