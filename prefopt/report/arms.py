"""Arms of a sweep: runs that differ only by their seed, labelled by what was swept.

A run's label is its objective's registered name and the config keys that take more than one
value across the sweep: an objective's own hyperparameters when they vary among that
objective's runs (``simpo γ=0.5``), and any other key that varies across all runs (``lr=0.001``).
The seed never enters a label (runs with the same label are paired repeats), nor do
hyperparameters an objective declares ``metrics_only`` (SFT's ``lam`` only scales ``rewards/*``),
so ``objective=sft`` runs that differ only in them are one arm.
"""

from __future__ import annotations

from collections import defaultdict

from prefopt.errors import ConfigError
from prefopt.report.runs import Run

# how a hyperparameter is written in a label or an axis (the paper's symbols)
SYMBOLS = {"lam": "λ", "beta": "β", "gamma": "γ", "alpha": "α", "tau": "τ", "lr": "lr"}
OBJECTIVE_PREFIX = "objective."


def short(key: str) -> str:
    """``objective.gamma`` -> ``γ``, ``optimizer.lr`` -> ``lr``, others unchanged."""
    name = key.removeprefix(OBJECTIVE_PREFIX).removeprefix("optimizer.")
    return SYMBOLS.get(name, name if key.startswith((OBJECTIVE_PREFIX, "optimizer.")) else key)


def _value(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _varying(runs: list[Run], keys: set[str]) -> list[str]:
    return sorted(k for k in keys if len({repr(r.config.get(k)) for r in runs}) > 1)


def swept_keys(runs: list[Run]) -> dict[str | None, list[str]]:
    """Per objective (its chosen config's name), the keys that label its arms: its own
    hyperparameters that vary among its runs (minus the ``metrics_only`` ones), then the other
    keys that vary across all runs."""
    with_config = [r for r in runs if r.config]
    shared = {k for r in with_config for k in r.config if not k.startswith(OBJECTIVE_PREFIX)}
    common = _varying(with_config, shared)
    by_objective: dict[str | None, list[Run]] = defaultdict(list)
    for run in with_config:
        by_objective[run.arm_name].append(run)
    keys = {}
    for objective, members in by_objective.items():
        own = {k for r in members for k in r.config if k.startswith(OBJECTIVE_PREFIX)}
        ignored = {OBJECTIVE_PREFIX + name for r in members for name in r.ignored}
        own -= ignored | {OBJECTIVE_PREFIX + "_target_"}
        keys[objective] = [*_varying(members, own), *common]
    return keys


def label_arms(runs: list[Run]) -> list[Run]:
    """Set each run's ``label``; return the runs sorted by objective, then the swept values."""
    keys = swept_keys(runs)
    for run in runs:
        parts = [run.arm_name or "?"]
        parts += [f"{short(k)}={_value(run.config.get(k))}" for k in keys.get(run.arm_name, [])]
        run.label = " ".join(parts)
    return sorted(runs, key=lambda r: (r.arm_name or "~", _sort_values(r, keys), r.seed or 0))


def _sort_values(run: Run, keys: dict[str | None, list[str]]) -> tuple:
    values = []
    for key in keys.get(run.arm_name, []):
        value = run.config.get(key)
        values.append((0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value)))
    return tuple(values)


def arms(runs: list[Run]) -> dict[str, list[Run]]:
    """``{label: runs}`` in the runs' order."""
    grouped: dict[str, list[Run]] = {}
    for run in runs:
        grouped.setdefault(run.label, []).append(run)
    return grouped


def find_arm(labels: list[str], name: str) -> str:
    """The label ``name`` designates: the label itself, or an objective with a single arm.

    Raises:
        ConfigError: naming the labels when none or several match.
    """
    if name in labels:
        return name
    matches = [label for label in labels if label.split(" ")[0] == name]
    if len(matches) == 1:
        return matches[0]
    raise ConfigError(
        f"--baseline {name!r} matches {len(matches)} arms; the arms are: {', '.join(labels)}"
    )
