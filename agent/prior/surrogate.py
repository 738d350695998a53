"""Speculation's surrogate: predict a training result before it lands.

While trial t trains, the speculative branch predicts its result with :class:`Surrogate`, tells a
*fork* of the tools that value, and asks the LLM for round t+1; the accept test is in
:mod:`asap.agent.speculation`.

The surrogate is a distance-weighted k-nearest-neighbour average over finished trials, in the
unit cube of the space (log parameters on a log scale, categoricals 0/1 apart, inactive
parameters 0.5 apart). Why kNN: no fitting, deterministic, milliseconds at 500 trials, and it takes
conditional and categorical parameters as they are; a GP would have needed an encoding of inactive
dimensions and took 2.6 s per ask at 500 trials (evals/bench_core.py).
"""

from __future__ import annotations

import math
from typing import Any

from asap.tools.hpo.space import CategoricalParam, Space
from asap.tools.ledger.study import Study


def distance(space: Space, a: dict[str, Any], b: dict[str, Any]) -> float:
    """Euclidean distance in the space's unit cube (see the module docstring)."""
    total = 0.0
    for p in space.params:
        if (p.name in a) != (p.name in b):
            total += 0.25
        elif p.name not in a:
            continue
        elif isinstance(p, CategoricalParam):
            total += 0.0 if a[p.name] == b[p.name] else 1.0
        else:
            total += (unit(p, a[p.name]) - unit(p, b[p.name])) ** 2
    return math.sqrt(total)


def unit(p: Any, value: float) -> float:
    lo, hi, v = float(p.low), float(p.high), float(value)
    if p.log:
        lo, hi, v = math.log(lo), math.log(hi), math.log(v)
    return (v - lo) / (hi - lo) if hi > lo else 0.0


class Surrogate:
    """Predicts a config's objective from the study's complete trials (k nearest, 1/d weights)."""

    def __init__(self, study: Study, k: int = 5) -> None:
        self.study, self.k = study, k

    def predict(self, config: dict[str, Any]) -> float | None:
        """The predicted value, or None when no trial has completed yet."""
        done = [(distance(self.study.space, config, t.config), t.value)
                for t in self.study.trials(status="complete")]
        if not done:
            return None
        nearest = sorted(done, key=lambda dv: dv[0])[:self.k]
        if nearest[0][0] < 1e-12:
            return nearest[0][1]  # the same config has run: its value
        weights = [1.0 / d for d, _ in nearest]
        return sum(w * v for w, (_, v) in zip(weights, nearest, strict=True)) / sum(weights)


