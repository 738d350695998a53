"""The training and speculative branches of the tuning graph, and the join that judges them.

While trial t trains (``await_train``), ``speculate`` predicts its result with the kNN
:class:`~asap.agent.prior.surrogate.Surrogate`, tells a fork of the tools, and asks the LLM for round
t+1; with ``depth`` d > 1 it chains on (round t+2 assumes t+1's predicted result, ...) up to d
rounds ahead, but only while the trainer is busy: a chained call still running when the trial
ends is cancelled rather than waited for. ``reconcile`` judges the nearest round with the real
result: accepted, its decision trains at once and the rest of the chain carries over; missed, the
whole chain is dropped (its time counted wasted) and the round runs serially.

Nothing here writes a trial: the tools are forks told predicted values, prompt logs are immutable
values, and decisions wait in ``chain`` until ``reconcile`` accepts them. The two branches share
only the trial's :class:`~asap.graphs.flights.InFlight` channel.
"""

from __future__ import annotations

import dataclasses

from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime

from asap.agent.llm.client import Cancelled, llm_errors
from asap.agent.prior.ranking import fit_ahead
from asap.agent.prior.surrogate import Surrogate
from asap.agent.selftune import Knobs
from asap.agent.speculation import accept
from asap.graphs.calls import ask, warm_up
from asap.graphs.context import TuneContext
from asap.graphs.flights import InFlight
from asap.graphs.growth import grow
from asap.graphs.rounds import absorb, catch_up, commit, decision_text, next_to_land, round_offers
from asap.graphs.state import SpecRound, TuningState, Verification


def await_train(state: TuningState, runtime: Runtime[TuneContext]) -> TuningState:
    """The training branch: wait for the next trial to land, whichever of the N in flight
    (the speculative branch runs meanwhile)."""
    ctx = runtime.context
    flight = ctx.flights.get(next_to_land(state))  # the one speculation decides after
    if ctx.prefetching() and not state["spent"] and not state["stop"]:
        _prefetch(ctx, state)
    ctx.phase("training")
    if ctx.clock.virtual:
        ctx.flights.await_speculation()
    flight.job.release()  # held (in_order): results are taken in the order trials started
    landed = ctx.flights.next_landed(ctx.clock)
    if landed != flight.job.trial_id or not ctx.breaker.closed() or (
            ctx.spec_mode == "threshold" and (
                flight.level >= 1 or _missed(flight, state["knobs"]))):
        # Another trial landed first (the speculation assumed this one), a chained call would
        # delay the next trial, a missed one is useless, and one on a failing endpoint must
        # not hold up the critical path.
        flight.cancel.set()
    return {"trained": landed}


def _prefetch(ctx: TuneContext, state: TuningState) -> None:
    """The next round's proposals and the prior's kernels while this trial trains
    (:mod:`asap.graphs.prefetch`); its tool_call timing row overlaps training, so the asks and
    the fit are off the critical path."""
    start, basis = ctx.clock.now(), len(ctx.study.trials())
    if basis >= ctx.max_trials:
        return  # no round follows
    ctx.prefetched.put(basis, ctx.portfolio.panel_offers())
    fit_ahead(ctx.study)  # the prior's kernels too: the next round only conditions on them
    ctx.study.log_timing("tool_call", start, ctx.clock.now(), round=state["round"] + 1,
                         tools=len(ctx.portfolio.panel), prefetched=True)


def _missed(flight: InFlight, knobs: Knobs) -> bool:
    """The real result is in and the prediction is outside tau (or there is no value)."""
    predicted = flight.predicted
    if predicted is None or not flight.job.done():
        return False
    trial = flight.job.wait(0)
    return trial is None or trial.value is None or not accept(predicted, trial.value, knobs.tau)


def speculate(state: TuningState, runtime: Runtime[TuneContext]) -> TuningState:
    """The speculative branch: extend the chain of predicted rounds up to the depth knob. Its
    work overlaps training: a virtual clock charges only what outlasts the trial."""
    ctx = runtime.context
    with ctx.clock.busy():
        if ctx.clock.virtual:
            ctx.flights.speculation_began()
        return _speculate(ctx, state)


