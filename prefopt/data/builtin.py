"""The built-in preference dataset: short arithmetic questions, generated in code from a seed.

Every pair is a question with the correct answer (chosen) and a plausible wrong answer written in
the same words (rejected), e.g. ``"Is 437 odd or even?"`` -> ``"437 is odd."`` (chosen) vs
``"437 is even."`` (rejected).
Chosen and rejected share almost every token, so supervised fine-tuning on the chosen answers also
raises the log-probability of the rejected ones (the effect the ORPO paper starts from); only the
few tokens that carry the answer tell them apart, and they follow a rule a tiny model can learn.
Each prompt + response is at most ~45 bytes. Every question has exactly one correct answer, the
chosen response, which the splits also carry as the ``reference`` column (for the generation
evaluators: a greedy completion can be checked against it).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from datasets import Dataset

Row = tuple[str, str, str]  # (prompt, chosen, rejected)


def _parity(rng: random.Random) -> Row:
    n = rng.randrange(1000)
    right, wrong = ("even", "odd") if n % 2 == 0 else ("odd", "even")
    return f"Is {n} odd or even?", f"{n} is {right}.", f"{n} is {wrong}."


def _larger(rng: random.Random) -> Row:
    a, b = rng.sample(range(10, 100), 2)
    return f"Which is larger, {a} or {b}?", f"{max(a, b)} is larger.", f"{min(a, b)} is larger."


def _successor(rng: random.Random) -> Row:
    n = rng.randrange(999)
    wrong = rng.choice([n, n + 2])
    return f"What comes after {n}?", f"{n + 1} comes after {n}.", f"{wrong} comes after {n}."


def _last_digit(rng: random.Random) -> Row:
    n = rng.randrange(100, 10000)
    wrong = rng.choice([d for d in range(10) if d != n % 10])
    return f"Last digit of {n}?", f"{n} ends in {n % 10}.", f"{n} ends in {wrong}."


TASKS: dict[str, Callable[[random.Random], Row]] = {
    "parity": _parity,
    "larger": _larger,
    "successor": _successor,
    "last_digit": _last_digit,
}
# Distinct prompts per task: 1000 + 90*89 + 999 + 9900 = 19,909.
_NUM_PROMPTS = 1000 + 90 * 89 + 999 + 9900


def generate_rows(num_rows: int, seed: int, exclude: set[str] | None = None) -> list[Row]:
    """Draw ``num_rows`` pairs with distinct prompts, none of them in ``exclude``.

    Args:
        num_rows: Number of pairs.
        seed: Seed of the generator; the same seed gives the same rows.
        exclude: Prompts that must not be drawn (the other split's prompts).

    Returns:
        ``(prompt, chosen, rejected)`` tuples; tasks are drawn uniformly at random.
    """
    exclude = set(exclude or ())
    if num_rows + len(exclude) > _NUM_PROMPTS // 2:
        total, limit = num_rows + len(exclude), _NUM_PROMPTS // 2
        raise ValueError(
            f"the built-in dataset has {_NUM_PROMPTS} distinct prompts; "
            f"{total} rows across splits is too many (at most {limit})"
        )
    rng = random.Random(seed)
    tasks = list(TASKS.values())
    rows: list[Row] = []
    while len(rows) < num_rows:
        row = rng.choice(tasks)(rng)
        if row[0] not in exclude:
            exclude.add(row[0])
            rows.append(row)
    return rows


def builtin_splits(
    train_size: int = 2000, eval_size: int = 200, seed: int = 0
) -> tuple[Dataset, Dataset | None]:
    """Build the train and eval splits (standard format, explicit prompt).

    Args:
        train_size: Number of training pairs.
        eval_size: Number of eval pairs (0: no eval split). No eval prompt occurs in train.
        seed: Seed of the generator.

    Returns:
        ``(train, eval)`` datasets with string columns ``prompt``, ``chosen``, ``rejected`` and
        ``reference`` (the correct answer: the same text as ``chosen``).
    """
    train = generate_rows(train_size, seed)
    eval_rows = generate_rows(eval_size, seed + 1, exclude={p for p, _, _ in train})

    def to_dataset(rows: list[Row]) -> Dataset:
        prompts, chosen, rejected = zip(*rows) if rows else ((), (), ())
        return Dataset.from_dict(
            {
                "prompt": list(prompts),
                "chosen": list(chosen),
                "rejected": list(rejected),
                "reference": list(chosen),
            }
        )

    return to_dataset(train), (to_dataset(eval_rows) if eval_size > 0 else None)
