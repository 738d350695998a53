"""The tuning graph: propose -> agent (LLM) -> guard -> dispatch training, until the budget or a stop.

    propose -> agent -> guard -+-> dispatch -+-> await_train -+-> reconcile -> dispatch | propose | END
                 ^             |             +-> speculate ---+
                 +-------------+  (retry, reminder, suggest-tool results)

``dispatch`` starts the trial in its worker process; ``await_train`` and ``speculate`` are
parallel branches (one LangGraph step), writing different keys. ``speculate`` predicts the running
trial, tells a fork of the tools and asks the LLM for the next round; ``reconcile`` closes the
round with the real result and keeps the speculative round when the prediction was within ``tau``
(the next trial then starts at once), else drops it. With ``speculation="off"`` the speculative
branch returns at once: the serial loop.

Nodes are module-level functions; the study, tools, trainer, chat model and prompt builder are
injected through :class:`Runtime` (``functools.partial``), never globals. Each round starts from
the prefix-stable prompt; the round's own conversation (the LLM's answers, tool results, guard
feedback) lives in ``messages`` and is dropped when the round closes.
"""

from __future__ import annotations

import dataclasses
import operator
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any, Literal, TypedDict

import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.tools import BaseTool
from langgraph.graph import END, START, StateGraph

from asap.agent.guard import Offer, check_json, check_tools, fallback, stop_tool
from asap.agent.ledger import Study, Trial
from asap.agent.llm import (
    Cancelled,
    Protocol,
    ToolCaller,
    decision_schema,
    is_context_overflow,
    json_model,
    timed_invoke,
)
from asap.agent.prompt import PromptBuilder, label
from asap.agent.selftune import Bounds, Knobs, selftune
from asap.agent.speculation import Surrogate, accept
from asap.tools.hpo_tools import Toolbox
from asap.tools.portfolio import Portfolio
from asap.tools.trainer import Trainer, TrainingJob

PANEL = (("optuna", "tpe"), ("optuna", "cmaes"), ("nevergrad", "NGOpt"), ("nevergrad", "DE"))
# What langchain-openai raises besides openai's own errors on a malformed response.
LLM_ERRORS = (openai.OpenAIError, ValueError, KeyError, TypeError)


