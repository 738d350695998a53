"""The cost model: what a proposal will cost to train, and how much that cost weighs.

Why: a user asks "how good is my model after an hour?". Expected improvement alone buys the
configuration most likely to improve, whatever it costs; on HPOBench an MLP trains for 1 s to
2.4 h, so a pick that is a little better per trial can be far worse per hour. Each proposal's
training time is predicted from the study's finished trials (their durations on the session's
clock: the table's simulated cost on the virtual clock, real seconds otherwise) by a Gaussian
process on log seconds, over the prior's encoding, and the prior ranks by EI per predicted
second to the power ``weight`` (CArBO's cost-cooling, Lee et al. 2020): the weight starts at 1
and cools to 0 as the time budget is spent, so the first rounds buy cheap information and the
last ones buy quality whatever it costs.

Without a time budget (a trial budget alone), the weight stays at :data:`NO_BUDGET_WEIGHT`,
chosen by measurement on both axes (evals/bench_cost.py, see that constant).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from asap.agent.fit import GP, encode
from asap.tools.space import Space
from asap.tools.types import Trial

MIN_TIMED = 3  # finished trials with a duration before costs are predicted
FLOOR_S = 1e-3  # a predicted duration below it counts as it (a lookup's ~0 s)
# The weight without a time budget. Measured (evals/bench_cost.py, 5 dev tasks x 10 seeds,
# virtual clock): see the closing note of issue 28 and the module docstring of bench_cost.
NO_BUDGET_WEIGHT = 0.5


def timed(done: Sequence[Trial]) -> list[Trial]:
    """The complete trials whose duration is known, finite and positive."""
    return [t for t in done if t.status == "complete" and t.duration is not None
            and math.isfinite(t.duration) and t.duration > 0]


def predict_seconds(space: Space, done: Sequence[Trial], configs: Sequence[dict[str, Any]],
                    gp: GP, refit: bool = True) -> list[float] | None:
    """Each config's predicted training seconds (the GP's median), or None with fewer than
    :data:`MIN_TIMED` timed trials. Deterministic given the trials (prefix-stable prompts)."""
    done = timed(done)
    if len(done) < MIN_TIMED:
        return None
    x = [encode(space, t.config) for t in done]
    y = [math.log(max(t.duration, FLOOR_S)) for t in done]
    mean, _ = gp.predict(x, y, [encode(space, c) for c in configs], refit=refit)
    return [max(math.exp(m), FLOOR_S) for m in mean]


def weight(elapsed_s: float, budget_s: float | None) -> float:
    """How much cost weighs now: the share of the time budget left (1 at the start, 0 at its
    end), or :data:`NO_BUDGET_WEIGHT` without one."""
    if budget_s is None:
        return NO_BUDGET_WEIGHT
    return min(1.0, max(0.0, 1.0 - elapsed_s / budget_s))


def per_second(ei: Sequence[float], seconds: Sequence[float] | None, w: float,
               left_s: float | None = None) -> list[float]:
    """The ranking key: EI per predicted second to the power ``w`` (seconds relative to the
    round's median, which orders the same and keeps the numbers readable), times the share of
    the time budget left (``left_s``) that the trial would leave unspent: a trial that cannot
    finish in the time left is worth nothing (it is stopped at the budget), one that would
    take half of it half its EI."""
    if seconds is None:
        return list(ei)
    mid = sorted(seconds)[len(seconds) // 2]
    return [e / (s / mid) ** w * fits(s, left_s) for e, s in zip(ei, seconds, strict=True)]


def fits(seconds: float, left_s: float | None) -> float:
    """The share of the time left that a trial of ``seconds`` leaves (1 without a budget)."""
    if left_s is None:
        return 1.0
    return max(0.0, 1.0 - seconds / left_s) if left_s > 0 else 0.0


def span(seconds: float) -> str:
    """A predicted duration as the prompt shows it: ``~4 s``, ``~3 min``, ``~1.5 h``."""
    if seconds < 60:
        return f"~{seconds:.2g} s"
    if seconds < 3600:
        return f"~{seconds / 60:.2g} min"
    return f"~{seconds / 3600:.3g} h"
