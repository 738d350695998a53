"""Whether the LLM is worth asking this round: each call priced against what a trial costs, and
against the LLM's record.

Why: a decision the LLM takes is paid in wall-clock (its latency, on the critical path or on the
cores a trial trains on) and earns something only when it departs from the prior's pick and the
departure pays. When a call costs a small share of a trial (hour-long trials, a fast endpoint),
asking every round is cheap insurance. When a call costs as much as a trial or more (a small
local model beside objectives of a few seconds), the prior decides and one answer covers the
rest of the budget; the LLM is asked again only at a stagnation point (no better trial for a
while: what the prior alone is not finding), and a model whose departures pay earns its calls
back.

The prices are this study's measurements: the median latency of its LLM calls and the median
duration of its trials, both on the session's clock. Before any call the latency is
:data:`FIRST_CALL_S`, a local model's first (uncached) decision.
"""

from __future__ import annotations

import math
import statistics
import threading
from dataclasses import dataclass

from asap.agent.record import llm_record
from asap.agent.report.stats import decision_calls
from asap.tools.ledger.study import Study
from asap.tools.types import better

SHARE = 0.05  # a call may cost this share of a trial and still be asked every round
FIRST_CALL_S = 2.0  # the latency assumed before the study has timed a call
PATIENCE = 0.2  # trials without a better one, as a share of the budget (at least MIN_PATIENCE)
MIN_PATIENCE = 5


@dataclass(frozen=True)
class Price:
    """This round's verdict: ask the LLM or let the prior decide, and why, in words."""

    ask: bool
    why: str
    ratio: float | None = None  # a call's latency over a trial's duration

    @property
    def cheap(self) -> bool:
        """A call costs a small share of a trial: the session may wait for it. Otherwise it is
        asked while trials train and decides a later round."""
        return self.ratio is not None and self.ratio <= SHARE


ALWAYS = Price(True, "asked every round (ask=always)", 0.0)


class Verdicts:
    """The last verdict a session priced (its nodes price from two threads), to say each
    change once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: bool | None = None

    def changed(self, ask: bool) -> bool:
        with self._lock:
            changed, self._last = ask != self._last, ask
            return changed


def llm_due(study: Study, budget: int, workers: int = 1) -> Price:
    """Whether this round's decision is worth an LLM call. ``budget``: the session's trials;
    ``workers``: trials in flight at once (a worker frees up every trial's duration over
    ``workers``, and waits while a decision is asked)."""
    trial_s = _median([t["duration"] for t in study.timings("train")])
    calls = [c["duration"] for c in decision_calls(study.timings("llm_call"))]
    llm_s = _median(calls) if calls else FIRST_CALL_S
    if trial_s is None:
        return Price(False, "no trial has finished yet")
    every = trial_s / max(workers, 1)  # how often a worker frees up
    ratio = llm_s / max(every, 1e-9)
    cost = f"a call (~{llm_s:.1f} s) costs {ratio:.0%} of a trial (~{every:.1f} s)"
    if ratio <= SHARE:
        return Price(True, cost, ratio)
    record = llm_record(study)
    if record.paid and 2 * record.paid >= record.departed:
        return Price(True, f"{cost}, and {record.paid} of its {record.departed} departures "
                           "from the prior paid", ratio)
    since, asked = _since_best(study)
    patience = max(MIN_PATIENCE, math.ceil(PATIENCE * budget))
    left_s = max(0, budget - len(study.trials())) * every  # the training still to come
    if since >= patience and not asked and llm_s <= SHARE * left_s:
        return Price(True, f"{cost}; no better trial in the last {since}: a stagnation point",
                     ratio)
    return Price(False, f"{cost} and the LLM has not yet beaten the prior: the prior decides "
                        f"(asked again after {patience} trials without a better one, while a "
                        f"call costs at most {SHARE:.0%} of the training left)", ratio)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _since_best(study: Study) -> tuple[int, bool]:
    """Finished trials since the best was last improved, and whether the LLM has decided a
    round since then (one call per stagnation point)."""
    finished = [t for t in study.trials() if t.status != "running"]
    best, at = None, -1  # the trial number that set the best
    since = len(finished)
    for i, t in enumerate(finished):
        if t.status == "complete" and t.value is not None and better(study.direction, t.value,
                                                                      best):
            best, at, since = t.value, t.number, len(finished) - 1 - i
    asked = any(e["detail"].get("by") == "llm" and (e["detail"].get("trial") or -1) > at
                for e in study.events("decision"))
    return since, asked
