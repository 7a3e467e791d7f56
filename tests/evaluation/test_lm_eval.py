"""lm_eval: two task YAMLs of our own over a local JSON file (offline), scored on a bigram model
whose answers we choose, so the harness's accuracy and exact match are known; and in a run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from prefopt.cli.train import train
from prefopt.errors import ConfigError, MissingDependencyError
from prefopt.evaluation import EvalData
from prefopt.evaluation.lm_eval import LMEval, flat_results
from tests.conftest import compose_train
from tests.evaluation.helpers import bigram_lm, make_policy

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("lm_eval") is None, reason="lm-eval is not installed (prefopt[eval])"
)
NUMBERS = [1, 3, 5, 7, 9, 11, 13, 2, 4, 6]  # 7 odd, 3 even
ANSWERS = ["xy"] * 6 + ["no"] * 4


def _task_folder(folder: Path) -> Path:
    folder.mkdir()
    rows = [
        {"question": f"Is {n} odd or even?", "label": n % 2, "answer": a}
        for n, a in zip(NUMBERS, ANSWERS)
    ]
    data = folder / "parity.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = (
        f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\ndoc_to_text: '{{question}}'\n"
    )
    (folder / "parity_mc.yaml").write_text(
        "task: parity_mc\n" + common + "output_type: multiple_choice\n"
        "doc_to_choice: ['even', 'odd']\ndoc_to_target: label\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
    )
    (folder / "parity_gen.yaml").write_text(
        "task: parity_gen\n" + common + "output_type: generate_until\n"
        "doc_to_target: '{{answer}}'\n"
        "generation_kwargs:\n  until: ['.']\n  max_gen_toks: 4\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n"
        "    higher_is_better: true\n"
    )
    return folder


def test_the_harness_scores_local_tasks_on_the_current_weights(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = _task_folder(tmp_path / "tasks")
    # " odd" is far likelier than " even" (" " -> "o" -> "d" -> "d"); after "?" it writes "xy."
    table = {ord(" "): ord("o"), ord("o"): ord("d"), ord("d"): ord("d")}
    table |= {ord("?"): ord("x"), ord("x"): ord("y"), ord("y"): ord(".")}
    model = bigram_lm(tokenizer, table, default=ord("z"))
    evaluator = LMEval(
        tasks=["parity_mc", "parity_gen"],
        limit=10,
        include_path=str(folder),
        include_defaults=False,  # only our two tasks: a faster index
        batch_size=4,
    )
    evaluator.setup(EvalData(tokenizer, False, 0, 8))
    metrics = evaluator.summarize({}, make_policy(model, tokenizer))
    # always "odd": right on the 7 odd numbers; always "xy": right on the 6 "xy" answers
    assert metrics == {"parity_mc/acc": pytest.approx(0.7), "parity_gen/exact_match": 0.6}


def test_unknown_task_and_missing_package_fail_in_one_line(tokenizer, tmp_path, monkeypatch):
    folder = _task_folder(tmp_path / "tasks")
    evaluator = LMEval(
        tasks=["parity_mc", "nope"], include_path=str(folder), include_defaults=False
    )
    with pytest.raises(ConfigError, match=r"^evaluation.lm_eval.tasks: 'nope' is not a task of"):
        evaluator.setup(EvalData(tokenizer, False, 0, 8))
    with pytest.raises(ConfigError, match=r"evaluation.lm_eval.tasks is empty"):
        LMEval(tasks=[])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(MissingDependencyError) as err:
        LMEval()
    assert str(err.value) == (
        "evaluation=[lm_eval] needs lm-evaluation-harness: pip install 'prefopt[eval]'"
    )


def test_flat_results_names_task_metric_and_filter():
    results = {
        "gsm8k": {"alias": "gsm8k", "exact_match,strict-match": 0.25, "exact_match_stderr,x": 0.1},
        "ifeval": {"prompt_level_strict_acc,none": 0.5, "sample_len": 32},
    }
    assert flat_results(results) == {
        "gsm8k/exact_match/strict-match": 0.25,
        "ifeval/prompt_level_strict_acc": 0.5,
    }


def test_a_run_scores_the_weights_it_has_reached(tokenizer, tmp_path, monkeypatch):
    """The value logged at the end is the harness's score of the trained model (hf_model)."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    folder = _task_folder(tmp_path / "tasks")
    options = dict(tasks=["parity_mc"], limit=8, include_path=str(folder), include_defaults=False)
    cfg = compose_train(
        tmp_path / "run",
        [
            "evaluation=[lm_eval]",
            "evaluation.lm_eval.tasks=[parity_mc]",
            f"evaluation.lm_eval.include_path={folder}",
            "evaluation.lm_eval.include_defaults=false",
            "evaluation.lm_eval.limit=8",
        ],
    )
    final = train(cfg)
    trained = AutoModelForCausalLM.from_pretrained(Path(cfg.paths.output_dir) / "hf_model")
    evaluator = LMEval(**options)
    evaluator.setup(EvalData(tokenizer, False, 0, 8))
    expected = evaluator.summarize({}, make_policy(trained.eval(), tokenizer))["parity_mc/acc"]
    assert final["val/gen/lm_eval/parity_mc/acc"] == pytest.approx(expected)
