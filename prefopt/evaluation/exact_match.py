"""``exact_match``: is the generation the reference answer, and is it closer to the chosen
response than to the rejected one?

* ``accuracy``: the share of generations equal to the reference after normalisation. The
  reference is the data's ``reference`` / ``answer`` column (the built-in data has one: the
  correct answer), else the chosen response.
* ``closer_to_chosen``: the share of generations more similar to the chosen than to the rejected
  response, by :func:`similarity` (``difflib``'s ratio over the characters of the normalised
  texts: 2 x matching characters / total characters); ties count as not closer.
"""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Callable

from prefopt.errors import ConfigError
from prefopt.evaluation.base import EvalData, EvalRow, Evaluator, Policy, Values
from prefopt.evaluation.registry import register

_SPACES = re.compile(r"\s+")
_PUNCT = str.maketrans("", "", string.punctuation)


def _strip(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def _lower(text: str) -> str:
    return _strip(text).lower()


def _lower_strip_punct(text: str) -> str:
    return _strip(text.lower().translate(_PUNCT))


NORMALIZERS: dict[str, Callable[[str], str]] = {
    "none": lambda text: text,  # the decoded texts as they are
    "strip": _strip,  # white space runs -> one space, ends trimmed
    "lower": _lower,  # strip + lower case
    "lower_strip_punct": _lower_strip_punct,  # lower + ASCII punctuation removed (the default)
}
REFERENCE_SOURCES = ("auto", "column", "chosen")


def similarity(a: str, b: str) -> float:
    """``difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()``: 1 for equal texts, 0
    for texts without a common character; e.g. ``similarity("ab", "abcd") == 2 * 2 / 6``."""
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


@register("exact_match")
class ExactMatch(Evaluator):
    """The generation against a reference answer and against the pair.

    Args:
        normalize: How both texts are normalised before comparing: ``none``, ``strip``,
            ``lower``, ``lower_strip_punct`` (default; see :data:`NORMALIZERS`).
        reference: ``auto`` (the data's reference column where a row has one, else the chosen
            response), ``column`` (require the column) or ``chosen`` (always the chosen response).

    Raises:
        ConfigError: an unknown ``normalize`` or ``reference``.
    """

    metrics = ("accuracy", "closer_to_chosen")

    def __init__(self, normalize: str = "lower_strip_punct", reference: str = "auto") -> None:
        if normalize not in NORMALIZERS:
            raise ConfigError(
                f"evaluation.exact_match.normalize={normalize!r} is unknown; use one of: "
                f"{', '.join(NORMALIZERS)}"
            )
        if reference not in REFERENCE_SOURCES:
            raise ConfigError(
                f"evaluation.exact_match.reference={reference!r} is unknown; use one of: "
                f"{', '.join(REFERENCE_SOURCES)}"
            )
        self.normalize = NORMALIZERS[normalize]
        self.reference = reference

    def setup(self, data: EvalData) -> None:
        if self.reference == "column" and not data.has_reference:
            raise ConfigError(
                "evaluation.exact_match.reference=column, but the eval data has no reference "
                "column: add a 'reference' or 'answer' column (or map one with "
                "data.columns.reference=NAME), or set evaluation.exact_match.reference=auto"
            )

    def reference_of(self, row: EvalRow) -> str:
        """The text the generation must equal."""
        if self.reference != "chosen" and row.reference is not None:
            return row.reference
        return row.chosen

    def score(self, rows: list[EvalRow], policy: Policy) -> Values:
        """Per row: ``match`` (1 if equal to the reference) and ``closer_to_chosen`` (0 / 1)."""
        norm = self.normalize
        match, closer = [], []
        for row in rows:
            generation = norm(row.generation)
            match.append(float(generation == norm(self.reference_of(row))))
            to_chosen = similarity(generation, norm(row.chosen))
            closer.append(float(to_chosen > similarity(generation, norm(row.rejected))))
        return {"match": match, "closer_to_chosen": closer}

    def summarize(self, values: Values, policy: Policy) -> dict[str, float]:
        means = super().summarize(values, policy)
        nan = float("nan")
        return {
            "accuracy": means.get("match", nan),
            "closer_to_chosen": means.get("closer_to_chosen", nan),
        }
