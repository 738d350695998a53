"""What the tuning graph's state holds: :class:`TuningState` and the typed records in it.

Following LangGraph's split (``StateGraph(State, context_schema=Context)``), what does not change
during a run is the context (:mod:`asap.graphs.context`); what evolves lives here: the round,
the knobs (tau, depth, context, plan), the prompt log, the trials in flight, the speculative
chain as typed :class:`SpecRound` records. Keys every round reads are set by
:meth:`~asap.graphs.context.TuneContext.initial_state`.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Annotated

from langchain_core.messages import BaseMessage
from typing_extensions import TypedDict

from asap.agent.prior.ranking import Score
from asap.agent.prompt import PromptLog
from asap.agent.selftune import Knobs
from asap.tools.hpo.portfolio import Offer
from asap.tools.types import Trial


@dataclass(frozen=True)
class Pending:
    """A trial in flight as its round left it: what closes its log row when it lands."""

    round: int
    decision: str  # decision_text of the round that started it


@dataclass(frozen=True)
class SpecRound:
    """One speculative round, decided ahead of the trial in flight (nearest first in a chain)."""

    predicted: float | None  # the value assumed for the trial this round follows
    guess: Trial  # that trial with the predicted value (a negative id: not in the ledger)
    closed: str  # that trial's prompt row, closed on the predicted value
    proposals: list[Offer]  # what the forked tools offered for this round, in the prior's order
    scores: list[Score | None]
    current: str  # this round's prompt block
    round: int
    start: float
    end: float = 0.0
    choice: Offer | None = None  # the LLM's decision; None when it gave none
    cancelled: bool = False


@dataclass(frozen=True)
class Round:
    """A round as ``propose`` leaves it: its proposals, and who decides it (the prior, a plan,
    a decision asked ahead, or the LLM on the critical path, whose prompt and block it carries).
    Every ``propose`` branch returns through :meth:`update`, so the round's keys are set, and
    reset, in one place."""

    number: int
    proposals: list[Offer]
    scores: list[Score | None]
    decided_by: str  # "prior", "plan", "llm"
    choice: Offer | None = None  # None: the LLM is asked now
    messages: list[BaseMessage] = field(default_factory=list)
    current: str = ""  # the round's prompt block, when the LLM is asked now
    plan_left: int | None = None  # a planned round: the plan's rounds left after it

    def update(self, landed: TuningState) -> TuningState:
        """The state update: ``landed`` (trials absorbed meanwhile) and this round, with the
        guard's per-round counters reset."""
        out: TuningState = {
            **landed, "round": self.number, "lag": 0, "proposals": self.proposals,
            "offers": self.proposals, "scores": self.scores, "attempts": 0, "reminded": False,
            "steps": 0, "error": None, "choice": self.choice, "decided_by": self.decided_by,
            "messages": self.messages, "current": self.current}
        if self.plan_left is not None:
            out["plan_left"] = self.plan_left
        return out


@dataclass(frozen=True)
class Verification:
    """Lossless mode: a speculative decision waiting to be compared with the serial one."""

    spec: SpecRound
    trial: int  # the number of the trial it followed
    actual: float | None  # that trial's real value


class TuningState(TypedDict, total=False):
    round: int
    proposals: list[Offer]  # the panel's, in the prior's order
    scores: list[Score | None]  # what the prior says of each proposal (None: too few trials)
    decided_by: str  # "llm", or "fallback" when the guard gave up on the LLM's answers
    offers: list[Offer]  # proposals plus what suggest tools returned this round
    current: str  # this round's prompt block
    messages: list[BaseMessage]  # this round's conversation
    attempts: int
    reminded: bool
    steps: int
    error: str | None
    choice: Offer | None
    stop: bool
    spent: bool  # no new trial will start (budget, stop, cancel); the graph ends once none runs
    trial_id: int  # the trial started last
    running: dict[int, Pending]  # every trial in flight, by id (one per busy worker)
    fill: bool  # a worker is still free after a dispatch: decide another round now
    tune_due: bool  # a self-tuning pass is due: the selftune node runs before the branches
    trained: int  # the training branch's result (a trial id)
    chain: list[SpecRound]  # speculative rounds ahead of the trial that lands next
    verify: Verification | None
    lag: int  # accepted speculative rounds the real tools have not caught up with
    knobs: Knobs  # tau, speculation depth, rounds the prompt carries, plan: self-tuned
    plan_left: int  # rounds the last LLM decision still covers (see :func:`commit`)
    plan_tool: str | None  # the tool it committed to; None: the prior's pick
    log: PromptLog  # the prompt's append-only part
    retries: Annotated[int, operator.add]
    fallbacks: Annotated[int, operator.add]
