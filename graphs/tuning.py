"""The tuning graph: propose -> agent (LLM) -> guard -> dispatch training, until the budget or a stop.

    propose -> agent -> guard -+-> dispatch -+-> await_train -+-> reconcile -> dispatch | propose | END
                 ^             |             +-> speculate ---+
                 +-------------+  (retry, reminder, suggest-tool results)

``dispatch`` starts the trial in its worker process; ``await_train`` and ``speculate`` are
parallel branches (one LangGraph step), writing different keys; ``reconcile`` joins them (see
:mod:`asap.graphs.speculative`: chains of up to ``depth`` predicted rounds, accept or drop). With
``speculation="off"`` the speculative branch returns at once: the serial loop.

Nodes are module-level functions; the study, tools, trainer, chat model and prompt builder are
injected through :class:`~asap.graphs.runtime.Runtime` (``functools.partial``). Each round starts from
the prefix-stable prompt; the round's own conversation (the LLM's answers, tool results, guard
feedback) lives in ``messages`` and is dropped when the round closes.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from functools import partial

import openai
from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph

from asap.agent.guard import check_json, check_tools, fallback
from asap.agent.llm import LLM_ERRORS, is_context_overflow
from asap.graphs.runtime import PANEL, Runtime, TuningState, ask, panel_offers
from asap.graphs.speculative import await_train, reconcile, speculate

__all__ = ["PANEL", "Runtime", "TuningState", "build_tuning_graph", "recursion_limit"]


def propose(state: TuningState, *, rt: Runtime) -> TuningState:
    """Fresh proposals from the panel of tools; the round's prompt."""
    round_no = state.get("round", 0) + 1
    start = time.time()
    proposals = panel_offers(rt.portfolio)
    rt.study.log_timing("tool_call", start, time.time(), round=round_no, tools=len(PANEL))
    current = rt.builder.round_text(round_no, proposals)
    return {"round": round_no, "proposals": proposals, "offers": proposals, "current": current,
            "messages": [HumanMessage(rt.builder.prompt(current))], "attempts": 0,
            "reminded": False, "steps": 0, "error": None, "choice": None}


def agent(state: TuningState, *, rt: Runtime) -> TuningState:
    """One LLM call in the session's protocol."""
    if rt.llm is None:
        return {"error": "no LLM configured"}
    messages, detail = state["messages"], {"round": state["round"], "step": state["steps"] + 1}
    for _ in range(3):
        try:
            answer = ask(rt, messages, len(state["proposals"]), detail)
            return {"messages": [*messages, answer], "steps": state["steps"] + 1}
        except openai.BadRequestError as exc:
            if not is_context_overflow(exc) or not rt.builder.log:
                return _llm_error(rt, state, exc)
            # The prompt outgrew the server's context: compact the log now and ask again.
            rt.study.log_event("context_shrink", context=rt.builder.shrink(), reason=str(exc)[:200])
            messages = [HumanMessage(rt.builder.prompt(state["current"])), *messages[1:]]
        except LLM_ERRORS as exc:
            return _llm_error(rt, state, exc)
    return {"error": "the prompt does not fit the server's context"}


def _llm_error(rt: Runtime, state: TuningState, exc: Exception) -> TuningState:
    reason = f"{type(exc).__name__}: {exc}"[:300]
    rt.study.log_event("llm_error", reason=reason, round=state["round"])
    return {"error": reason}


