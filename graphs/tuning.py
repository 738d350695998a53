"""The tuning graph: propose -> agent (LLM) -> guard -> train, until the budget or a stop.

    propose --> agent --> guard --+--> train --> propose | END
                  ^               |
                  +---------------+  (retry, reminder, suggest-tool results)

Nodes are module-level functions; the study, tools, trainer, chat model and prompt builder are
injected through :class:`Runtime` (``functools.partial``), never globals. Each round starts from
the prefix-stable prompt; the round's own conversation (the LLM's answers, tool results, guard
feedback) lives in ``messages`` and is dropped when the round closes.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, TypedDict

import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.tools import BaseTool
from langgraph.graph import END, START, StateGraph

from asap.agent.guard import Offer, check_json, check_tools, fallback, stop_tool
from asap.agent.ledger import Study, Trial
from asap.agent.llm import (
    Protocol,
    ToolCaller,
    decision_schema,
    is_context_overflow,
    json_model,
    timed_invoke,
)
from asap.agent.prompt import PromptBuilder, label
from asap.tools.hpo_tools import Toolbox
from asap.tools.portfolio import Portfolio
from asap.tools.trainer import Trainer

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
    started: float = field(default_factory=time.time)
    on_trial: Callable[[Trial, str], None] | None = None  # progress displays
    _caller: ToolCaller | None = None
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


def _ask(rt: Runtime, messages: list[BaseMessage], n_labels: int, detail: dict) -> BaseMessage:
    trial_number = len(rt.study.trials())
    if rt._caller is not None:
        return rt._caller.invoke(messages, trial_number=trial_number, **detail)
    model = json_model(rt.llm, decision_schema([label(i) for i in range(n_labels)], rt.study.space))
    return timed_invoke(model, messages, study=rt.study, protocol="json",
                        trial_number=trial_number, **detail)


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


def train(state: TuningState, *, rt: Runtime) -> TuningState:
    """Train the chosen configuration; close the round in the prompt log."""
    tool, config = state["choice"]
    trial = rt.trainer.run(config, tool=tool)
    rt.portfolio.sync()
    chosen = next((label(i) for i, p in enumerate(state["proposals"]) if p == (tool, config)),
                  "own")
    rt.builder.close_round(state["current"], rt.builder.outcome_text(f"{chosen} ({tool})", trial))
    if rt.on_trial:
        rt.on_trial(trial, tool)
    return {}


def after_guard(state: TuningState) -> str:
    if state.get("stop"):
        return END
    return "train" if state.get("choice") else "agent"


def after_train(state: TuningState, *, rt: Runtime) -> str:
    if len(rt.study.finished_ids()) >= rt.max_trials:
        return END
    if rt.time_budget_s is not None and time.time() - rt.started >= rt.time_budget_s:
        return END
    return "propose"


def build_tuning_graph(rt: Runtime):
    """propose -> agent -> guard -> (agent | train | END); train -> (propose | END)."""
    g = StateGraph(TuningState)
    g.add_node("propose", partial(propose, rt=rt))
    g.add_node("agent", partial(agent, rt=rt))
    g.add_node("guard", partial(guard, rt=rt))
    g.add_node("train", partial(train, rt=rt))
    g.add_edge(START, "propose")
    g.add_edge("propose", "agent")
    g.add_edge("agent", "guard")
    g.add_conditional_edges("guard", after_guard, ["agent", "train", END])
    g.add_conditional_edges("train", partial(after_train, rt=rt), ["propose", END])
    return g.compile()


def recursion_limit(rt: Runtime) -> int:
    """LangGraph's step bound for a whole session: every round may use all its LLM steps."""
    return rt.max_trials * (2 + 2 * rt.max_steps) + 10

