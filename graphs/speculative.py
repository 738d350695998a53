"""The training and speculative branches of the tuning graph, and the join that judges them.

While trial t trains (``await_train``), ``speculate`` predicts its result with the kNN
:class:`~asap.agent.speculation.Surrogate`, tells a fork of the tools, and asks the LLM for round
t+1; with ``depth`` d > 1 it chains on (round t+2 assumes t+1's predicted result, ...) up to d
rounds ahead, but only while the trainer is busy: a chained call still running when the trial
ends is cancelled rather than waited for. ``reconcile`` judges the nearest round with the real
result: accepted, its decision trains at once and the rest of the chain carries over; missed, the
whole chain is dropped (its time counted wasted) and the round runs serially.

Nothing here writes a trial: the tools are forks told predicted values, prompt logs are copies,
and decisions wait in ``chain`` until ``reconcile`` accepts them.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from langchain_core.messages import HumanMessage

from asap.agent.guard import check_json, check_tools
from asap.agent.llm import LLM_ERRORS, Cancelled
from asap.agent.selftune import Knobs, selftune
from asap.agent.speculation import Surrogate, accept
from asap.graphs.runtime import Runtime, TuningState, ask, decision_text, panel_offers


def await_train(state: TuningState, *, rt: Runtime) -> TuningState:
    """The training branch: wait for the trial (the speculative branch runs meanwhile)."""
    trial = rt._job.wait()
    if rt.speculation == "threshold" and (rt._level >= 1 or _missed(rt)):
        rt._cancel.set()  # a chained call would delay the next trial; a missed one is useless
    return {"trained": trial.id}


def _missed(rt: Runtime) -> bool:
    """The real result is in and the prediction is outside tau (or there is no value)."""
    if rt._predicted is None or not rt._job.done():
        return False
    trial = rt._job.wait(0)
    return trial is None or trial.value is None or not accept(rt._predicted, trial.value, rt.tau)


def speculate(state: TuningState, *, rt: Runtime) -> TuningState:
    """The speculative branch: extend the chain of predicted rounds up to ``rt.depth``."""
    _selftune(rt)
    chain = list(state.get("chain") or [])
    if rt.speculation == "off":
        return {"chain": []}
    in_flight = len(rt.study.trials())  # trials started, the one training included
    while len(chain) < rt.depth and in_flight + len(chain) < rt.max_trials:
        rt._level = len(chain)
        if chain and rt._job.done():
            break  # chained rounds only while the trainer is busy
        entry = _one_ahead(rt, state, chain)
        if entry is None:
            break
        if entry.get("cancelled") and chain:  # a chained call cut short: wasted, dropped
            drop(rt, [entry])
            break
        chain.append(entry)
        if entry["choice"] is None:
            break
    rt._level = -1
    return {"chain": chain}


def _one_ahead(rt: Runtime, state: TuningState, chain: list[dict[str, Any]]) -> dict | None:
    """Predict the last decided round's trial, fork the tools on it, ask for the next round."""
    start = time.time()
    if chain:
        prev = chain[-1]
        current, proposals, choice = prev["current"], prev["proposals"], prev["choice"]
        basis = chain[0]["guess"]
        number = basis.number + len(chain)
        trial = dataclasses.replace(basis, id=-1 - number, number=number, tool=choice[0],
                                    config=choice[1])  # not in the ledger: a negative id
    else:
        current, proposals, choice = state["current"], state["proposals"], state["choice"]
        trial = rt.study.trial(state["trial_id"])
    predicted = Surrogate(rt.study).predict(trial.config)
    if not chain:
        rt._predicted = predicted
        if predicted is None or (rt.speculation == "threshold" and _missed(rt)):
            return None
    guess = dataclasses.replace(trial, status="complete", value=predicted,
                                metrics={rt.study.metric: predicted})
    closed = current + rt.builder.outcome_text(decision_text(proposals, choice), guess)
    fork = rt.portfolio.fork([*(e["guess"] for e in chain), guess])
    offers = panel_offers(fork)
    builder = dataclasses.replace(rt.builder, log=[*rt.builder.log, *(e["closed"] for e in chain),
                                                   closed])
    round_no = state["round"] + len(chain) + 1
    nxt = builder.round_text(round_no, offers)
    entry = {"predicted": predicted, "guess": guess, "closed": closed, "proposals": offers,
             "current": nxt, "choice": None, "start": start, "round": round_no}
    try:
        answer = ask(rt, [HumanMessage(builder.prompt(nxt))], len(offers),
                     {"round": round_no, "speculative": True, "level": len(chain)},
                     cancel=rt._cancel)
    except Cancelled:
        return {**entry, "end": time.time(), "cancelled": True}
    except LLM_ERRORS:
        return None
    verdict = (check_tools(answer, offers, rt.study.space, rt._tools) if rt.protocol == "tools"
               else check_json(answer, offers, rt.study.space))
    return {**entry, "choice": verdict.choice if verdict.kind == "train" else None,
            "end": time.time()}


def _selftune(rt: Runtime) -> None:
    """Every ``selftune_every`` finished trials, retune tau, depth and context from the ledger.

    It runs on the speculative branch, in parallel with training: off the critical path.
    """
    done = len(rt.study.finished_ids())
    if not rt.selftune_every or done == 0 or done % rt.selftune_every:
        return
    knobs = selftune(rt.study, Knobs(tau=rt.tau, depth=rt.depth, context=rt.builder.context),
                     rt.bounds)
    rt.tau, rt.depth, rt.builder.context = knobs.tau, knobs.depth, knobs.context


def drop(rt: Runtime, chain: list[dict[str, Any]]) -> None:
    """Speculative rounds that will never be used: their time is wasted."""
    for entry in chain:
        rt.study.log_timing("speculation", entry["start"], entry["end"], wasted=True,
                            cancelled=entry.get("cancelled", False), round=entry["round"])


def reconcile(state: TuningState, *, rt: Runtime) -> TuningState:
    """The real result is in: close the round, then keep the nearest speculative round or drop."""
    trial = rt.study.trial(state["trained"])
    rt.portfolio.sync()
    rt.builder.close_round(state["current"], rt.builder.outcome_text(
        decision_text(state["proposals"], state["choice"]), trial))
    if rt.on_trial:
        rt.on_trial(trial, state["choice"][0])
    chain = state.get("chain") or []
    if not chain:
        return {"choice": None, "chain": []}
    head, rest = chain[0], chain[1:]
    if rt.speculation == "lossless":  # the serial round runs; dispatch compares the decisions
        drop(rt, rest)
        return {"choice": None, "chain": [], "verify": {
            **head, "trial": trial.number, "actual": trial.value}}
    ok = (head["choice"] is not None and trial.value is not None
          and accept(head["predicted"], trial.value, rt.tau))
    rt.study.log_timing("speculation", head["start"], head["end"], trial_number=trial.number,
                        wasted=not ok, cancelled=head.get("cancelled", False), round=head["round"])
    rt.study.log_event("speculation", accepted=ok, predicted=head["predicted"],
                       actual=trial.value, tau=rt.tau, round=head["round"], depth=len(chain))
    if not ok or rt.spent():  # a miss, or the session ends here: the rest is never used
        drop(rt, rest)
        rest = []
    if not ok:
        return {"choice": None, "chain": []}
    return {"round": head["round"], "proposals": head["proposals"], "offers": head["proposals"],
            "current": head["current"], "choice": head["choice"], "chain": rest}
