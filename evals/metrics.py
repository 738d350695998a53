"""Metrics over best-so-far curves: regret, time-to-target, area under the curve, ranks, CIs.

A curve is a list of ``(t, value)`` points, ``t`` in seconds (or trials) since the run began, in
order; :func:`best_so_far` turns raw results into the step function every other metric reads.
All functions are pure: the eval's report and the tests call them on the same kind of lists.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

Curve = list[tuple[float, float]]
T = TypeVar("T")


def best_so_far(points: Sequence[tuple[float, float | None]], maximize: bool) -> Curve:
    """The running best of ``points`` (None values, failed trials, are skipped), one step each."""
    out: Curve = []
    for t, v in sorted(points, key=lambda p: p[0]):
        if v is None:
            continue
        if not out or (v > out[-1][1] if maximize else v < out[-1][1]):
            out.append((t, v))
    return out


def incumbent_curve(points: Sequence[tuple[float, float | None, T]], maximize: bool,
                    worth: Callable[[T, float], float]) -> Curve:
    """The worth of what a method would return at each point: its best *observed* trial so far
    (the incumbent), scored by ``worth(config, observed)``, one step per change of incumbent.

    On a tabular benchmark ``worth`` is the table's mean over its seeds, so a lucky noisy draw
    does not count as quality; with ``worth`` returning the observed value this is
    :func:`best_so_far`.
    """
    out: Curve = []
    best: float | None = None
    for t, v, config in sorted(points, key=lambda p: p[0]):
        if v is None or (best is not None and not (v > best if maximize else v < best)):
            continue
        best = v
        out.append((t, worth(config, v)))
    return out


def value_at(curve: Curve, t: float) -> float | None:
    """The curve's value at ``t`` (the last step at or before it); None before its first step."""
    i = bisect.bisect_right([p[0] for p in curve], t)
    return curve[i - 1][1] if i else None


def normalized_regret(value: float | None, optimum: float, worst: float) -> float:
    """``|optimum - value| / |optimum - worst|``, in [0, 1]; 1 (the worst) before any result."""
    if value is None or optimum == worst:
        return 1.0 if value is None else 0.0
    return min(1.0, max(0.0, abs(optimum - value) / abs(optimum - worst)))


def regret_curve(curve: Curve, optimum: float, worst: float) -> Curve:
    return [(t, normalized_regret(v, optimum, worst)) for t, v in curve]


def time_to_target(curve: Curve, target: float, maximize: bool) -> float | None:
    """When the curve first reaches ``target``; None if it never does."""
    for t, v in curve:
        if (v >= target) if maximize else (v <= target):
            return t
    return None


def area_under_regret(curve: Curve, horizon: float) -> float:
    """Mean normalized regret over ``[0, horizon]`` (a regret curve; 1 before its first step)."""
    if horizon <= 0:
        raise ValueError(f"horizon must be positive, got {horizon}")
    area, t_prev, r_prev = 0.0, 0.0, 1.0
    for t, r in curve:
        if t >= horizon:
            break
        area += r_prev * (max(t, 0.0) - t_prev)
        t_prev, r_prev = max(t, 0.0), r
    return (area + r_prev * (horizon - t_prev)) / horizon


def ranks(scores: dict[str, float]) -> dict[str, float]:
    """Rank 1 for the lowest score; ties share the mean of their ranks."""
    order = sorted(scores, key=lambda k: scores[k])
    out: dict[str, float] = {}
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in order[i:j + 1]:
            out[k] = (i + j) / 2 + 1
        i = j + 1
    return out


def bootstrap_ci(values: Sequence[float], *, n: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): a percentile bootstrap of the mean over ``values`` (the seeds)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    means = np.random.default_rng(seed).choice(x, size=(n, x.size), replace=True).mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(x.mean()), float(lo), float(hi)