@dataclass
class Runtime:
    """Everything the nodes act on. ``llm=None`` runs the deterministic fallback every round."""

    study: Study
    portfolio: Portfolio
    trainer: Trainer
    builder: PromptBuilder
    llm: BaseChatModel | None
    protocol: Protocol = "json"
    max_trials: int = 20
    time_budget_s: float | None = None
    max_retries: int = 2  # answers with a problem sent back per round, then the fallback
    max_steps: int = 6  # LLM calls per round (suggest-tool exploration included)
    speculation: Literal["off", "threshold", "lossless"] = "off"
    tau: float = 0.05  # threshold mode: accept when the relative prediction error is below
    selftune_every: int = 0  # trials between self-tuning passes (0: off)
    bounds: Bounds = field(default_factory=lambda: Bounds(depth_max=1))  # depth 1 for now
    started: float = field(default_factory=time.time)
    on_trial: Callable[[Trial, str], None] | None = None  # progress displays
    _caller: ToolCaller | None = None
    _job: TrainingJob | None = None
    _predicted: float | None = None  # the speculative branch's prediction for the trial in flight
    _cancel: threading.Event = field(default_factory=threading.Event)
    _tools: dict[str, BaseTool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.builder.protocol = self.protocol
        if self.llm is not None and self.protocol == "tools":
            box = Toolbox(self.study, self.portfolio, self.trainer).tools()
            self._tools = {t.name: t for t in box if t.name != "train_on_gpu"}
            self._caller = ToolCaller(self.llm, [*box, stop_tool()], self.study)


class TuningState(TypedDict, total=False):
    round: int
    proposals: list[Offer]
    offers: list[Offer]  # proposals plus what suggest tools returned this round
    current: str  # this round's prompt block
    messages: list[BaseMessage]  # this round's conversation
    attempts: int
    reminded: bool
    steps: int
    error: str | None
    choice: Offer | None
    stop: bool
    trial_id: int  # the trial in flight
    trained: int  # the training branch's result (a trial id)
    spec: dict[str, Any] | None  # the speculative branch's result
    verify: dict[str, Any] | None  # lossless mode: the speculative decision awaiting the serial one
    retries: Annotated[int, operator.add]
    fallbacks: Annotated[int, operator.add]


def propose(state: TuningState, *, rt: Runtime) -> TuningState:
    """Fresh proposals from the panel of tools; the round's prompt."""
    round_no = state.get("round", 0) + 1
    start = time.time()
    proposals = [(f"{lib}:{alg}", rt.portfolio.ask(lib, alg, 1)[0]) for lib, alg in PANEL]
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
            answer = _ask(rt, messages, len(state["proposals"]), detail)
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


def _ask(rt: Runtime, messages: list[BaseMessage], n_labels: int, detail: dict,
         cancel: threading.Event | None = None) -> BaseMessage:
    trial_number = len(rt.study.trials())
    if rt._caller is not None:
        return rt._caller.invoke(messages, cancel=cancel, trial_number=trial_number, **detail)
    model = json_model(rt.llm, decision_schema([label(i) for i in range(n_labels)], rt.study.space))
    return timed_invoke(model, messages, study=rt.study, protocol="json",
                        trial_number=trial_number, cancel=cancel, **detail)


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
    rt._predicted, rt._cancel = None, threading.Event()
    return {"trial_id": rt._job.trial_id, "spec": None, "verify": None}


def await_train(state: TuningState, *, rt: Runtime) -> TuningState:
    """The training branch: wait for the trial (the speculative branch runs meanwhile)."""
    trial = rt._job.wait()
    if rt.speculation == "threshold" and _missed(rt):
        rt._cancel.set()  # the speculative round can no longer be used: stop its LLM call
    return {"trained": trial.id}


def _missed(rt: Runtime) -> bool:
    """The real result is in and the prediction is outside tau (or there is no value)."""
    if rt._predicted is None or not rt._job.done():
        return False
    trial = rt._job.wait(0)
    return trial is None or trial.value is None or not accept(rt._predicted, trial.value, rt.tau)


def speculate(state: TuningState, *, rt: Runtime) -> TuningState:
    """The speculative branch: predict the running trial, ask a fork of the tools and the LLM.

    Nothing here writes a trial: the tools are a fork told the prediction, the prompt log is a
    copy, and the decision waits in ``spec`` for :func:`reconcile` to accept or drop.
    """
    _selftune(rt)
    if rt.speculation == "off" or len(rt.study.trials()) >= rt.max_trials:
        return {"spec": None}  # off, or the trial in flight is the budget's last
    start = time.time()
    running = rt.study.trial(state["trial_id"])
    predicted = Surrogate(rt.study).predict(running.config)
    rt._predicted = predicted
    if predicted is None or (rt.speculation == "threshold" and _missed(rt)):
        return {"spec": None}
    guess = dataclasses.replace(running, status="complete", value=predicted,
                                metrics={rt.study.metric: predicted})
    fork = rt.portfolio.fork([guess])
    proposals = [(f"{lib}:{alg}", fork.ask(lib, alg, 1)[0]) for lib, alg in PANEL]
    tool, config = state["choice"]
    closed = state["current"] + rt.builder.outcome_text(
        f"{_label(state['proposals'], tool, config)} ({tool})", guess)
    builder = dataclasses.replace(rt.builder, log=[*rt.builder.log, closed])
    current = builder.round_text(state["round"] + 1, proposals)
    messages = [HumanMessage(builder.prompt(current))]
    try:
        answer = _ask(rt, messages, len(proposals), {"round": state["round"] + 1,
                                                      "speculative": True}, cancel=rt._cancel)
    except Cancelled:
        return {"spec": {"predicted": predicted, "choice": None, "start": start,
                         "end": time.time(), "cancelled": True}}
    except LLM_ERRORS:
        return {"spec": None}
    verdict = (check_tools(answer, proposals, rt.study.space, rt._tools) if rt.protocol == "tools"
               else check_json(answer, proposals, rt.study.space))
    return {"spec": {"predicted": predicted, "proposals": proposals, "current": current,
                     "choice": verdict.choice if verdict.kind == "train" else None,
                     "start": start, "end": time.time()}}


def _selftune(rt: Runtime) -> None:
    """Every ``selftune_every`` finished trials, retune tau and the context from the timing log.

    It runs on the speculative branch, in parallel with training: off the critical path.
    """
    done = len(rt.study.finished_ids())
    if not rt.selftune_every or done == 0 or done % rt.selftune_every:
        return
    knobs = selftune(rt.study, Knobs(tau=rt.tau, depth=1, context=rt.builder.context), rt.bounds)
    rt.tau, rt.builder.context = knobs.tau, knobs.context


def reconcile(state: TuningState, *, rt: Runtime) -> TuningState:
    """The real result is in: close the round, then keep the speculative round or drop it."""
    trial = rt.study.trial(state["trained"])
    rt.portfolio.sync()
    tool, config = state["choice"]
    decision = f"{_label(state['proposals'], tool, config)} ({tool})"
    rt.builder.close_round(state["current"], rt.builder.outcome_text(decision, trial))
    if rt.on_trial:
        rt.on_trial(trial, tool)
    spec = state.get("spec")
    if spec is None:
        return {"choice": None}
    if rt.speculation == "lossless":  # the serial round runs; dispatch compares the decisions
        return {"choice": None, "spec": None, "verify": {
            **spec, "trial": trial.number, "actual": trial.value}}
    ok = (spec["choice"] is not None and trial.value is not None
          and accept(spec["predicted"], trial.value, rt.tau))
    rt.study.log_timing("speculation", spec["start"], spec["end"], trial_number=trial.number,
                        wasted=not ok, cancelled=spec.get("cancelled", False))
    rt.study.log_event("speculation", accepted=ok, predicted=spec["predicted"],
                       actual=trial.value, tau=rt.tau, round=state["round"] + 1)
    if not ok:
        return {"choice": None, "spec": None}
    return {"round": state["round"] + 1, "proposals": spec["proposals"],
            "offers": spec["proposals"], "current": spec["current"], "choice": spec["choice"],
            "spec": None}


def _label(proposals: list[Offer], tool: str, config: dict) -> str:
    return next((label(i) for i, p in enumerate(proposals) if p == (tool, config)), "own")


def after_guard(state: TuningState) -> str:
    if state.get("stop"):
        return END
    return "dispatch" if state.get("choice") else "agent"


def after_reconcile(state: TuningState, *, rt: Runtime) -> str:
    if len(rt.study.finished_ids()) >= rt.max_trials:
        return END
    if rt.time_budget_s is not None and time.time() - rt.started >= rt.time_budget_s:
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
