"""The tuning graph: propose -> decide (LLM, guarded) -> train, until the budget or a stop.

Nodes are module-level functions; the study, tools, trainer, LLM client and prompt builder are
injected through :class:`Runtime` (``functools.partial``), never globals.
"""

from __future__ import annotations

import operator
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any, TypedDict

import openai
from langgraph.graph import END, START, StateGraph

from asap.agent.ledger import Study
from asap.agent.llm import DecisionError, chat_json, decision_schema, parse_decision
from asap.agent.prompt import PromptBuilder, label, tool_records
from asap.tools.portfolio import Portfolio
from asap.tools.space import SpaceError
from asap.tools.trainer import Trainer

PANEL = (("optuna", "tpe"), ("optuna", "cmaes"), ("nevergrad", "NGOpt"), ("nevergrad", "DE"))


@dataclass
class Runtime:
    """Everything the nodes act on."""

    study: Study
    portfolio: Portfolio
    trainer: Trainer
    builder: PromptBuilder
    client: openai.OpenAI | None
    model: str
    max_trials: int
    time_budget_s: float | None = None
    max_retries: int = 2
    started: float = field(default_factory=time.time)
    on_trial: Any = None  # callback(trial, tool) for progress displays


class TuningState(TypedDict, total=False):
    round: int
    proposals: list[tuple[str, dict[str, Any]]]
    current: str
    choice: tuple[str, dict[str, Any]] | None
    stop: bool
    retries: Annotated[int, operator.add]
    fallbacks: Annotated[int, operator.add]


def propose(state: TuningState, *, rt: Runtime) -> TuningState:
    round_no = state.get("round", 0) + 1
    proposals = [(f"{lib}:{alg}", rt.portfolio.ask(lib, alg, 1)[0]) for lib, alg in PANEL]
    return {"round": round_no, "proposals": proposals,
            "current": rt.builder.round_text(round_no, proposals)}


def decide(state: TuningState, *, rt: Runtime) -> TuningState:
    """Ask the LLM; bad answers go back to it with the reason; then a deterministic fallback."""
    proposals = state["proposals"]
    labels = [label(i) for i in range(len(proposals))]
    messages = [{"role": "user", "content": rt.builder.prompt(state["current"])}]
    retries = 0
    for _ in range(rt.max_retries + 1):
        if rt.client is None:
            break
        try:
            text, _ = chat_json(rt.client, rt.model, messages, decision_schema(labels, rt.study.space),
                                study=rt.study, trial_number=len(rt.study.finished_ids()))
            decision = parse_decision(text, labels)
            if decision.action == "stop":
                return {"choice": None, "stop": True, "retries": retries}
            if decision.action == "own":
                return {"choice": ("llm", rt.study.space.validate(decision.params)), "retries": retries}
            return {"choice": proposals[labels.index(decision.choice)], "retries": retries}
        except (DecisionError, SpaceError) as exc:
            retries += 1
            rt.study.log_event("guard_retry", reason=str(exc), round=state["round"])
            messages = [*messages[:1], {"role": "assistant", "content": text},
                        {"role": "user", "content": f"Invalid: {exc}. Answer again."}]
        except openai.OpenAIError as exc:
            rt.study.log_event("llm_error", reason=f"{type(exc).__name__}: {exc}")
            break
    choice = fallback(rt.study, proposals)
    rt.study.log_event("fallback", tool=choice[0], round=state["round"])
    return {"choice": choice, "retries": retries, "fallbacks": 1}


def fallback(study: Study, proposals: list[tuple[str, dict[str, Any]]]) -> tuple[str, dict[str, Any]]:
    """The proposal of the tool with the best improvement record, else TPE's."""
    records = tool_records(study)
    offered = {tool: cfg for tool, cfg in proposals}
    ranked = sorted((r.improvements / r.trials, -i, tool) for i, (tool, r) in enumerate(
        (t, records[t]) for t in offered if t in records and records[t].trials))
    tool = ranked[-1][2] if ranked else "optuna:tpe"
    return tool, offered[tool]


def train(state: TuningState, *, rt: Runtime) -> TuningState:
    tool, config = state["choice"]
    trial = rt.trainer.run(config, tool=tool)
    rt.portfolio.sync()
    chosen = next((label(i) for i, p in enumerate(state["proposals"]) if p[0] == tool), "own")
    rt.builder.close_round(state["current"], rt.builder.outcome_text(f"{chosen} ({tool})", trial))
    if rt.on_trial:
        rt.on_trial(trial, tool)
    return {}


def route(state: TuningState, *, rt: Runtime) -> str:
    if state.get("stop"):
        return END
    if len(rt.study.finished_ids()) >= rt.max_trials:
        return END
    if rt.time_budget_s is not None and time.time() - rt.started >= rt.time_budget_s:
        return END
    return "propose"


def build_tuning_graph(rt: Runtime):
    """propose -> decide -> (train -> propose | END)."""
    g = StateGraph(TuningState)
    g.add_node("propose", partial(propose, rt=rt))
    g.add_node("decide", partial(decide, rt=rt))
    g.add_node("train", partial(train, rt=rt))
    g.add_edge(START, "propose")
    g.add_edge("propose", "decide")
    g.add_conditional_edges("decide", lambda s: END if s.get("stop") else "train", ["train", END])
    g.add_conditional_edges("train", partial(route, rt=rt), ["propose", END])
    return g.compile()
