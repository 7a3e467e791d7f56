"""Means over seeds with Student-t confidence intervals, and paired differences with a t-test."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import mean, stdev

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    """A sample's mean, sample standard deviation and ``CONFIDENCE`` interval of the mean.

    ``std`` and the interval are ``None`` for a single value (nothing to estimate them from).
    """

    n: int
    mean: float
    std: float | None
    low: float | None
    high: float | None


def _t(df: int) -> float:
    """The two-sided ``CONFIDENCE`` quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.5 + CONFIDENCE / 2, df))


def summarize(values: list[float]) -> Summary | None:
    """Mean, std and t-interval of ``values`` (``None`` when empty)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None
    m = mean(values)
    if len(values) < 2:
        return Summary(len(values), m, None, None, None)
    s = stdev(values)
    half = _t(len(values) - 1) * s / math.sqrt(len(values))
    return Summary(len(values), m, s, m - half, m + half)


@dataclass(frozen=True)
class Paired:
    """The mean of per-seed differences (arm − baseline), its interval, and the paired t-test's
    two-sided p-value (``None`` with fewer than two pairs, or for identical differences)."""

    n: int
    diff: Summary
    p: float | None


def paired(arm: dict[int, float], baseline: dict[int, float]) -> Paired | None:
    """Compare ``{seed: value}`` of an arm with the baseline's on the seeds both have."""
    seeds = sorted(set(arm) & set(baseline))
    diffs = [arm[s] - baseline[s] for s in seeds if _finite(arm[s]) and _finite(baseline[s])]
    diff = summarize(diffs)
    if diff is None:
        return None
    p = None
    if diff.n >= 2 and diff.std:
        from scipy.stats import t

        statistic = diff.mean / (diff.std / math.sqrt(diff.n))
        p = float(2 * t.sf(abs(statistic), diff.n - 1))
    return Paired(diff.n, diff, p)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
