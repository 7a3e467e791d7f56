"""The house: the wheel carries the configs and trains from an empty folder; rooms import down."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import CONFIG_DIR, ROOT

PACKAGE = ROOT / "prefopt"
# what each room may import (besides itself); cli may import every room, and nothing imports cli
SHARED = {"errors", "registry"}  # the vocabulary every room may use
ALLOWED = {
    "errors": set(),
    "registry": set(),
    "objectives": SHARED,
    "data": SHARED,
    "models": SHARED | {"data"},
    "training": SHARED | {"objectives", "data", "models"},
    "evaluation": SHARED | {"data", "models", "training"},
    "report": SHARED | {"objectives"},
}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports() -> dict[str, set[str]]:
    """``{module: prefopt modules it imports at import time}`` (not under TYPE_CHECKING)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                node.body = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
        graph[name] = {m for m in found if m == "prefopt" or m.startswith("prefopt.")}
    return graph


def test_every_room_imports_only_the_rooms_below_it():
    for module, imported in _imports().items():
        room = _room(module)
        for target in imported:
            other = _room(target)
            if room in ("cli", "") or other in (room, ""):
                continue
            assert other != "cli", f"{module} imports the command-line room ({target})"
            assert other in ALLOWED.get(room, set()), f"{module} ({room}) imports {target}"


def test_no_import_cycle_between_modules():
    graph = _imports()
    state: dict[str, int] = {}

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for target in graph.get(module, ()):
            if target not in graph or target == module:
                continue
            if state.get(target) == 1:
                cycle = stack[stack.index(target) :] + [target] if target in stack else [target]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if target not in state:
                visit(target, [*stack, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_package_list_is_every_room_and_the_configs():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py")} | {
        "prefopt.configs"
    }
    assert listed == on_disk


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(out), str(ROOT)],
        check=True,
        timeout=300,
        cwd=out,
    )
    (found,) = out.glob("prefopt-*.whl")
    return found


def test_the_wheel_carries_every_config(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    expected = {
        "prefopt/configs/" + p.relative_to(CONFIG_DIR).as_posix()
        for p in CONFIG_DIR.rglob("*.yaml")
    }
    assert expected and expected <= set(names)
    assert "prefopt/configs/experiment/orpo_vs_sft.yaml" in names  # a real folder, no symlink


@pytest.mark.slow
def test_a_non_editable_install_trains_from_an_empty_folder(wheel, tmp_path):
    """A fresh venv (its dependencies borrowed from this one, but not prefopt's source tree)
    with the wheel installed: `prefopt-train` finds its configs, and `--config-dir` adds one."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = Path(
        subprocess.check_output(
            [
                venv / "bin" / "python",
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            text=True,
        ).strip()
    )
    # the packages of this environment as a plain path entry: its .pth files (the editable
    # install of prefopt) are not read from there
    (purelib / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    python = venv / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        timeout=300,
    )
    work = tmp_path / "empty"
    (work / "mine" / "objective").mkdir(parents=True)
    (work / "mine" / "objective" / "orpo_strong.yaml").write_text(
        "_target_: prefopt.objectives.orpo.ORPO\nlam: 0.75\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    where = subprocess.check_output(
        [python, "-c", "import prefopt; print(prefopt.__file__)"], cwd=work, env=env, text=True
    )
    assert where.startswith(str(venv)), where  # the installed copy, not the source tree
    fast = [
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "data.builtin.train_size=16",
        "data.builtin.eval_size=8",
        "model.tiny.hidden_size=16",
        "model.tiny.num_layers=1",
        "callbacks.progress_bar=null",
        "save_hf_model=false",
    ]
    proc = subprocess.run(
        [venv / "bin" / "prefopt-train", "--config-dir", "mine", "objective=orpo_strong", *fast]
        + ["hydra.run.dir=run"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '"status": "completed"' in (work / "run" / "status.json").read_text()
    resolved = (work / "run" / "config_resolved.yaml").read_text()
    assert "lam: 0.75" in resolved  # the user's config folder was searched