def _speculate(ctx: TuneContext, state: TuningState) -> TuningState:
    knobs = state["knobs"]  # as the selftune node left them this step
    chain = list(state["chain"])
    if ctx.spec_mode == "off" or knobs.depth == 0 or state["plan_left"] > 0 \
            or ctx.ahead.asked() or len(ctx.study.finished_ids()) + 1 < ctx.llm_after \
            or not ctx.breaker.closed() or state["spent"] or state["stop"] \
            or not ctx.price(state["round"] + 1).ask or not ctx.llm_ready():
        # Off (or self-tuned off: trials too short to pay), the next round is the plan's (no
        # LLM) or a start-up round (the fallback's: llm_after), the endpoint is failing, no
        # trial will start, or a call costs more than it has earned (the prior decides the
        # next round): nothing to decide ahead, and a carried chain will not be used.
        drop(ctx, chain)
        _warm(ctx, state, knobs)
        return {"chain": []}
    catch_up(ctx, state)  # off the critical path, before the forks copy the tools
    flight = ctx.flights.get(next_to_land(state))
    in_flight = len(ctx.study.trials())  # trials started, the ones training included
    # A plan decides the rounds after the next; with N workers the round after next follows
    # another worker's trial, which this chain cannot know: one round ahead.
    depth = knobs.depth if knobs.plan == 1 and ctx.trainer.workers == 1 else 1
    while len(chain) < depth and in_flight + len(chain) < ctx.max_trials:
        flight.level = len(chain)
        if chain and flight.job.done():
            break  # chained rounds only while the trainer is busy
        entry = _one_ahead(ctx, state, chain, flight, knobs)
        if entry is None:
            if not chain:  # no speculative call on this round's prefix: warm it instead
                _warm(ctx, state, knobs)
            break
        if entry.cancelled and chain:  # a chained call cut short: wasted, dropped
            drop(ctx, [entry])
            break
        chain.append(entry)
        if entry.choice is None:
            break
    flight.level = -1
    return {"chain": chain, "lag": 0}


def _one_ahead(ctx: TuneContext, state: TuningState, chain: list[SpecRound], flight: InFlight,
               knobs: Knobs) -> SpecRound | None:
    """Predict the last decided round's trial, fork the tools on it, ask for the next round."""
    start = ctx.clock.now()
    if chain:
        prev = chain[-1]
        closing, proposals, choice = prev.round, prev.proposals, prev.choice
        basis = chain[0].guess
        number = basis.number + len(chain)
        trial = dataclasses.replace(basis, id=-1 - number, number=number, tool=choice[0],
                                    config=choice[1])  # not in the ledger: a negative id
    else:
        trial = ctx.study.trial(flight.job.trial_id)
        pending = state["running"][trial.id]
    predicted = Surrogate(ctx.study).predict(trial.config)
    if not chain:
        flight.predicted = predicted
        if predicted is None or (ctx.spec_mode == "threshold" and _missed(flight, knobs)):
            return None
    guess = dataclasses.replace(trial, status="complete", value=predicted,
                                metrics={ctx.study.metric: predicted})
    closed = (ctx.builder.landed(closing, decision_text(proposals, choice), guess) if chain
              else ctx.builder.landed(pending.round, pending.decision, guess))
    assumed = [*(e.guess for e in chain), guess]
    offers, scores = round_offers(ctx, ctx.portfolio.fork(assumed), extra=assumed)
    log = state["log"]
    for row in (*(e.closed for e in chain), closed):  # closed as reconcile will close them
        log = ctx.builder.close(log, row, knobs.context)
    round_no = state["round"] + len(chain) + 1
    nxt = ctx.builder.round_text(round_no, offers, scores, plan=knobs.plan)
    entry = SpecRound(predicted=predicted, guess=guess, closed=closed, proposals=offers,
                      scores=scores, current=nxt, round=round_no, start=start)
    try:
        answer = ask(ctx, [HumanMessage(ctx.builder.prompt(log, nxt))], len(offers),
                     {"round": round_no, "speculative": True, "level": len(chain)},
                     cancel=flight.cancel)
    except Cancelled:
        return dataclasses.replace(entry, end=ctx.clock.now(), cancelled=True)
    except llm_errors():
        return None
    verdict = ctx.check(answer, offers)
    return dataclasses.replace(entry, end=ctx.clock.now(),
                               choice=verdict.choice if verdict.kind == "train" else None)


