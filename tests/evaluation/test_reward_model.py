"""reward_model with a saved reward model whose reward is a known function of the last token:
win rate and margin by hand, the policy's ids or re-tokenized text, and the one-line errors."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from prefopt.data import build_builtin_tokenizer
from prefopt.errors import ConfigError, DataNotFoundError
from prefopt.evaluation import EvalData
from prefopt.evaluation.reward_model import RewardModel
from tests.conftest import CONFIG_DIR
from tests.evaluation.helpers import make_policy, make_row, save_reward_model

BANG, DOT, QUESTION = ord("!"), ord("."), ord("?")


def _evaluate(path, rows, tokenizer, **options):
    evaluator = RewardModel(path=str(path), batch_size=3, **options)
    evaluator.setup(EvalData(tokenizer, True, len(rows), max_new_tokens=16))
    values = evaluator.score(rows, make_policy(None, tokenizer))
    return evaluator, values, evaluator.summarize(values, policy=None)


def test_win_rate_and_margin_with_a_reward_of_the_last_token(tokenizer, tmp_path):
    eos = tokenizer.eos_token_id
    # reward: "!" 2.0, EOS 0.5, "?" -1.0; the chosen responses end with EOS (0.5)
    path = save_reward_model(tmp_path / "rm", tokenizer, {BANG: 2.0, eos: 0.5, QUESTION: -1.0})
    rows = [
        make_row(tokenizer, "437 is odd!", stopped=False),  # ends with "!": 2.0, a win
        make_row(tokenizer, "437 is odd!!", stopped=False),  # 2.0, a win
        make_row(tokenizer, "437 is odd."),  # ends with EOS: 0.5, a tie (not a win)
        make_row(tokenizer, "437 is odd?", stopped=False),  # -1.0, a loss
    ]
    evaluator, values, summary = _evaluate(path, rows, tokenizer)
    assert evaluator.same_vocabulary  # the policy's token ids are read as they are
    assert values["reward"] == pytest.approx([2.0, 2.0, 0.5, -1.0], abs=1e-4)
    assert values["reward_chosen"] == pytest.approx([0.5] * 4, abs=1e-4)
    assert values["win"] == [1, 1, 0, 0]
    assert summary["win_rate"] == 0.5
    assert summary["reward_margin"] == pytest.approx((1.5 + 1.5 + 0 - 1.5) / 4, abs=1e-4)
    assert summary["reward"] == pytest.approx(0.875, abs=1e-4)
    assert summary["reward_chosen"] == pytest.approx(0.5, abs=1e-4)


def _other_tokenizer(chat_template: bool):
    """Another vocabulary (one more token), so the reward model re-tokenizes the text."""
    other = build_builtin_tokenizer()
    other.add_tokens(["<extra>"])
    if not chat_template:
        other.chat_template = None
    return other


def test_another_tokenizer_reads_the_decoded_text(tokenizer, tmp_path):
    other = _other_tokenizer(chat_template=False)  # plain prompt + response: the last character
    path = save_reward_model(tmp_path / "rm", other, {BANG: 1.0, DOT: 0.25})
    rows = [
        make_row(tokenizer, "437 is odd!"),  # the EOS is not part of the text
        make_row(tokenizer, "437 is odd."),
        make_row(tokenizer, "437 is"),
    ]
    evaluator, values, summary = _evaluate(path, rows, tokenizer)
    assert not evaluator.same_vocabulary
    assert (
        evaluator.encode(rows[0], [], "437 is odd!")
        == other("Is 437 odd or even?437 is odd!")["input_ids"]
    )
    assert values["reward"] == pytest.approx([1.0, 0.25, 0.0], abs=1e-4)
    assert values["reward_chosen"] == pytest.approx([0.25] * 3, abs=1e-4)  # "437 is odd."
    assert summary["win_rate"] == pytest.approx(1 / 3)


def test_another_tokenizer_with_a_chat_template_scores_the_rendered_conversation(
    tokenizer, tmp_path
):
    other = _other_tokenizer(chat_template=True)  # every assistant turn ends with EOS
    path = save_reward_model(tmp_path / "rm", other, {BANG: 1.0, other.eos_token_id: 0.75})
    rows = [make_row(tokenizer, "437 is odd!"), make_row(tokenizer, "no")]
    _, values, summary = _evaluate(path, rows, tokenizer)
    assert values["reward"] == pytest.approx([0.75, 0.75], abs=1e-4)  # the template's EOS
    assert summary["win_rate"] == 0.0 and summary["reward_margin"] == pytest.approx(0, abs=1e-6)


def test_reward_model_errors_name_the_key_the_value_and_the_fix(tokenizer, tmp_path):
    with pytest.raises(ConfigError, match=r"^evaluation.reward_model.path is not set: give"):
        RewardModel()
    missing = tmp_path / "no_such_rm"
    with pytest.raises(DataNotFoundError) as err:
        RewardModel(path=str(missing))
    assert str(err.value) == (
        f"evaluation.reward_model.path={str(missing)!r} is not a folder: give one written by "
        "save_pretrained (an AutoModelForSequenceClassification and its tokenizer)"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFoundError, match=r"no reward model and tokenizer could be loaded"):
        RewardModel(path=str(empty)).setup(EvalData(tokenizer, True, 1, 8))
    path = save_reward_model(tmp_path / "rm", tokenizer, {})
    with pytest.raises(ConfigError, match=r"label_index=1 but the reward model has 1 output"):
        RewardModel(path=str(path), label_index=1).setup(EvalData(tokenizer, True, 1, 8))


def test_the_config_builds_the_evaluator(tmp_path, tokenizer):
    path = save_reward_model(tmp_path / "rm", tokenizer, {})
    node = OmegaConf.load(CONFIG_DIR / "evaluation" / "reward_model.yaml")
    evaluator = instantiate(node, path=str(path))
    assert isinstance(evaluator, RewardModel) and evaluator.path == str(path)