def guard(state: TuningState, *, rt: Runtime) -> TuningState:
    """Check the answer; send problems back (bounded), else the fallback decides."""
    if state.get("error"):
        return _fall_back(state, rt, state["error"])
    answer = state["messages"][-1]
    if rt.protocol == "tools":
        verdict = check_tools(answer, state["offers"], rt.study.space, rt._tools)
    else:
        verdict = check_json(answer, state["offers"], rt.study.space)
    if verdict.kind == "train":
        return {"choice": verdict.choice}
    if verdict.kind == "stop":
        rt.study.log_event("stop", reason=verdict.reason, round=state["round"])
        return {"stop": True}
    update: TuningState = {"messages": [*state["messages"], *verdict.feedback],
                           "offers": [*state["offers"], *verdict.offers]}
    if state["steps"] >= rt.max_steps:
        return _fall_back(state, rt, f"no decision after {rt.max_steps} LLM calls")
    if verdict.kind == "remind":
        if state.get("reminded"):
            return _fall_back(state, rt, verdict.reason)
        rt.study.log_event("guard_reminder", reason=verdict.reason, round=state["round"])
        return {**update, "reminded": True}
    if verdict.kind == "retry":
        if state["attempts"] >= rt.max_retries:
            return _fall_back(state, rt, verdict.reason)
        rt.study.log_event("guard_retry", reason=verdict.reason, round=state["round"])
        return {**update, "attempts": state["attempts"] + 1, "retries": 1}
    return update  # explore: the suggest tools' results go back to the LLM


def _fall_back(state: TuningState, rt: Runtime, reason: str) -> TuningState:
    choice = fallback(rt.study, state["proposals"])
    rt.study.log_event("fallback", tool=choice[0], reason=reason, round=state["round"])
    return {"choice": choice, "fallbacks": 1}


def dispatch(state: TuningState, *, rt: Runtime) -> TuningState:
    """Start training the chosen configuration and go on: the trial runs in its worker."""
    tool, config = state["choice"]
    verify = state.get("verify")
    if verify is not None:  # lossless: the serial decision is made; was the speculative one it?
        ok = verify["choice"] == (tool, config)
        rt.study.log_timing("speculation", verify["start"], verify["end"],
                            trial_number=verify["trial"], wasted=not ok)
        rt.study.log_event("speculation", accepted=ok, mode="lossless", round=state["round"],
                           predicted=verify["predicted"], actual=verify["actual"])
    rt._job = rt.trainer.start(config, tool=tool)
    rt._cancel = threading.Event()
    chain = list(state.get("chain") or [])
    if chain:  # a carried chain's nearest round assumed this trial: give its guess the real id
        trial = rt.study.trial(rt._job.trial_id)
        chain[0] = {**chain[0], "guess": dataclasses.replace(chain[0]["guess"], id=trial.id,
                                                             number=trial.number)}
    rt._predicted = chain[0]["predicted"] if chain else None
    return {"trial_id": rt._job.trial_id, "chain": chain, "verify": None}


def after_guard(state: TuningState) -> str:
    if state.get("stop"):
        return END
    return "dispatch" if state.get("choice") else "agent"


def after_reconcile(state: TuningState, *, rt: Runtime) -> str:
    if rt.spent():
        return END
    return "dispatch" if state.get("choice") else "propose"


def build_tuning_graph(rt: Runtime):
    """propose -> agent -> guard -> dispatch -> (await_train || speculate) -> reconcile."""
    g = StateGraph(TuningState)
    for name, fn in [("propose", propose), ("agent", agent), ("guard", guard),
                     ("dispatch", dispatch), ("await_train", await_train),
                     ("speculate", speculate), ("reconcile", reconcile)]:
        g.add_node(name, partial(fn, rt=rt))
    g.add_edge(START, "propose")
    g.add_edge("propose", "agent")
    g.add_edge("agent", "guard")
    g.add_conditional_edges("guard", after_guard, ["agent", "dispatch", END])
    g.add_edge("dispatch", "await_train")
    g.add_edge("dispatch", "speculate")
    g.add_edge(["await_train", "speculate"], "reconcile")
    g.add_conditional_edges("reconcile", partial(after_reconcile, rt=rt),
                            ["dispatch", "propose", END])
    return g.compile()


def recursion_limit(rt: Runtime) -> int:
    """LangGraph's step bound for a whole session: every round may use all its LLM steps."""
    return rt.max_trials * (4 + 2 * rt.max_steps) + 10