def _warm(ctx: TuneContext, state: TuningState, knobs: Knobs) -> None:
    """While the trial trains, warm the next LLM round's prompt prefix in the server's cache
    when that call would otherwise recompute more than its newest row: the log compacts when
    this round closes, or rounds a plan decided (no call) have grown it since the last call.
    Skipped when no LLM call comes next, or the trial already ended (nothing to overlap).

    Not on planned rounds: a plan means trials shorter than a decision, so a warm-up there
    outlasts its trial and delays the next one: what it saves the next call, it costs in exposed
    LLM time (docs/speculation-and-selftuning.md)."""
    if ctx.llm is None or state["plan_left"] > 0 or not ctx.breaker.closed() \
            or ctx.ahead.asked() \
            or ctx.builder.mode != "stable" \
            or not ctx.price(state["round"] + 1).ask \
            or not ctx.llm_ready():  # no call next: nothing to warm
        return
    flight = ctx.flights.get(next_to_land(state))
    prefix = ctx.builder.next_prefix(state["log"], knobs.context)  # None: no compaction due
    if flight.job.done() or not (prefix or state["decided_by"] == "plan"):
        return
    ctx.study.log_event("warmup", round=state["round"] + 1, compaction=prefix is not None)
    warm_up(ctx, prefix or ctx.builder.next_prefix(state["log"], knobs.context, always=True),
            state["round"] + 1)


def drop(ctx: TuneContext, chain: list[SpecRound]) -> None:
    """Speculative rounds that will never be used: their time is wasted."""
    for entry in chain:
        ctx.study.log_timing("speculation", entry.start, entry.end, wasted=True,
                             cancelled=entry.cancelled, round=entry.round)


def reconcile(state: TuningState, runtime: Runtime[TuneContext]) -> TuningState:
    """The real result is in: close the round, then keep the nearest speculative round or drop."""
    ctx = runtime.context
    trial = ctx.study.trial(state["trained"])
    closed = absorb(ctx, state, [trial.id])
    grow(ctx)  # once its first trials are measured: more workers where cores stood idle
    log, running = closed["log"], closed["running"]
    spent = ctx.spent() or bool(state["spent"])
    chain = state["chain"]
    if chain and chain[0].guess.id != trial.id:  # another worker's trial landed first
        drop(ctx, chain)
        chain = []
    if not chain:
        return {"choice": None, "chain": [], "log": log, "running": running, "spent": spent}
    head, rest = chain[0], chain[1:]
    if ctx.spec_mode == "lossless":  # the serial round runs; dispatch compares the decisions
        drop(ctx, rest)
        return {"choice": None, "chain": [], "log": log, "running": running, "spent": spent,
                "verify": Verification(head, trial.number, trial.value)}
    tau = state["knobs"].tau
    ok = (head.choice is not None and trial.value is not None
          and accept(head.predicted, trial.value, tau))
    ctx.study.log_timing("speculation", head.start, head.end, trial_number=trial.number,
                         wasted=not ok, cancelled=head.cancelled, round=head.round)
    ctx.study.log_event("speculation", accepted=ok, predicted=head.predicted,
                        actual=trial.value, tau=tau, round=head.round, depth=len(chain))
    if not ok or spent:  # a miss, or the session ends here: the rest is never used
        drop(ctx, rest)
        rest = []
    if not ok:
        return {"choice": None, "chain": [], "log": log, "running": running, "spent": spent}
    return {"round": head.round, "proposals": head.proposals, "offers": head.proposals,
            "scores": head.scores, "decided_by": "llm", "current": head.current,
            "choice": head.choice, "chain": rest, "log": log, "running": running,
            "spent": spent,
            "lag": state["lag"] + 1,
            **commit(state["knobs"], head.proposals, head.choice)}
