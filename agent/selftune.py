"""The self-tuning policy: read the timing logs, adjust tau, speculation depth and context length.

It runs off the critical path every few trials. The policy is a pure function of the numbers it
reads (:class:`Observed`) and the current :class:`Knobs`: deterministic, bounded by
:class:`Bounds`, and each rule moves one knob one step, so a noisy reading cannot swing a session.

Rules, in order:

- depth: chained rounds are asked only while the trainer is busy, so they pay off when decisions
  usually fit inside a training run but some do not: median LLM latency below the median
  training time, its 90th percentile above it, and speculation accepted (>= ``accept_ok``):
  chain one more round, banking decisions for the slow calls. When the LLM is slower than
  training at the median, a deeper chain cannot help (the LLM is the bottleneck and chained
  decisions are sequential), so depth stays. A poor accept rate (< ``accept_low``) or cancelled
  chained calls wasting ``waste_ok`` of the wall-clock takes one round off.
- speculation at all (depth 0): a speculative call pays when the trial it overlaps lasts longer
  than the share of the call a miss throws away. Accepted (rate p), it saves the training time
  T it overlapped; missed, the round waits for its prefill and then calls again (a small
  answer streams nothing to cancel on before the prompt is read). Per round, speculating costs
  ``2L - T - pL`` of exposed LLM time against ``L`` without, so it pays only while
  ``T > (1 - p) L`` (docs/speculation-and-selftuning.md has a session below that line).
  Below that line depth goes to 0 (no speculative call; the trial's time warms the
  cache instead), and back to 1 once training outlasts it again. A depth the user set stays.
- tau: a poor accept rate with cheap misses (wasted speculative time under ``waste_ok`` of the
  wall-clock) loosens tau one step (x1.5); a high accept rate with expensive misses tightens it
  (/1.5).
- plan: when the LLM is slower than training (median latency above ``plan_ratio`` times the
  median training time), neither speculation nor a deeper chain can hide it, so one decision
  covers more rounds (as many as trials land during one decision, at least x2, up to
  ``plan_max``): the LLM's pick holds for the next ``plan`` rounds
  (the prior's order, or the tool it chose), and the calls it saves are pure wall-clock. When
  training outlasts even slow calls (its median above the LLM's 90th percentile), a decision
  fits inside a trial again: halve it. And by the LLM's record (:mod:`asap.agent.record`):
  every ``agree_run`` answers in a row that take the prior's pick double the plan (an answer
  that agrees changed nothing the prior would not have done, yet cost a call), up to
  ``plan_max``; a departure that paid (its trial beat the prior's prediction for its own pick)
  sets it back to ``plan_min``, so the LLM is asked every round while it earns its calls.
- context: when decisions have become slower than ``latency_ratio`` (1.3) times the study's
  first decisions (their median after the cold first call: the prompt's growth costs attention
  even when it is cached), or the prompt's growth makes the LLM slower (latency trend above
  ``trend_high`` seconds per call) while that time is exposed (median LLM latency above the
  median training time), carry fewer rounds (x0.75); when latency is flat and near the first
  decisions' (known once there are enough of them), carry more (x1.25). Compactions cost no
  cold prefill: they only delete rows, which llama.cpp reads from its cache at shifted positions,
  and the compacted prefix is warmed while the trial before it trains for servers that only
  reuse a prefix (see :mod:`asap.graphs.speculative`). The cached share is not a reason to
  shrink (a shorter log makes each round's new tokens a larger share of it), and neither is
  growth under a plan > 1 (the calls then read the rows of the rounds the plan decided, which
  compaction does not remove). Compaction stays a rare large step (the builder only drops rows
  when the carried count is passed): prefix-only caches recompute the log after each one.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, Field

from asap.agent.record import llm_record
from asap.agent.report.stats import cached_share, decision_calls
from asap.tools.ledger.study import Study


class Bounds(BaseModel):
    """Where the knobs may go, and the thresholds of the rules."""

    tau_min: float = Field(default=0.005, gt=0)
    tau_max: float = Field(default=0.5, gt=0)
    depth_min: int = Field(default=0, ge=0, description="0: the rules may stop speculating")
    depth_max: int = Field(default=4, ge=1)
    plan_min: int = Field(default=1, ge=1)
    plan_max: int = Field(default=16, ge=1)
    agree_run: int = Field(default=3, ge=1, description="LLM answers in a row that take the "
                           "prior's pick, per doubling of the plan")
    plan_ratio: float = Field(default=1.0, gt=0, description="LLM/training latency to plan at")
    context_min: int = Field(default=6, ge=2)
    context_max: int = Field(default=48, ge=2)
    accept_ok: float = Field(default=0.6, ge=0, le=1)
    accept_low: float = Field(default=0.3, ge=0, le=1)
    waste_ok: float = Field(default=0.1, ge=0, le=1)
    trend_high: float = Field(default=0.1, ge=0, description="seconds of LLM latency per round")
    latency_ratio: float = Field(default=1.3, gt=1, description="recent/first decisions' median "
                                 "latency above which the log carries fewer rounds")


@dataclass(frozen=True)
class Knobs:
    tau: float = 0.05
    depth: int = 1
    context: int = 24
    plan: int = 1  # rounds one LLM decision covers


@dataclass(frozen=True)
class Observed:
    """What the timing table says about the recent window of trials."""

    llm_s: float  # median LLM latency per decision
    llm_trend: float  # least-squares slope of LLM latency per call, seconds
    train_s: float  # how often a worker frees: median training time / workers (per worker)
    accept_rate: float | None  # speculative rounds accepted / judged; None: none judged yet
    wasted_share: float  # speculative LLM seconds thrown away / wall-clock of the window
    cached_share: float | None
    prompt_tokens: float  # median prompt length
    llm_p90: float | None = None  # 90th percentile of LLM latency; None: as the median
    llm_base: float | None = None  # median latency of the study's first decisions (the yardstick)
    agreed: int = 0  # the LLM's latest answers in a row that took the prior's pick
    departure_paid: bool = False  # the LLM's newest answer departed, and it paid


def decide(knobs: Knobs, seen: Observed, bounds: Bounds | None = None) -> tuple[Knobs, list[str]]:
    """The next knobs and one reason per change (empty when nothing changes)."""
    b = bounds or Bounds()
    new, why = knobs, []
    accept = seen.accept_rate
    if accept is not None:
        p90 = seen.llm_p90 if seen.llm_p90 is not None else seen.llm_s
        shallower = accept < b.accept_low or (knobs.depth > 1 and seen.wasted_share >= b.waste_ok)
        pays = seen.train_s > (1 - accept) * seen.llm_s  # see "speculation at all" above
        if knobs.depth >= 1 and b.depth_min == 0 and not pays:
            new = replace(new, depth=0)
            why.append(f"depth {knobs.depth}->0: training {seen.train_s:.2f}s is shorter than "
                       f"the {1 - accept:.0%} of a {seen.llm_s:.2f}s decision a miss wastes "
                       f"(accept rate {accept:.0%}): speculation cannot pay")
        elif knobs.depth == 0:
            if pays:
                new = replace(new, depth=1)
                why.append(f"depth 0->1: training {seen.train_s:.2f}s outlasts "
                           f"{1 - accept:.0%} of a {seen.llm_s:.2f}s decision")
        elif shallower and knobs.depth > max(b.depth_min, 1):
            new = replace(new, depth=knobs.depth - 1)
            why.append(f"depth {knobs.depth}->{new.depth}: accept rate {accept:.0%}, "
                       f"{seen.wasted_share:.0%} of wall-clock wasted")
        elif (seen.llm_s < seen.train_s < p90 and accept >= b.accept_ok
              and knobs.depth < b.depth_max):
            new = replace(new, depth=knobs.depth + 1)
            why.append(f"depth {knobs.depth}->{new.depth}: LLM median {seen.llm_s:.2f}s fits in "
                       f"training {seen.train_s:.2f}s but p90 {p90:.2f}s does not; accept rate "
                       f"{accept:.0%}")
        if knobs.depth == 0:  # not speculating: the accept rate is old news, tau stays
            pass
        elif accept < b.accept_low and seen.wasted_share < b.waste_ok:
            tau = max(knobs.tau, min(b.tau_max, knobs.tau * 1.5))  # never the wrong way
            if tau != knobs.tau:
                new = replace(new, tau=tau)
                why.append(f"tau {knobs.tau:.4g}->{tau:.4g}: accept rate {accept:.0%}, misses "
                           f"cheap ({seen.wasted_share:.0%} of wall-clock wasted)")
        elif accept >= b.accept_ok and seen.wasted_share >= b.waste_ok:
            tau = min(knobs.tau, max(b.tau_min, knobs.tau / 1.5))
            if tau != knobs.tau:
                new = replace(new, tau=tau)
                why.append(f"tau {knobs.tau:.4g}->{tau:.4g}: misses cost "
                           f"{seen.wasted_share:.0%} of wall-clock")
    new, why = _plan(new, seen, b, why)
    exposed = seen.llm_s > seen.train_s
    # Under a plan each call also reads the rows of the rounds it did not decide, so its latency
    # grows with the plan, not the context: compacting would only make the next call cold.
    slower = seen.llm_base is not None and seen.llm_s > b.latency_ratio * seen.llm_base
    if (seen.llm_trend > b.trend_high and exposed and knobs.plan == 1) or slower:
        context = min(knobs.context, max(b.context_min, int(knobs.context * 0.75)))
        if context != knobs.context:
            new = replace(new, context=context)
            why.append(f"context {knobs.context}->{context} rounds: " + (
                f"decisions take {seen.llm_s:.2f}s at the median, over {b.latency_ratio:g}x "
                f"the first decisions' {seen.llm_base:.2f}s" if slower else
                f"LLM latency grows {seen.llm_trend:.3f}s per call and its median "
                f"{seen.llm_s:.2f}s exceeds training {seen.train_s:.2f}s"))
    elif seen.llm_trend <= b.trend_high / 4 and seen.llm_base is not None \
            and seen.llm_s <= 1.1 * seen.llm_base:
        # Only against the yardstick: a flat trend over the short logs of a session's start says
        # nothing about a longer one (growing then took one session's log to 46 rounds, 2.1k
        # tokens, decisions 1.7x the first ones' before the shrink rule could act).
        context = max(knobs.context, min(b.context_max, int(knobs.context * 1.25)))
        if context != knobs.context:
            new = replace(new, context=context)
            why.append(f"context {knobs.context}->{context} rounds: LLM latency flat "
                       f"({seen.llm_trend:.3f}s per call)")
    return new, why


def _plan(knobs: Knobs, seen: Observed, b: Bounds, why: list[str]) -> tuple[Knobs, list[str]]:
    p90 = seen.llm_p90 if seen.llm_p90 is not None else seen.llm_s
    agreeing = min(b.plan_max, 2 ** (seen.agreed // b.agree_run))  # the LLM's record's plan
    if seen.departure_paid and knobs.plan > b.plan_min:
        plan = b.plan_min
        reason = "the LLM's newest departure from the prior paid: ask it every round again"
    elif agreeing > knobs.plan:
        plan = agreeing
        reason = (f"the LLM took the prior's pick {seen.agreed} times in a row: its answers "
                  "change nothing, so each covers more rounds")
    elif seen.llm_s > b.plan_ratio * seen.train_s:
        # As many rounds as trials land during one decision (at least double): the ramp of one
        # doubling per pass cost short-trial sessions most of their exposed time.
        need = math.ceil(seen.llm_s / max(seen.train_s, 1e-6))
        plan = max(knobs.plan, min(b.plan_max, max(knobs.plan * 2, need)))
        reason = (f"LLM median {seen.llm_s:.2f}s exceeds training {seen.train_s:.2f}s: one "
                  f"decision covers more rounds")
    elif seen.train_s > p90 and agreeing < knobs.plan:
        plan = min(knobs.plan, max(b.plan_min, knobs.plan // 2, agreeing))
        reason = f"training {seen.train_s:.2f}s outlasts the LLM's p90 {p90:.2f}s"
    else:
        return knobs, why
    if plan == knobs.plan:
        return knobs, why
    return replace(knobs, plan=plan), [*why, f"plan {knobs.plan}->{plan} rounds: {reason}"]


def observe(study: Study, window: int = 8) -> Observed | None:
    """The last ``window`` trials' numbers from the ledger; None until there are enough."""
    # Every decision call counts, speculative ones included (under speculation they are most of
    # them); a cancelled or failed call says nothing about latency or the cache.
    decisions = decision_calls(study.timings("llm_call"))
    calls = decisions[-window:]
    trains = study.timings("train")[-window:]
    if len(calls) < 3 or len(trains) < 3:
        return None
    record = llm_record(study)
    judged = study.events("speculation")[-window:]
    accepted = sum(e["detail"].get("accepted", False) for e in judged)
    start = min(c["start"] for c in calls[:1] + trains[:1])
    end = max(c["end"] for c in calls[-1:] + trains[-1:])
    wasted = sum(t["duration"] for t in study.timings("speculation")
                 if t["start"] >= start and t["detail"].get("wasted"))
    return Observed(
        llm_s=statistics.median(c["duration"] for c in calls),
        llm_p90=statistics.quantiles([c["duration"] for c in calls], n=10, method="inclusive")[-1],
        llm_trend=_slope([c["duration"] for c in calls]),
        train_s=free_every(trains),
        accept_rate=accepted / len(judged) if judged else None,
        wasted_share=wasted / (end - start) if end > start else 0.0,
        cached_share=cached_share(calls),
        prompt_tokens=statistics.median(c["prompt_tokens"] or 0 for c in calls),
        # The yardstick: the first decisions after the cold first call, once there are enough.
        llm_base=statistics.median(c["duration"] for c in decisions[1:1 + window])
        if len(decisions) > 2 * window else None,
        agreed=record.streak, departure_paid=record.last_paid)


