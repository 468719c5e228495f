"""Scoring as in the paper (App. C): per trial `points` out of the task's `max_points` (one per
object moved to its target; open drawer & place: one for the drawer opened enough and not pulled
off, one for the object inside). Task progress = points / max_points; binary success = all points.
Aggregates: progress mean and standard error over trials, success counts (the paper's Table 5),
bootstrap confidence intervals for the difference of two methods, and A/B win rates.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Sequence

import numpy as np


class PointsError(ValueError):
    pass


def check_points(points, max_points: int, where: str = "points") -> int:
    if isinstance(points, bool) or not isinstance(points, (int, np.integer)) or not 0 <= points <= max_points:
        raise PointsError(f"{where}: {points!r} is not a whole number of points in 0..{max_points}")
    return int(points)


def progress(points: int, max_points: int) -> float:
    return check_points(points, max_points) / max_points


def success(points: int, max_points: int) -> bool:
    return check_points(points, max_points) == max_points


@dataclasses.dataclass(frozen=True)
class Summary:
    trials: int
    progress_mean: float
    progress_se: float  # standard error of the mean: sample s.d. (ddof=1) / sqrt(n); 0 for one trial
    successes: int


def summarize(points: Sequence[int], max_points: int) -> Summary:
    values = np.array([progress(p, max_points) for p in points], dtype=float)
    n = len(values)
    if n == 0:
        return Summary(0, math.nan, math.nan, 0)
    se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return Summary(n, float(values.mean()), se, sum(success(p, max_points) for p in points))


def bootstrap_difference(a: Sequence[float], b: Sequence[float], resamples: int = 10000, confidence: float = 0.95,
                         seed: int = 0) -> tuple[float, float, float]:
    """mean(a) - mean(b) and its percentile bootstrap interval (each group resampled with replacement)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) == 0 or len(b) == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    means_a = a[rng.integers(0, len(a), (resamples, len(a)))].mean(axis=1)
    means_b = b[rng.integers(0, len(b), (resamples, len(b)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means_a - means_b, [tail, 100 - tail])
    return float(a.mean() - b.mean()), float(low), float(high)


def win_rate(preferences: Iterable[str], method: str, other: str) -> tuple[float, int, int, int]:
    """(win rate of `method` over `other` with ties counted as half, wins, ties, losses)."""
    wins = ties = losses = 0
    for preferred in preferences:
        if preferred == method:
            wins += 1
        elif preferred == other:
            losses += 1
        elif preferred == "tie":
            ties += 1
    total = wins + ties + losses
    return ((wins + 0.5 * ties) / total if total else math.nan), wins, ties, losses
