"""The tuning graph: propose -> agent (LLM) -> guard -> dispatch training, until the budget or a stop.

    propose -> agent -> guard -+-> dispatch -> selftune -+-> await_train -+-> reconcile -> ...
       |         ^             |      ^                  +-> speculate ---+
       |         +-------------+      |  (retry, reminder, suggest-tool results)
       +------------------------------+  (a round the last decision's plan, or the decision
                                          asked ahead, covers)
    ... -> finish -> END  (no trial may start and none runs)

``dispatch`` starts the trial in its worker process (:mod:`asap.graphs.dispatch`); ``selftune``
retunes the knobs now and then (:mod:`asap.graphs.selftuning`); ``await_train`` and ``speculate`` are
parallel branches (one LangGraph step), writing different keys; ``reconcile`` joins them (see
:mod:`asap.graphs.speculative`: chains of up to ``depth`` predicted rounds, accept or drop). With
``speculation="off"`` the speculative branch returns at once: the serial loop.

The graph is compiled once (:data:`graph`); a run passes its :class:`~asap.graphs.context.TuneContext`
(``graph.invoke(ctx.initial_state(), {...}, context=ctx)``) and nodes read it as
``runtime.context``. When the self-tuner sets ``plan`` > 1 (the LLM is slower than training),
one LLM decision covers that many rounds (:func:`~asap.graphs.rounds.commit`): the rounds it
covers are still proposed, ranked and logged, but go from ``propose`` straight to ``dispatch``,
and the next plan's decision is asked in the background meanwhile (:mod:`asap.graphs.ahead`).
Each round starts from the prefix-stable prompt; the round's own conversation (the LLM's answers,
tool results, guard feedback) lives in ``messages`` and is dropped when the round closes.
"""

from __future__ import annotations

import dataclasses
import functools

from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from asap.agent.guard import fallback
from asap.agent.llm.client import is_context_overflow, llm_errors
from asap.agent.selftune import observe
from asap.graphs.ahead import Asked
from asap.graphs.calls import ask, warm_up
from asap.graphs.context import TuneContext
from asap.graphs.dispatch import dispatch
from asap.graphs.rounds import absorb, catch_up, commit, planned, ranked_offers, round_offers
from asap.graphs.selftuning import selftune_node
from asap.graphs.speculative import await_train, reconcile, speculate
from asap.graphs.state import Round, TuningState
from asap.tools.hpo.portfolio import Offer

__all__ = ["TuneContext", "TuningState", "build_tuning_graph", "graph"]


