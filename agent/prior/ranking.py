"""The prior that orders each round's proposals: expected improvement under a Gaussian process.

Why: the LLM chooses among the tools' proposals, and a small model (SmolLM2-135M) picks the first
one it is shown almost every time. So position must carry information, not chance: each round
the proposals are scored by a GP fitted to the study's finished trials (Matern 5/2 plus noise, on
the space's unit cube with one-hot categoricals and inactive parameters at the centre), and
ordered by expected improvement over the best value so far, priced by each proposal's predicted
training time (:mod:`asap.agent.prior.cost`: with a time budget, by the share of the time left it
would leave; per second only when ``cost_weight`` asks). "A" is then
the prior's pick; the predicted value, its uncertainty, the EI and the predicted training time
(``~3 min``) stand beside every proposal so a larger model can reason with them and override.

Why EI under a GP rather than a cheaper ranking (kNN, a tool bandit, a random pick, always one
tool): it ranked best offline on the dev tables (docs/decision-loop.md, Measurements behind the
defaults).
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from asap.agent.prior.cost import cost_points, per_second, predict_seconds, span, tail, timed
from asap.agent.prior.fit import GP, encode
from asap.tools.hpo.portfolio import Offer
from asap.tools.hpo.space import Space
from asap.tools.ledger.study import Study
from asap.tools.types import Trial

SHOWN = 4  # proposals a round shows, the prior's best: more asked, the prompt as long
MIN_POINTS = 3  # fewer finished trials say nothing: the panel's order stands
MAX_POINTS = 200  # the newest ones; a GP fit is cubic in the points
MAX_ABS = 1e150  # values beyond it overflow the standardization (their square): not fitted
# Each study's two GPs (value, cost), so kernels carry over between rounds (asap.agent.prior.fit).
_GPS: weakref.WeakKeyDictionary[Study, dict[str, GP]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Score:
    """What the prior says of one proposal (values in the study's own direction)."""

    mean: float
    sd: float
    ei: float
    seconds: float | None = None  # predicted training time (None: too few timed trials)


def rank(study: Study, offers: Sequence[Offer], extra: Sequence[Trial] = (),
         cost_weight: float = 0.0, left_s: float | None = None, waves: int | None = None
         ) -> tuple[list[Offer], list[Score | None]]:
    """``offers`` ordered by expected improvement per predicted second (best first, see
    :mod:`asap.agent.prior.cost`; ``cost_weight`` 0: by EI alone; ``left_s``: the time budget left,
    which a trial must fit in) and their scores; the panel's order and no scores while fewer
    than :data:`MIN_POINTS` trials have a value.

    ``extra``: trials that are not in the ledger but should count (a speculative branch's
    predicted ones). Trials still running (N workers) count as pending, in the way of
    asynchronous BO's kriging believer: each stands in at the value the GP predicts for it, and
    at the duration the cost model predicts (at least the time it has run so far), so the next
    pick is not a running trial's near twin, and a region does not look cheap because its long
    trials have not landed yet. ``waves``: with several workers and a trial cap, the trials
    the cap leaves each worker (1: this pick starts one of the last); a proposal predicted to
    outlast the rest of the run's work by far is priced down by how far
    (:func:`~asap.agent.prior.cost.tail`), as the other workers would idle behind it.
    """
    fitted = _fitted(study, extra)
    if fitted is None:
        return list(offers), [None] * len(offers)
    done, sign, gps = fitted
    configs = [c for _, c in offers]
    pending = _pending(study, extra)
    scores = _expected_improvement(study.space, done, configs, sign, gps["value"], not extra,
                                   [t.config for t in pending])
    now = study.clock.now()
    ran = [now - t.started_at for t in pending]  # how long each has run
    busy = predict_seconds(study.space, done, [t.config for t in pending], gps["cost"],
                           refit=not extra) if pending else []  # None: too few timed trials
    believed = [(t.config, max(b, r)) for t, b, r in zip(pending, busy, ran, strict=True)
                ] if busy else []
    seconds = predict_seconds(study.space, done, configs, gps["cost"],
                              refit=not extra and not believed, pending=believed)
    if seconds is not None:
        scores = [dataclasses.replace(s, seconds=c) for s, c in zip(scores, seconds, strict=True)]
    key = per_second([s.ei for s in scores], seconds, cost_weight, left_s)
    if waves is not None and seconds is not None:
        left = [b - r for b, r in zip(busy, ran, strict=True)] if busy else []
        key = [k * f for k, f in zip(key, tail(seconds, left, timed(done), waves), strict=True)]
    order = sorted(range(len(offers)), key=lambda i: -key[i])  # stable: ties keep order
    return [offers[i] for i in order], [scores[i] for i in order]


def fit_ahead(study: Study) -> None:
    """Fit the prior's kernels (value and cost) now, on the trials finished so far, while the
    next trial trains: the round after it lands conditions on its result with them instead of
    fitting them on the critical path (:meth:`~asap.agent.prior.fit.GP.fit_ahead`)."""
    fitted = _fitted(study)
    if fitted is None:
        return
    done, sign, gps = fitted
    gps["value"].fit_ahead([encode(study.space, t.config) for t in done],
                           [sign * t.value for t in done])
    if (points := cost_points(study.space, done)) is not None:
        gps["cost"].fit_ahead(*points)


def _fitted(study: Study, extra: Sequence[Trial] = ()
            ) -> tuple[list[Trial], float, dict[str, GP]] | None:
    """What the prior's GPs fit: the latest :data:`MAX_POINTS` fittable trials with a value
    (and ``extra`` ones), the sign that makes larger better, and the study's two GPs; None
    with fewer than :data:`MIN_POINTS` of those trials."""
    done = [t for t in [*study.trials(status="complete"), *extra] if t.value is not None]
    done = _fittable(study, done)[-MAX_POINTS:]
    if len(done) < MIN_POINTS:
        return None
    sign = 1.0 if study.direction == "maximize" else -1.0
    return done, sign, _GPS.setdefault(study, {"value": GP(), "cost": GP()})


def _pending(study: Study, extra: Sequence[Trial]) -> list[Trial]:
    """The trials in flight that no ``extra`` trial stands in for (a speculative branch's
    guess carries its running trial's id)."""
    assumed = {t.id for t in extra}
    return [t for t in study.trials(status="running") if t.id not in assumed]


def _fittable(study: Study, done: list[Trial]) -> list[Trial]:
    """The trials a GP can fit: a finite value of at most :data:`MAX_ABS` (three trials at
    1e308 made every fit fail, and a study could never rank again). The ones left out are
    noted once, as a ``prior_excluded`` event."""
    keep = [t for t in done if math.isfinite(t.value) and abs(t.value) <= MAX_ABS]
    if len(keep) < len(done):
        left = sorted(t.number for t in done if t not in keep and t.id > 0)
        noted = {n for e in study.events("prior_excluded") for n in e["detail"]["trials"]}
        if left and not set(left) <= noted:
            study.log_event("prior_excluded", trials=left, reason=f"|value| above {MAX_ABS:g}: "
                            "the prior's fit leaves them out")
    return keep


def _expected_improvement(space: Space, done: list[Trial], configs: list[dict[str, Any]],
                          sign: float, gp: GP, refit: bool,
                          pending: Sequence[dict[str, Any]] = ()) -> list[Score]:
    """EI over the best value; ``pending`` configurations (trials in flight) count as trials
    that returned the GP's own mean for them (the kriging believer, Ginsbourger et al. 2010),
    with the kernel the finished trials fitted."""
    import numpy as np
    from scipy.special import ndtr

    x, y = [encode(space, t.config) for t in done], [sign * t.value for t in done]
    if pending:
        at = [encode(space, c) for c in pending]
        believed, _ = gp.predict(x, y, at, refit=refit)
        x, y, refit = x + at, y + believed, False
    mean, sd = gp.predict(x, y, [encode(space, c) for c in configs], refit=refit)
    m, s, best = np.asarray(mean), np.asarray(sd), max(y)
    z = (m - best) / s
    ei = (m - best) * ndtr(z) + s * (np.exp(-z**2 / 2.0) / np.sqrt(2 * np.pi))  # norm's pdf
    return [Score(mean=sign * a, sd=b, ei=max(float(e), 0.0))
            for a, b, e in zip(mean, sd, ei, strict=True)]


def describe(score: Score | None) -> str:
    """How a score reads in the prompt (deterministic digits: the log stays prefix-stable)."""
    if score is None or not math.isfinite(score.mean):
        return ""
    return f" | {score.mean:.3g} ±{score.sd:.2g} EI {score.ei:.2g}{_cost(score)}"


def brief(score: Score | None) -> str:
    """A score in a brief proposal line: the prediction and its uncertainty; the order already
    says which has the highest EI."""
    if score is None or not math.isfinite(score.mean):
        return ""
    return f": {score.mean:.3g} ±{score.sd:.2g}{_cost(score)}"


def _cost(score: Score) -> str:
    return "" if score.seconds is None else f" {span(score.seconds)}"
