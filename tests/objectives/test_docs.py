"""docs/objectives.md stays true: its table is the registry's, and its how-to really adds one.

The table between the two markers is generated from each config in configs/objective/ and its
class's metadata (``formula``, ``paper``, ``trl_name``); print the current one with
``python -m tests.objectives.test_docs``.
"""

from __future__ import annotations

import inspect
import re
import sys
import types
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from prefopt.objectives import available, name_of_target, objective_class, registry

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "objectives.md"
CONFIG_DIR = ROOT / "configs" / "objective"
BEGIN = "<!-- objectives table: generated from the configs, checked by test_docs.py -->"
END = "<!-- end of objectives table -->"
HEADER = (
    "| objective | loss per pair | reference | reduction | hyperparameters (defaults) "
    "| paper | TRL 1.16 |\n|---|---|---|---|---|---|---|"
)


def _value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _hyperparameters(cfg) -> str:
    keys = [k for k in cfg if k != "_target_"]
    if "terms" in keys:  # a composition: its terms and their weights
        weights = cfg.get("weights", {})
        return ", ".join(f"{label} × {_value(weights.get(label, 1.0))}" for label in cfg.terms)
    return ", ".join(f"`{k}={_value(cfg[k])}`" for k in keys) or "—"


def table_rows() -> list[str]:
    """One row per config file: its registered class's metadata and the built objective's
    declarations."""
    rows = []
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        cfg = OmegaConf.load(path)
        name = name_of_target(cfg._target_)
        cls, obj = objective_class(name), instantiate(cfg)
        label = f"`{path.stem}`" if path.stem == name else f"`{path.stem}` ({name})"
        cells = [
            label,
            f"`{cls.formula}`",
            "yes" if obj.needs_reference else "no",
            obj.reduction,
            _hyperparameters(cfg),
            cls.paper,
            f"`{cls.trl_name}`" if cls.trl_name else "—",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def render_table() -> str:
    return "\n".join([BEGIN, HEADER, *table_rows(), END])


def test_the_table_is_the_registrys():
    text = DOC.read_text()
    assert BEGIN in text and END in text
    written = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert written == render_table(), "regenerate: python -m tests.objectives.test_docs"
    for name in available():  # and so every registered objective has a row
        assert f"| `{name}` |" in written


def test_config_values_are_the_class_defaults():
    """What the table lists (a config's values) is what ``get_objective(name)`` builds too."""
    for name in available():
        cfg = OmegaConf.load(CONFIG_DIR / f"{name}.yaml")
        if "terms" in cfg:  # a composition: its config is one example, the class has none
            continue
        params = inspect.signature(objective_class(name)).parameters
        for key in (k for k in cfg if k != "_target_"):
            default = params[key].default
            if default is not inspect.Parameter.empty:
                assert cfg[key] == default, (name, key)


def _blocks(language: str, section: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def test_the_how_to_adds_a_working_objective():
    """Runs the section's three blocks: the module (as the file it names), the config (built
    with Hydra) and the test (its assertions must hold)."""
    section = DOC.read_text().split("## Adding an objective", 1)[1]
    module_code, test_code = _blocks("python", section)
    (config_text,) = _blocks("yaml", section)
    cfg = OmegaConf.create(config_text)
    module_name = cfg._target_.rpartition(".")[0]
    name = module_name.rpartition(".")[2]
    assert name not in available()
    assert (
        f"prefopt/objectives/{name}.py" in section and f"tests/objectives/test_{name}.py" in section
    )
    module = types.ModuleType(module_name)
    sys.modules[module_name] = module
    try:
        exec(compile(module_code, f"{name}.py", "exec"), module.__dict__)
        assert name in available()
        objective = instantiate(cfg)
        assert objective.name == name and name_of_target(cfg._target_) == name
        c, r = torch.tensor([-1.0]), torch.tensor([-3.0])
        from prefopt.objectives import ObjectiveInputs

        out = objective(ObjectiveInputs(c, r, c, r, nll_loss=torch.tensor(2.0)))
        assert set(out.terms) == {"nll", "hinge"}
        test_namespace: dict = {}
        exec(compile(test_code, f"test_{name}.py", "exec"), test_namespace)
        tests = [f for k, f in test_namespace.items() if k.startswith("test_")]
        assert tests
        for test in tests:
            test()
    finally:
        registry._REGISTRY.pop(name, None)
        sys.modules.pop(module_name, None)


if __name__ == "__main__":
    print(render_table())
