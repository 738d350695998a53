"""The cost model: what a proposal will cost to train, and how that cost is weighed.

Why: a user asks "how good is my model after an hour?". On HPOBench an MLP trains for 1 s to
2.4 h, and expected improvement alone buys whatever is most likely to improve, whatever it
costs. Each proposal's training time is predicted from the study's finished trials (their
durations on the session's clock: the table's simulated cost on the virtual clock, real seconds
otherwise) by a Gaussian process on log seconds over the prior's encoding. The prompt shows it
beside every proposal (``~3 min``), and the ranking prices it two ways:

- with a time budget, each EI is scaled by the share of the time left its trial would leave
  (:func:`fits`): a trial that cannot finish is stopped at the budget and buys nothing;
- EI per predicted second to the power ``w`` (``cost_weight``; ``"cool"``: CArBO's
  cost-cooling, Lee et al. 2020, 1 at the start to 0 when the budget is spent).

The default weight is 0, with the fit to the time left: where the cheap configurations are the
small, poor models (HPOBench's MLPs), pricing per second buys cheap trials that teach the GP
little about the good region. ``cost_weight`` > 0 or ``"cool"`` remain for workloads whose cheap
configurations are good ones. The measurements behind this choice are in docs/decision-loop.md
(Measurements behind the defaults).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from asap.agent.prior.fit import GP, encode
from asap.tools.hpo.space import Space
from asap.tools.types import Trial

MIN_TIMED = 3  # finished trials with a duration before costs are predicted
FLOOR_S = 1e-3  # a predicted duration below it counts as it (a lookup's ~0 s)


def timed(done: Sequence[Trial]) -> list[Trial]:
    """The complete trials whose duration is known, finite and positive."""
    return [t for t in done if t.status == "complete" and t.duration is not None
            and math.isfinite(t.duration) and t.duration > 0]


def cost_points(space: Space, done: Sequence[Trial]
                ) -> tuple[list[list[float]], list[float]] | None:
    """The cost GP's points: the timed trials' encoded configs and log seconds; None with
    fewer than :data:`MIN_TIMED` of them."""
    done = timed(done)
    if len(done) < MIN_TIMED:
        return None
    return ([encode(space, t.config) for t in done],
            [math.log(max(t.duration, FLOOR_S)) for t in done])


def predict_seconds(space: Space, done: Sequence[Trial], configs: Sequence[dict[str, Any]],
                    gp: GP, refit: bool = True,
                    pending: Sequence[tuple[dict[str, Any], float]] = ()) -> list[float] | None:
    """Each config's predicted training seconds (the GP's median), or None with fewer than
    :data:`MIN_TIMED` timed trials. Deterministic given the trials (prefix-stable prompts).

    ``pending``: trials in flight, as (config, seconds believed), conditioned on with the kernel
    the finished trials fitted (the prior believes a running trial's predicted duration, or the
    time it has run if longer: :func:`asap.agent.prior.ranking.rank`)."""
    points = cost_points(space, done)
    if points is None:
        return None
    x, y = points
    if pending:
        x = x + [encode(space, c) for c, _ in pending]
        y = y + [math.log(max(s, FLOOR_S)) for _, s in pending]
        refit = False
    mean, _ = gp.predict(x, y, [encode(space, c) for c in configs], refit=refit)
    return [max(math.exp(m), FLOOR_S) for m in mean]


def weight(elapsed_s: float, budget_s: float | None) -> float:
    """Cost-cooling's weight now: the share of the time budget left (1 at the start, 0 at its
    end); 1 without a budget (EI per second throughout)."""
    if budget_s is None:
        return 1.0
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


def tail(seconds: Sequence[float], left: Sequence[float], done: Sequence[Trial],
         waves: int = 1) -> list[float]:
    """How much each proposal is worth for its length when several workers share a trial cap
    (1: all of it). The workers are busy anyway for the longest predicted remainder of the
    trials in flight (``left``), or for ``waves`` typical trials each (the median of ``done``'s
    durations; ``waves``: the trials the cap leaves per worker, this one included), whichever is
    longer; a proposal predicted to take k times that keeps 1/k of its worth, since the other
    workers would run out of trials and idle behind it. Straggler-aware, as asynchronous
    successive halving ends a budget: in the last wave (``waves`` 1) a trial much longer than a
    typical one is priced down, early in the cap only one longer than the rest of the run."""
    if not left and not done:
        return [1.0] * len(seconds)
    typical = sorted(t.duration for t in done)[len(done) // 2] if done else 0.0
    horizon = max([*left, typical * max(waves, 1), FLOOR_S])
    return [min(1.0, horizon / max(s, FLOOR_S)) for s in seconds]


def span(seconds: float) -> str:
    """A predicted duration as the prompt shows it: ``~4 s``, ``~3 min``, ``~1.5 h``."""
    if seconds < 60:
        return f"~{seconds:.2g} s"
    if seconds < 3600:
        return f"~{seconds / 60:.2g} min"
    return f"~{seconds / 3600:.3g} h"