def propose(state: TuningState, runtime: Runtime[TuneContext]) -> TuningState:
    """Fresh proposals from the panel of tools; the round's prompt."""
    ctx = runtime.context
    landed = absorb(ctx, state, ctx.flights.landed_now())  # trials that ended meanwhile
    if ctx.spent():  # cancelled (runs.cancel, the chat's Ctrl-C), or the budget is taken
        return {**landed, "spent": True}
    round_no = state["round"] + 1
    ctx.phase("tools")
    start = ctx.clock.now()
    state = {**state, **landed}
    catch_up(ctx, state)
    if (asked := ctx.prefetched.take(len(ctx.study.trials()))) is not None:
        proposals, scores = ranked_offers(ctx, asked)  # asked while the last trial trained
    else:
        proposals, scores = round_offers(ctx)
    ctx.study.log_timing("tool_call", start, ctx.clock.now(), round=round_no,
                         tools=len(ctx.portfolio.panel))
    decided = functools.partial(Round, round_no, proposals, scores)
    left = state["plan_left"]
    if not state["round"] and not ctx.study.finished_ids() and _ahead_on(ctx):
        # The first round has nothing to decide from (no result, no prior): it trains the
        # start-up pick at once while the LLM reads the prompt, cold, for a later round.
        _ask(ctx, state, round_no, proposals, scores)
        return decided("plan", fallback(ctx.study, proposals, scored=False)).update(landed)
    if ctx.llm is None or len(ctx.study.finished_ids()) < ctx.llm_after:
        # No LLM (--llm off), or the start-up rounds, which give it nothing to use (a decision
        # asked ahead waits for the first round after them): the fallback's pick, the
        # prior's once it scores.
        scored = any(score is not None for score in scores)
        return decided("prior", fallback(ctx.study, proposals, scored)).update(landed)
    if not left and (early := ctx.ahead.take()) is not None:  # asked ahead, and back: it decides
        if (taken := _decided_ahead(ctx, state, early, proposals, round_no)) is not None:
            return {**decided("llm").update(landed), **taken}
    if left or ctx.ahead.asked():  # the last decision covers this round (or holds for the
        # next one, still being asked): no LLM call on the critical path, and no prompt block
        # (the log gets the round's line when it closes)
        _ask_ahead(ctx, state, round_no, proposals, scores)
        return decided("plan", planned(state, proposals),
                       plan_left=max(left - 1, 0)).update(landed)
    price = ctx.price(round_no)
    if not price.ask or not price.cheap or not ctx.llm_ready():  # the prior decides this
        # round; a call that costs more than a trial, when it is due, is asked while the trials
        # train (it decides a later round: no session waits for it); an embedded server that
        # is still loading answers a later round
        if price.ask and ctx.llm_ready() and ctx.breaker.closed():
            _ask(ctx, state, round_no, proposals, scores)
        scored = any(score is not None for score in scores)
        return decided("prior", fallback(ctx.study, proposals, scored)).update(landed)
    current = ctx.builder.round_text(round_no, proposals, scores, plan=state["knobs"].plan)
    return decided("llm", None, [HumanMessage(ctx.builder.prompt(state["log"], current))],
                   current).update(landed)


def _ask_ahead(ctx: TuneContext, state: TuningState, round_no: int, proposals: list[Offer],
               scores: list) -> None:
    """On a planned round: ask the next plan's decision in the background (see
    :mod:`asap.graphs.ahead`), or, once it is back, warm the log's newest row in the cache."""
    if not _ahead_on(ctx) or state["knobs"].plan == 1:
        return
    if not ctx.ahead.asked():
        if _worth_asking(ctx, state["plan_left"], round_no + 1):
            _ask(ctx, state, round_no, proposals, scores)
    elif ctx.builder.mode == "stable":  # the naive header changes every round: nothing to keep
        prefix = ctx.builder.prompt(state["log"], "")
        ctx.ahead.warm(lambda: warm_up(ctx, prefix, round_no + 1))


def _ahead_on(ctx: TuneContext) -> bool:
    """Decisions may be asked ahead: an LLM that answers, and speculation on (lossless promises
    the serial decisions, off is the serial loop)."""
    return (ctx.llm is not None and ctx.spec_mode == "threshold" and ctx.decide_ahead
            and ctx.breaker.closed() and ctx.llm_ready())


def _ask(ctx: TuneContext, state: TuningState, round_no: int, proposals: list[Offer],
         scores: list) -> None:
    """Ask this round's prompt in the background; the answer decides a later round."""
    current = ctx.builder.round_text(round_no, proposals, scores, plan=state["knobs"].plan)
    messages = [HumanMessage(ctx.builder.prompt(state["log"], current))]
    detail = {"round": round_no, "speculative": True, "ahead": True}
    ctx.ahead.ask(Asked(round_no, proposals, current),
                  lambda cancel: ask(ctx, messages, len(proposals), detail, cancel=cancel))


def _worth_asking(ctx: TuneContext, left: int, round_no: int) -> bool:
    """A decision asked now can still be taken: a round comes after the plan, and the trials
    left outlast a decision (the session's end waits for a call still running, since a
    cancelled call's prompt is read to its end anyway)."""
    started = len(ctx.study.trials())
    if started + left >= ctx.max_trials:
        return False
    if not ctx.price(round_no).ask:
        return False
    seen = observe(ctx.study)
    return seen is None or (ctx.max_trials - started - 1) * seen.train_s >= seen.llm_s


