"""How sure a figure is: medians over interleaved rounds, bootstrap intervals, and goal verdicts.

A ratio of two servers is the ratio of their medians over the rounds. Its 95 % interval comes from a
paired bootstrap: rounds are drawn with replacement, the same rounds for both servers (a round is one
stretch of time, and a slow spell of the machine hits both servers of a round), and the ratio of the
medians is taken again, RESAMPLES times; the interval is the 2.5th to the 97.5th percentile of those.
The per-round range is the lowest and highest ratio of one round's two figures. Pure Python and
seeded: the same figures give the same interval. With few rounds the interval is about the range
of the rounds (see MIN_ROUNDS): an honest width for so little data, not a precise one.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence

RESAMPLES = 4000
SEED = 15  # fixed: an interval must not move between two reports of the same figures
CONFIDENCE = 0.95
# Fewer rounds than this give no interval worth a verdict. With 5, the interval of a median spans
# about the whole per-round range (a resample's median is the lowest round's value with probability
# 6 %), so "met" means ahead in every round; from 7 rounds on it leaves out the extreme rounds.
MIN_ROUNDS = 5

MET, NOISE, NOT_MET, UNJUDGED = "met", "within noise", "not met", "not judged"


def paired(values: Sequence[float | None], references: Sequence[float | None]) -> tuple[list, list]:
    """The rounds where both figures exist (a failed round has None), references above zero."""
    pairs = [
        (v, r) for v, r in zip(values, references, strict=False) if v is not None and r is not None and r > 0
    ]
    return [v for v, _ in pairs], [r for _, r in pairs]


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Linear interpolation between the closest ranks of an ordered sequence."""
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _bootstrap(count: int, statistic, resamples: int, seed: int) -> tuple[float, float]:
    rng = random.Random(seed)  # noqa: S311 - resampling, not secrets
    draws = sorted(statistic([rng.randrange(count) for _ in range(count)]) for _ in range(resamples))
    tail = (1 - CONFIDENCE) / 2
    return percentile(draws, tail), percentile(draws, 1 - tail)


def ratio(
    values: Sequence[float | None],
    references: Sequence[float | None],
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> dict | None:
    """median(values) / median(references) with its paired bootstrap interval and per-round range;
    None when no round has both figures."""
    a, b = paired(values, references)
    if not a:
        return None

    def statistic(rounds: list[int]) -> float:
        return statistics.median(a[i] for i in rounds) / statistics.median(b[i] for i in rounds)

    low, high = _bootstrap(len(a), statistic, resamples, seed)
    per_round = [x / y for x, y in zip(a, b, strict=True)]
    return {
        "ratio": statistics.median(a) / statistics.median(b),
        "low": low,
        "high": high,
        "min": min(per_round),
        "max": max(per_round),
        "rounds": len(a),
    }


def value(values: Sequence[float | None], resamples: int = RESAMPLES, seed: int = SEED) -> dict | None:
    """The median of one server's figure over the rounds, with its bootstrap interval and range."""
    a = [v for v in values if v is not None]
    if not a:
        return None

    def statistic(rounds: list[int]) -> float:
        return statistics.median(a[i] for i in rounds)

    low, high = _bootstrap(len(a), statistic, resamples, seed)
    return {
        "median": statistics.median(a),
        "low": low,
        "high": high,
        "min": min(a),
        "max": max(a),
        "rounds": len(a),
    }


def verdict(interval: dict | None, target: float = 1.0, higher_is_better: bool = True) -> str:
    """``met`` only when the whole interval is on the good side of the target, ``not met`` when the
    whole of it is on the bad side, ``within noise`` when it straddles the target (whichever side
    the median is on: the run cannot tell; more rounds may)."""
    if interval is None or interval["rounds"] < MIN_ROUNDS:
        return UNJUDGED
    low, high = interval["low"], interval["high"]
    if higher_is_better:
        return MET if low >= target else NOT_MET if high < target else NOISE
    return MET if high <= target else NOT_MET if low > target else NOISE
