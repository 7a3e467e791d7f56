"""The collator's batch: [chosen; rejected], one padded length, labels -100 off the responses."""

from __future__ import annotations

import torch

from prefopt.data import IGNORE_INDEX, PreferenceCollator

ROWS = [
    {"prompt_input_ids": [1, 2, 3], "chosen_input_ids": [4, 5], "rejected_input_ids": [6]},
    {"prompt_input_ids": [7], "chosen_input_ids": [8], "rejected_input_ids": [9, 10, 11, 12]},
]
X = IGNORE_INDEX


def test_batch_is_chosen_then_rejected_padded_to_one_length():
    batch = PreferenceCollator(pad_token_id=0)(ROWS)
    assert set(batch) == {"input_ids", "attention_mask", "labels", "prompt_lengths"}
    torch.testing.assert_close(
        batch["input_ids"],
        torch.tensor([[1, 2, 3, 4, 5], [7, 8, 0, 0, 0], [1, 2, 3, 6, 0], [7, 9, 10, 11, 12]]),
    )
    torch.testing.assert_close(
        batch["attention_mask"],
        torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]),
    )
    torch.testing.assert_close(
        batch["labels"],
        torch.tensor([[X, X, X, 4, 5], [X, 8, X, X, X], [X, X, X, 6, X], [X, 9, 10, 11, 12]]),
    )
    torch.testing.assert_close(batch["prompt_lengths"], torch.tensor([3, 1]))
    assert all(batch[k].dtype == torch.long for k in batch)


def test_pad_to_multiple_and_reference_logps():
    rows = [dict(r, ref_chosen_logps=-1.5, ref_rejected_logps=-2.0 - i) for i, r in enumerate(ROWS)]
    batch = PreferenceCollator(pad_token_id=0, pad_to_multiple_of=8)(rows)
    assert batch["input_ids"].shape == (4, 8)
    assert batch["labels"][:, 5:].eq(X).all()
    torch.testing.assert_close(batch["ref_chosen_logps"], torch.tensor([-1.5, -1.5]))
    torch.testing.assert_close(batch["ref_rejected_logps"], torch.tensor([-2.0, -3.0]))
    assert batch["ref_chosen_logps"].dtype == torch.float32
