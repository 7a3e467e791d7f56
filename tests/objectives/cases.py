"""The hand-worked batch the DPO-family tests share (their docstrings do the arithmetic on it).

Two pairs, summed log-probs, beta = 0.5 in the tests:

| pair | pi_c | ref_c | h_c  | pi_r | ref_r | h_r  | h = h_c - h_r | beta h | n_c | n_r |
|------|------|-------|------|------|-------|------|---------------|--------|-----|-----|
| 1    | -10  | -11   | 1    | -12  | -11   | -1   | 2             | 1      | 2   | 4   |
| 2    | -20  | -19.5 | -0.5 | -19  | -19.5 | 0.5  | -1            | -0.5   | 5   | 5   |

so every member logs rewards/chosen = beta h_c = (0.5, -0.25), rewards/rejected = (-0.5, 0.25),
rewards/margins = (1, -0.5), rewards/accuracies = (1, 0).
"""

from __future__ import annotations

import torch
from torch.testing import assert_close

from prefopt.objectives import ObjectiveInputs, ObjectiveOutput


def family_inputs(requires_grad: bool = False) -> ObjectiveInputs:
    """The table above as ``ObjectiveInputs`` (float32, NLL 3.0)."""
    c = torch.tensor([-10.0, -20.0], requires_grad=requires_grad)
    r = torch.tensor([-12.0, -19.0], requires_grad=requires_grad)
    chosen_lengths, rejected_lengths = torch.tensor([2.0, 5.0]), torch.tensor([4.0, 5.0])
    return ObjectiveInputs(
        chosen_logps=c,
        rejected_logps=r,
        chosen_avg_logps=c / chosen_lengths,
        rejected_avg_logps=r / rejected_lengths,
        nll_loss=torch.tensor(3.0),
        ref_chosen_logps=torch.tensor([-11.0, -19.5]),
        ref_rejected_logps=torch.tensor([-11.0, -19.5]),
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
    )


def assert_family_rewards(out: ObjectiveOutput) -> None:
    """The rewards every DPO-family member logs on :func:`family_inputs` with beta = 0.5."""
    m = out.metrics
    assert_close(m["rewards/chosen"], torch.tensor([0.5, -0.25]))
    assert_close(m["rewards/rejected"], torch.tensor([-0.5, 0.25]))
    assert_close(m["rewards/margins"], torch.tensor([1.0, -0.5]))
    assert_close(m["rewards/accuracies"], torch.tensor([1.0, 0.0]))
    assert_close(m["logps/chosen"], torch.tensor([-10.0, -20.0]))  # summed, as TRL's DPO