def _decided_ahead(ctx: TuneContext, state: TuningState, early: Asked, proposals: list[Offer],
                   round_no: int) -> TuningState | None:
    """The decision asked ahead, applied to this round's proposals: its "A" is the prior's
    first, another label that proposal's tool (its proposal this round), an own configuration
    itself; it commits the plan from here. None when it has no usable answer (the round asks
    the LLM itself)."""
    if early.answer is None:
        ctx.study.log_event("ahead", round=round_no, asked=early.round,
                            error=f"{type(early.error).__name__}: {early.error}"[:300])
        return None
    verdict = ctx.check(early.answer, early.offers)
    ctx.study.log_event("ahead", round=round_no, asked=early.round, verdict=verdict.kind)
    if verdict.kind == "stop":
        ctx.study.log_event("stop", reason=verdict.reason, round=round_no)
        return {"stop": True}
    if verdict.kind != "train":
        return None
    choice, tool = verdict.choice, None
    if choice == early.offers[0]:
        choice = proposals[0]
    elif choice in early.offers:
        tool = choice[0]
        choice = next((p for p in proposals if p[0] == tool), proposals[0])
    return {"choice": choice, "decided_by": "llm", "current": early.current, "messages": [],
            "plan_left": state["knobs"].plan - 1, "plan_tool": tool}


def agent(state: TuningState, runtime: Runtime[TuneContext]) -> TuningState:
    """One LLM call in the session's protocol."""
    ctx = runtime.context
    if ctx.llm is None:
        return {"error": "no LLM configured"}
    if not ctx.breaker.allow():
        return {"error": "the LLM circuit is open after failed calls: the prior decides"}
    messages, detail = state["messages"], {"round": state["round"], "step": state["steps"] + 1}
    log, knobs, update = state["log"], state["knobs"], {}
    ctx.phase("llm")
    for _ in range(3):
        try:
            answer = ask(ctx, messages, len(state["proposals"]), detail)
            return {**update, "messages": [*messages, answer], "steps": state["steps"] + 1}
        except llm_errors() as exc:
            if not is_context_overflow(exc) or not log.rows:
                return {**update, **_llm_error(ctx, state, exc)}
            # The prompt outgrew the server's context: compact the log now and ask again.
            log, context = ctx.builder.shrink(log, knobs.context)
            knobs = dataclasses.replace(knobs, context=context)
            update = {"log": log, "knobs": knobs}
            ctx.study.log_event("context_shrink", context=context, reason=str(exc)[:200])
            messages = [HumanMessage(ctx.builder.prompt(log, state["current"])), *messages[1:]]
    return {**update, "error": "the prompt does not fit the server's context"}


def _llm_error(ctx: TuneContext, state: TuningState, exc: Exception) -> TuningState:
    reason = f"{type(exc).__name__}: {exc}"[:300]
    ctx.study.log_event("llm_error", reason=reason, round=state["round"])
    return {"error": reason}


def guard(state: TuningState, runtime: Runtime[TuneContext]) -> TuningState:
    """Check the answer; send problems back (bounded), else the fallback decides."""
    ctx = runtime.context
    if state["error"]:
        return _fall_back(state, ctx, state["error"])
    answer = state["messages"][-1]
    verdict = ctx.check(answer, state["offers"])
    if verdict.kind == "train":
        return {"choice": verdict.choice,
                **commit(state["knobs"], state["proposals"], verdict.choice)}
    if verdict.kind == "stop":
        ctx.study.log_event("stop", reason=verdict.reason, round=state["round"])
        return {"stop": True}
    update: TuningState = {"messages": [*state["messages"], *verdict.feedback],
                           "offers": [*state["offers"], *verdict.offers]}
    if state["steps"] >= ctx.max_steps:
        return _fall_back(state, ctx, f"no decision after {ctx.max_steps} LLM calls")
    if verdict.kind == "remind":
        if state["reminded"]:
            return _fall_back(state, ctx, verdict.reason)
        ctx.study.log_event("guard_reminder", reason=verdict.reason, round=state["round"])
        return {**update, "reminded": True}
    if verdict.kind == "retry":
        if state["attempts"] >= ctx.max_retries:
            return _fall_back(state, ctx, verdict.reason)
        ctx.study.log_event("guard_retry", reason=verdict.reason, round=state["round"])
        return {**update, "attempts": state["attempts"] + 1, "retries": 1}
    return update  # explore: the suggest tools' results go back to the LLM


