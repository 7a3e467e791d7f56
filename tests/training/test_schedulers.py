"""Every configs/scheduler/*.yaml builds the schedule it names and steps it as the module does."""

import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.conftest import CONFIG_DIR

SCHEDULERS = sorted(p.stem for p in (CONFIG_DIR / "scheduler").glob("*.yaml"))
STEPS, LR = 100, 1.0


def _lrs(name: str, warmup: int) -> list[float]:
    cfg = OmegaConf.load(Path(CONFIG_DIR / "scheduler" / f"{name}.yaml"))
    cfg.num_warmup_steps = warmup
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    # called exactly as PreferenceModule.configure_optimizers calls it
    scheduler = instantiate(cfg)(optimizer=optimizer, num_training_steps=STEPS)
    lrs = []
    for _ in range(STEPS):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_every_scheduler_has_a_test():
    assert SCHEDULERS == ["constant", "cosine", "inverse_sqrt", "linear"]


@pytest.mark.parametrize("name", SCHEDULERS)
def test_warm_up_rises_linearly_to_the_learning_rate(name):
    lrs = _lrs(name, warmup=10)
    assert lrs[0] == 0.0
    assert lrs[5] == pytest.approx(0.5 * LR)
    assert lrs[10] == pytest.approx(LR)


def test_the_shape_after_warm_up():
    linear, cosine = _lrs("linear", 10), _lrs("cosine", 10)
    constant, inverse_sqrt = _lrs("constant", 10), _lrs("inverse_sqrt", 10)
    # step 55 of 100: halfway through the decay
    assert linear[55] == pytest.approx(0.5 * LR)
    assert cosine[55] == pytest.approx(0.5 * LR)
    assert linear[99] == pytest.approx(LR / 90) and cosine[99] < 0.001
    assert constant[10:] == [LR] * 90
    assert inverse_sqrt[40] == pytest.approx(LR * math.sqrt(10 / 40))
