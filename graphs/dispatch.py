"""The ``dispatch`` node: start the round's chosen trial on a free worker, and record the round.

A configuration that already ran is never trained twice (the offering tool is asked again, or
the first untried point of a small finite space); every round is a ``decision`` event the eval
reads decision quality from; lossless speculation's verdict is recorded here, where the serial
decision it is compared with is known.
"""

from __future__ import annotations

import dataclasses

from langgraph.runtime import Runtime

from asap.graphs.context import TuneContext
from asap.graphs.rounds import decision_text
from asap.graphs.selftuning import due
from asap.graphs.state import Pending, TuningState, Verification
from asap.tools.hpo.panel import RANDOM, UNTRIED
from asap.tools.hpo.portfolio import LIBRARIES, Offer
from asap.tools.ledger.study import BudgetSpent, RepeatError
from asap.tools.trials.job import TrainingJob
from asap.tools.types import Trial


def dispatch(state: TuningState, runtime: Runtime[TuneContext]) -> TuningState:
    """Start training the chosen configuration and go on: the trial runs in its worker."""
    ctx = runtime.context
    if (verify := state["verify"]) is not None:  # lossless: was the speculative one it?
        _record_verdict(ctx, verify, state["choice"], state["round"])
    if ctx.trainer.cancel.is_set():
        return {"spent": True, "verify": None}
    try:
        job = _start_fresh(ctx, state["choice"], state["round"])
    except (BudgetSpent, SpaceExhausted):  # other processes took the last slots, or nothing
        return {"spent": True, "verify": None}  # is left that has not run
    flight = ctx.flights.start(job)
    trial = ctx.study.trial(flight.job.trial_id)
    _record_decision(ctx, state, trial)
    decision = decision_text(state["proposals"], state["choice"])
    running = {**state["running"], trial.id: Pending(state["round"], decision)}
    log = ctx.builder.started(state["log"], state["round"], decision, trial)
    chain = list(state["chain"])
    if chain:  # a carried chain's nearest round assumed this trial: give its guess the real id
        chain[0] = dataclasses.replace(chain[0], guess=dataclasses.replace(
            chain[0].guess, id=trial.id, number=trial.number))
        flight.predicted = chain[0].predicted
    fill = ctx.can_start(len(running))
    return {"trial_id": trial.id, "running": running, "log": log, "chain": chain,
            "verify": None, "fill": fill, "tune_due": not fill and due(ctx)}


def _start_fresh(ctx: TuneContext, choice: Offer, round_no: int, tries: int = 5) -> TrainingJob:
    """Start the chosen trial; a configuration that already ran (the LLM's own config copying an
    old one, or another process on the study starting it a moment ago) is never trained twice:
    the tool that offered it (random sampling for the LLM's own) is asked for a fresh one."""
    tool, config = choice
    for _ in range(tries):
        try:
            return _start(ctx, config, tool, allow_repeat=False)
        except RepeatError as exc:
            lib, _, alg = tool.partition(":")
            if lib not in LIBRARIES:
                tool, lib, alg = RANDOM.key, RANDOM.library, RANDOM.algorithm
            ctx.study.log_event("repeat_avoided", tool=tool, round=round_no, trial=exc.number)
            config = ctx.portfolio.ask(lib, alg, 1)[0]
    if ctx.study.space.countable() is None:  # a continuous space repeats by necessity
        return _start(ctx, config, tool)
    # The tools keep repeating in a small finite space: the first point not run yet, if any.
    left = ctx.study.space.untried(ctx.study.config_keys())
    if left is None:
        ctx.study.log_event("space_exhausted", round=round_no)
        if ctx.say is not None:
            ctx.say("every configuration of the space has run: the session ends")
        raise SpaceExhausted("every configuration of the space has run")
    return _start(ctx, left, UNTRIED, allow_repeat=False)


def _start(ctx: TuneContext, config: dict, tool: str, **kw: bool) -> TrainingJob:
    """Start a trial when a worker is free (one decided ahead waits for it), its result held
    until the graph takes it when trials land in order."""
    return ctx.trainer.start(config, tool=tool, limit=ctx.max_trials, landed=ctx.flights.landed,
                             hold=ctx.in_order, wait=True, **kw)


class SpaceExhausted(RuntimeError):
    """No configuration is left that has not run (or the space is too large to list them)."""


def _record_decision(ctx: TuneContext, state: TuningState, trial: Trial) -> None:
    """The round as an event: what was offered (in the prior's order, with its scores: mean,
    sd, EI, predicted seconds), what was chosen and by whom, and which trial trained it; the
    eval measures decision quality from these."""
    proposals, choice = state["proposals"], state["choice"]
    decision = dict(round=state["round"], trial=trial.number, by=state["decided_by"],
                    choice=decision_text(proposals, choice), trained=[trial.tool, trial.config],
                    offers=[[tool, config] for tool, config in proposals],
                    scores=[None if sc is None else [sc.mean, sc.sd, sc.ei, sc.seconds]
                            for sc in state["scores"] or [None] * len(proposals)])
    ctx.study.log_event("decision", **decision)
    if ctx.on_decision is not None:
        ctx.on_decision(decision)


def _record_verdict(ctx: TuneContext, verify: Verification, choice: tuple, round_no: int) -> None:
    ok = verify.spec.choice == choice
    ctx.study.log_timing("speculation", verify.spec.start, verify.spec.end,
                         trial_number=verify.trial, wasted=not ok)
    ctx.study.log_event("speculation", accepted=ok, mode="lossless", round=round_no,
                        predicted=verify.spec.predicted, actual=verify.actual)
