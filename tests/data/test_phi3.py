"""The real Phi-3 tokenizer (chat template, boundary quirk) and the real files under ../shared."""

from __future__ import annotations

from datasets import Dataset

from prefopt.data import IGNORE_INDEX, PreferenceCollator, PreferenceDataModule, Truncation
from prefopt.data.formats import resolve_format
from prefopt.data.tokenize import tokenize_split

BOS, EOS, USER, ASSISTANT, END = 1, 32000, 32010, 32001, 32007


def _tokenize(tokenizer, rows: dict) -> Dataset:
    raw = Dataset.from_dict(rows)
    dataset, _ = tokenize_split(raw, tokenizer, resolve_format(raw, "t"), Truncation(), "t")
    return dataset


def test_chat_template_no_bos_added_one_eos_after_end_of_turn(phi3):
    rows = {
        "prompt": [[{"role": "user", "content": "Is 7 odd?"}]],
        "chosen": [[{"role": "assistant", "content": "Yes."}]],
        "rejected": [[{"role": "assistant", "content": "No."}]],
    }
    row = _tokenize(phi3, rows)[0]
    # "<|user|>\n...<|end|>\n<|assistant|>\n": Phi-3's special tokens swallow the newline after them
    assert row["prompt_input_ids"][0] == USER and row["prompt_input_ids"][-2:] == [END, ASSISTANT]
    assert row["chosen_input_ids"][-2:] == [END, EOS]
    assert row["rejected_input_ids"][-2:] == [END, EOS]
    for ids in row.values():
        assert BOS not in ids
    assert (row["chosen_input_ids"] + row["rejected_input_ids"]).count(EOS) == 2
    full = phi3.apply_chat_template(rows["prompt"][0] + rows["chosen"][0])["input_ids"]
    assert row["prompt_input_ids"] + row["chosen_input_ids"] == full


def test_boundary_quirk_masks_exactly_the_shared_prompt_tokens(phi3):
    prompt, chosen, rejected = "Question: is 7 odd?\nAnswer: ", "yes", "no"
    apart = phi3(prompt).input_ids + phi3(chosen, add_special_tokens=False).input_ids
    together = phi3(prompt + chosen + phi3.eos_token).input_ids
    assert apart + [EOS] != together  # the quirk: "▁" + "▁yes" apart, "▁yes" together
    row = _tokenize(phi3, {"prompt": [prompt], "chosen": [chosen], "rejected": [rejected]})[0]
    # the prompt's trailing "▁" merged into the response: the prompt is cut before it
    assert row["prompt_input_ids"] == phi3(prompt).input_ids[:-1]
    assert row["prompt_input_ids"] + row["chosen_input_ids"] == together
    assert phi3.convert_ids_to_tokens(row["chosen_input_ids"]) == ["▁yes", "<|endoftext|>"]
    assert phi3.convert_ids_to_tokens(row["rejected_input_ids"]) == ["▁no", "<|endoftext|>"]
    batch = PreferenceCollator(phi3.pad_token_id)([row])
    n = len(row["prompt_input_ids"])
    assert batch["labels"][:, :n].eq(IGNORE_INDEX).all()
    assert batch["labels"][0, n:].tolist() == row["chosen_input_ids"]
    assert batch["labels"][1, n : n + 2].tolist() == row["rejected_input_ids"]


def _module(phi3, path, cache_dir, **kwargs) -> PreferenceDataModule:
    dm = PreferenceDataModule(
        phi3,
        path=str(path),
        max_length=None,
        max_prompt_length=None,
        cache_dir=cache_dir,
        max_train_samples=40,
        **kwargs,
    )
    dm.setup()
    return dm


def test_real_llamafactory_implicit_and_explicit_files_give_the_same_ids(
    phi3, shared_data, cache_dir
):
    implicit = _module(
        phi3, shared_data / "llamafactory_dpo_en_demo_conversational_implicit.jsonl", cache_dir
    )
    explicit = _module(
        phi3, shared_data / "llamafactory_dpo_en_demo_conversational_explicit.jsonl", cache_dir
    )
    assert implicit.skipped == explicit.skipped == {"train": {}}
    assert len(implicit.train_dataset) == 40
    assert implicit.train_dataset[:] == explicit.train_dataset[:]
    for row in implicit.train_dataset:  # multi-turn and system rows included
        assert row["prompt_input_ids"][-1] == ASSISTANT and row["chosen_input_ids"][-1] == EOS


def test_real_orca_columns_as_conversation_equal_the_conversational_file(
    phi3, shared_data, cache_dir
):
    mapped = _module(
        phi3,
        shared_data / "orca_dpo_pairs_intel_format.jsonl",
        cache_dir,
        format="conversational",
        columns={"prompt": "question", "system": "system"},
    )
    messages = _module(
        phi3, shared_data / "orca_dpo_pairs_conversational_explicit.jsonl", cache_dir
    )
    assert mapped.train_dataset[:] == messages.train_dataset[:]
    assert mapped.train_dataset[0]["prompt_input_ids"][0] == 32006  # <|system|>


def test_real_orca_columns_as_strings_join_system_and_question(phi3, shared_data, cache_dir):
    dm = _module(
        phi3,
        shared_data / "orca_dpo_pairs_intel_format.jsonl",
        cache_dir,
        columns={"prompt": "question", "system": "system"},
    )
    prompt = phi3.decode(dm.train_dataset[0]["prompt_input_ids"])
    assert prompt.startswith("You are an AI assistant.") and "\n\nMM. Georges Colombier" in prompt
    assert dm.train_dataset[0]["chosen_input_ids"][-1] == EOS


def test_real_data_truncation_per_mode(phi3, shared_data, cache_dir):
    path = shared_data / "llamafactory_dpo_en_demo_conversational_explicit.jsonl"
    whole = _module(phi3, path, cache_dir).train_dataset
    for mode in ("keep_end", "keep_start"):
        cut = PreferenceDataModule(
            phi3,
            path=str(path),
            max_length=256,
            max_prompt_length=128,
            truncation_mode=mode,
            max_train_samples=40,
            cache_dir=cache_dir,
        )
        cut.setup()
        assert cut.skipped == {"train": {}} and max(cut.lengths(cut.train_dataset)) == 256
        num_cut = 0
        for full, short in zip(whole, cut.train_dataset):
            prompt, chosen = full["prompt_input_ids"], full["chosen_input_ids"]
            if len(prompt) + max(len(chosen), len(full["rejected_input_ids"])) > 256:
                num_cut += len(prompt) > 128
                prompt = prompt[-128:] if mode == "keep_end" else prompt[:128]
            assert short["prompt_input_ids"] == prompt
            assert short["chosen_input_ids"] == chosen[: 256 - len(prompt)]
        assert num_cut > 0
