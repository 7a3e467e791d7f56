"""No code from files a user was handed: a crafted checkpoint or run folder cannot run anything
through resume or export, and each is refused with one line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from prefopt.cli import export as export_cli
from prefopt.cli import report as report_cli
from tests.cli.conftest import one_line


class MakesADirectory:
    """Unpickling this object calls ``os.makedirs(path)``: code run by loading a file."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.makedirs, (self.path,))


def test_a_crafted_checkpoint_cannot_run_code_on_resume(prefopt_train, tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    path = tmp_path / "last.ckpt"
    checkpoint = {"state_dict": {}, "global_step": 1, "loops": {}, "x": MakesADirectory(marker)}
    torch.save(checkpoint, path)
    # torch's switch back to full unpickling by default: the explicit weights_only=True wins
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    message = one_line(*prefopt_train(f"ckpt_path={path}")[::2])
    assert message.startswith(
        f"{path}: refused to load: it holds objects other than tensors and plain values "
        "(loaded with weights_only=True;"
    )
    assert not marker.exists()


def _run_folder(tmp_path: Path, peft: dict) -> Path:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    model = {"_target_": "prefopt.models.load_model", "tokenizer": "builtin", "name_or_path": None}
    OmegaConf.save(OmegaConf.create({"model": model, "peft": peft}), run / "config_resolved.yaml")
    return run


def _export(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        export_cli.main(argv)
    return exit_info.value.code, capsys.readouterr().err


def test_export_instantiates_only_trusted_targets(tmp_path, capsys):
    marker = tmp_path / "ran"
    run = _run_folder(tmp_path, {"_target_": "os.makedirs", "name": str(marker)})
    code, err = _export([str(run), str(tmp_path / "out")], capsys)
    assert code == 2 and "Traceback" not in err
    assert err.strip() == (
        f"prefopt-export: error: {run}/config_resolved.yaml: peft._target_='os.makedirs' is not "
        "allowed: a run folder's config may only name prefopt, torch, transformers, peft, "
        "lightning classes"
    )
    assert not marker.exists()


def test_export_names_a_missing_or_truncated_checkpoint(tmp_path, capsys):
    code, err = _export([str(tmp_path / "nope"), str(tmp_path / "out")], capsys)
    assert (code, err.strip()) == (
        2,
        f"prefopt-export: error: {tmp_path}/nope: no such checkpoint or run folder",
    )
    run = _run_folder(tmp_path, None)
    path = run / "checkpoints" / "last.ckpt"
    torch.save({"state_dict": {"model.w": torch.ones(100)}}, path)
    path.write_bytes(path.read_bytes()[:100])
    code, err = _export([str(run), str(tmp_path / "out")], capsys)
    assert code == 2 and "Traceback" not in err
    assert err.startswith(
        f"prefopt-export: error: {path.resolve()}: not a readable checkpoint (truncated, or not a "
        "file torch.save wrote):"
    )


def test_report_without_runs_isone_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["prefopt-report"])
    with pytest.raises(SystemExit) as exit_info:
        report_cli.main([str(tmp_path)])
    assert exit_info.value.code == 2
    assert (
        capsys.readouterr().err.strip() == f"prefopt-report: error: no runs found under {tmp_path}"
    )