def _fall_back(state: TuningState, ctx: TuneContext, reason: str) -> TuningState:
    scored = any(score is not None for score in state["scores"])
    choice = fallback(ctx.study, state["proposals"], scored)
    ctx.study.log_event("fallback", tool=choice[0], reason=reason, round=state["round"])
    return {"choice": choice, "fallbacks": 1, "decided_by": "fallback"}


def finish(state: TuningState, runtime: Runtime[TuneContext]) -> TuningState:
    """The session is over: cancel a decision still asked ahead, and wait for its call."""
    runtime.context.ahead.close()
    return {}


WAIT = ["await_train", "speculate"]  # the trials train while the LLM decides ahead
TUNE = "selftune"  # before WAIT, when a pass is due (dispatch says)


def _wait_or_end(state: TuningState) -> str | list[str]:
    """No new trial: wait for the ones still running (their results are logged), then end."""
    return WAIT if state["running"] else "finish"


def after_propose(state: TuningState) -> str | list[str]:
    if state["spent"] or state["stop"]:
        return _wait_or_end(state)
    return "dispatch" if state["choice"] else "agent"


def after_dispatch(state: TuningState) -> str | list[str]:
    """Another round while a worker is free (N workers); else train and speculate side by
    side; or end, when no trial was left to start and none runs."""
    if state["spent"]:
        return _wait_or_end(state)
    return "propose" if state["fill"] else TUNE if state["tune_due"] else WAIT


def after_guard(state: TuningState) -> str | list[str]:
    if state["stop"]:
        return _wait_or_end(state)
    return "dispatch" if state["choice"] else "agent"


def after_reconcile(state: TuningState) -> str | list[str]:
    if state["spent"] or state["stop"]:
        return _wait_or_end(state)
    return "dispatch" if state["choice"] else "propose"


def build_tuning_graph():
    """propose -> agent -> guard -> dispatch -> selftune -> (await_train || speculate)
    -> reconcile."""
    g = StateGraph(TuningState, context_schema=TuneContext)
    for node in (propose, agent, guard, dispatch, await_train, speculate, reconcile, finish):
        g.add_node(node.__name__, node)
    g.add_node(TUNE, selftune_node)
    g.add_edge(START, "propose")
    g.add_conditional_edges("propose", after_propose, ["agent", "dispatch", *WAIT, "finish"])
    g.add_edge("agent", "guard")
    g.add_conditional_edges("guard", after_guard, ["agent", "dispatch", *WAIT, "finish"])
    g.add_conditional_edges("dispatch", after_dispatch, ["propose", TUNE, *WAIT, "finish"])
    for branch in WAIT:
        g.add_edge(TUNE, branch)
    g.add_edge(WAIT, "reconcile")
    g.add_edge("finish", END)
    g.add_conditional_edges("reconcile", after_reconcile, ["dispatch", "propose", *WAIT, "finish"])
    # Never checkpointed, even inside a checkpointed parent (the chat): the ledger is its
    # persistence, its state holds live objects, and a parent's SQLite saver on the ledger's
    # file would contend with the ledger's writes at every step.
    return g.compile(checkpointer=False)


graph = build_tuning_graph()  # compiled once; every run brings its own context
