"""What every node of the tuning graph shares: the :class:`Runtime`, the state, the LLM ask.

The study, tools, trainer, chat model and prompt builder are injected into the nodes through
:class:`Runtime` (``functools.partial``), never globals; :class:`TuningState` is what LangGraph
carries from node to node.
"""

from __future__ import annotations

import operator
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.tools import BaseTool

from asap.agent.guard import Offer, stop_tool
from asap.agent.ledger import Study, Trial
from asap.agent.llm import (
    Protocol,
    ToolCaller,
    decision_schema,
    json_model,
    timed_invoke,
)
from asap.agent.prompt import PromptBuilder, label
from asap.agent.selftune import Bounds
from asap.tools.hpo_tools import Toolbox
from asap.tools.portfolio import Portfolio
from asap.tools.trainer import Trainer, TrainingJob

PANEL = (("optuna", "tpe"), ("optuna", "cmaes"), ("nevergrad", "NGOpt"), ("nevergrad", "DE"))


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
    depth: int = 1  # speculative rounds chained ahead of the trial in flight
    selftune_every: int = 0  # trials between self-tuning passes (0: off)
    bounds: Bounds = field(default_factory=Bounds)
    started: float = field(default_factory=time.time)
    on_trial: Callable[[Trial, str], None] | None = None  # progress displays
    _caller: ToolCaller | None = None
    _job: TrainingJob | None = None
    _predicted: float | None = None  # the speculative prediction for the trial in flight
    _level: int = -1  # which chained round the speculative branch is asking for (-1: none)
    _cancel: threading.Event = field(default_factory=threading.Event)
    _tools: dict[str, BaseTool] = field(default_factory=dict)

    def spent(self) -> bool:
        """The trial or the wall-clock budget is used up."""
        return (len(self.study.finished_ids()) >= self.max_trials
                or (self.time_budget_s is not None
                    and time.time() - self.started >= self.time_budget_s))

    def __post_init__(self) -> None:
        self.builder.protocol = self.protocol
        if self.speculation == "lossless":  # each decision is verified serially: no chains
            self.depth, self.bounds = 1, self.bounds.model_copy(update={"depth_max": 1})
        self.depth = min(max(self.depth, self.bounds.depth_min), self.bounds.depth_max)
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
    chain: list[dict[str, Any]]  # speculative rounds ahead of the trial in flight, nearest first
    verify: dict[str, Any] | None  # lossless mode: the speculative decision awaiting the serial one
    retries: Annotated[int, operator.add]
    fallbacks: Annotated[int, operator.add]


def panel_offers(portfolio: Portfolio) -> list[Offer]:
    """One proposal from each tool of the panel, labelled by tool."""
    return [(f"{lib}:{alg}", portfolio.ask(lib, alg, 1)[0]) for lib, alg in PANEL]


def ask(rt: Runtime, messages: list[BaseMessage], n_labels: int, detail: dict,
        cancel: threading.Event | None = None) -> BaseMessage:
    """One LLM call in the session's protocol, timed into the ledger."""
    trial_number = len(rt.study.trials())
    if rt._caller is not None:
        return rt._caller.invoke(messages, cancel=cancel, trial_number=trial_number, **detail)
    model = json_model(rt.llm, decision_schema([label(i) for i in range(n_labels)], rt.study.space))
    return timed_invoke(model, messages, study=rt.study, protocol="json",
                        trial_number=trial_number, cancel=cancel, **detail)


def offer_label(proposals: list[Offer], tool: str, config: dict[str, Any]) -> str:
    """The round's label of a decision ("A", "B", ...), or "own" for the LLM's own config."""
    return next((label(i) for i, p in enumerate(proposals) if p == (tool, config)), "own")


def decision_text(proposals: list[Offer], choice: Offer) -> str:
    tool, config = choice
    return f"{offer_label(proposals, tool, config)} ({tool})"