def free_every(trains: list[dict[str, Any]]) -> float:
    """Seconds between two trials landing: one over the summed rates of the workers (each its
    median training time, from the ``worker`` of its train rows). With one worker, the median
    training time; with N alike, 1/N of it: the time an LLM decision must fit in to keep every
    worker busy, which is what the plan and depth rules compare the LLM with."""
    by_worker: dict[int, list[float]] = {}
    for t in trains:
        by_worker.setdefault(int(t["detail"].get("worker") or 0), []).append(t["duration"])
    rate = sum(1 / max(statistics.median(d), 1e-6) for d in by_worker.values())
    return 1 / rate


def _slope(ys: list[float]) -> float:
    """Least-squares slope of ``ys`` against 0, 1, 2, ..."""
    n = len(ys)
    mx, my = (n - 1) / 2, sum(ys) / n
    den = sum((x - mx) ** 2 for x in range(n))
    return sum((x - mx) * (y - my) for x, y in enumerate(ys)) / den if den else 0.0


def selftune(study: Study, knobs: Knobs, bounds: Bounds | None = None) -> Knobs:
    """Observe, decide, and write each adjustment to the ledger with the numbers behind it."""
    start = study.clock.now()
    seen = observe(study)
    if seen is None:
        return knobs
    new, why = decide(knobs, seen, bounds)
    study.log_timing("selftune", start, study.clock.now(), changed=bool(why))
    if why:
        detail: dict[str, Any] = {"before": vars(knobs), "after": vars(new), "why": why,
                                  "observed": vars(seen)}
        study.log_event("selftune", **detail)
    return new
