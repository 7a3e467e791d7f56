"""The registry and configs/objective/*.yaml stay in step."""

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from prefopt.objectives import (
    Objective,
    ObjectiveInputs,
    ObjectiveOutput,
    UnknownObjectiveError,
    available,
    get_objective,
    name_of_target,
    objective_class,
    register,
)
from prefopt.objectives.base import preference_metrics

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "objective"


CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
# configs that compose registered objectives (configs/objective/rpo.yaml: weighted DPO + NLL)
COMPOSITIONS = {"rpo": "weighted"}


def test_every_registered_name_has_a_config_and_every_config_a_registered_class():
    assert sorted(set(CONFIGS) - set(COMPOSITIONS)) == available()
    for config, name in COMPOSITIONS.items():
        assert name_of_target(OmegaConf.load(CONFIG_DIR / f"{config}.yaml")._target_) == name


@pytest.mark.parametrize("name", available())
def test_config_target_builds_the_registered_class(name):
    obj = instantiate(OmegaConf.load(CONFIG_DIR / f"{name}.yaml"))
    assert type(obj) is objective_class(name)
    assert obj.name == name


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(UnknownObjectiveError) as err:
        get_objective("orp")
    assert str(err.value) == f"unknown objective 'orp'; available: {', '.join(available())}"
    assert "alphapo, aot_pair, apo_down, apo_zero, bco_pair, cpo, discopop, dpo" in str(err.value)


def test_a_new_objective_registers_with_one_decorator():
    """A class defined anywhere registers with the decorator alone (test_docs.py runs the
    docs/objectives.md example itself)."""
    import torch

    @register("test_hinge")
    class Hinge(Objective):
        def __init__(self, margin: float = 1.0):
            self.margin = margin

        def compute(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
            gap = inputs.chosen_avg_logps - inputs.rejected_avg_logps
            loss = inputs.nll_loss + torch.relu(self.margin - gap).mean()
            metrics = preference_metrics(inputs, gap, 0 * gap, self.reduction)
            return ObjectiveOutput(loss, metrics)

    try:
        assert "test_hinge" in available()
        c, r = torch.tensor([-1.0]), torch.tensor([-1.5])
        out = get_objective("test_hinge")(ObjectiveInputs(c, r, c, r, torch.tensor(2.0)))
        assert out.loss.item() == 2.5
    finally:
        from prefopt.objectives import registry

        registry._REGISTRY.pop("test_hinge")


EXPERIMENT_DIR = CONFIG_DIR.parent / "experiment"


@pytest.mark.parametrize("path", sorted(EXPERIMENT_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_objective_an_experiment_sweeps_builds_in_it(path, tmp_path):
    """A multirun over objective=a,b,... composes each arm with the experiment's keys (a key
    meant for one arm, e.g. objective.lam, would break the others)."""
    from tests.conftest import compose_train

    swept = OmegaConf.load(path).get("hydra", {}).get("sweeper", {}).get("params", {})
    arms = str(swept.get("objective", "")).split(",") if "objective" in swept else []
    for arm in arms:
        cfg = compose_train(tmp_path, [f"experiment={path.stem}", f"objective={arm}"])
        assert instantiate(cfg.objective).name == arm
