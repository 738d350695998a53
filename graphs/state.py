"""What the tuning graph carries: its run context, its state, and the in-flight channel.

Following LangGraph's split (``StateGraph(State, context_schema=Context)``):

- :class:`TuneContext`: the run's dependencies and fixed settings (study, tools, trainer, chat
  model, prompt builder, budgets, callbacks): frozen, passed as ``graph.invoke(..., context=...)``
  and read by nodes as ``runtime.context``.
- :class:`TuningState`: what evolves during the run: the round, the knobs (tau, depth, context),
  the prompt log, the speculative chain as typed :class:`SpecRound` records.
- :class:`InFlight`: the one thing two parallel branches share while a trial trains (the job, the
  prediction, the chained level, the cancel signal), lock-guarded, one per trial in flight, kept
  by the context's :class:`Flights`.
"""

from __future__ import annotations

import json
import operator
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.tools import BaseTool

from asap.agent.breaker import Breaker
from asap.agent.config import Protocol
from asap.agent.cost import weight
from asap.agent.decision import decision_schema, is_own, label_grammar, own_schema
from asap.agent.guard import Verdict, check_json, check_tools
from asap.agent.llm import (
    LLM_ERRORS,
    EmptyAnswer,
    ToolCaller,
    is_context_overflow,
    json_model,
    timed_invoke,
)
from asap.agent.prior import SHOWN, Score, rank
from asap.agent.prompt import PromptBuilder, PromptLog, label
from asap.agent.selftune import Bounds, Knobs
from asap.agent.speculation import SpeculationMode
from asap.graphs.ahead import Ahead
from asap.prompts import render
from asap.tools.clock import Clock
from asap.tools.hpo_tools import Toolbox, stop_tool
from asap.tools.job import TrainingJob
from asap.tools.portfolio import Offer, Portfolio
from asap.tools.study import Study
from asap.tools.trainer import Trainer
from asap.tools.types import Trial


class InFlight:
    """The channel between a running trial and the speculative branch (one per trial).

    ``await_train`` and ``speculate`` run on different threads: the prediction and the chained
    level are written by one and read by the other, so they live behind a lock; ``cancel`` cuts
    off the speculative LLM call once its answer can no longer be used.
    """

    def __init__(self, job: TrainingJob) -> None:
        self.job = job
        self.cancel = threading.Event()
        self._lock = threading.Lock()
        self._predicted: float | None = None
        self._level = -1  # which chained round the speculative branch is asking for (-1: none)

    @property
    def predicted(self) -> float | None:
        with self._lock:
            return self._predicted

    @predicted.setter
    def predicted(self, value: float | None) -> None:
        with self._lock:
            self._predicted = value

    @property
    def level(self) -> int:
        with self._lock:
            return self._level

    @level.setter
    def level(self, value: int) -> None:
        with self._lock:
            self._level = value


class Flights:
    """The trials in flight of one run, by trial id, and the order in which they land."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[int, InFlight] = {}
        # Each trial's id once the trainer has recorded it (Trainer.start(landed=...)): how the
        # graph waits for whichever of N trials ends first.
        self.landed: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._began = threading.Semaphore(0)

    def next_landed(self, clock: Clock) -> int:
        """The next trial to have finished (blocks until one has, on the session's clock)."""
        return clock.take(self.landed)

    def speculation_began(self) -> None:
        """The speculative branch has started (its work is on the virtual clock's books)."""
        self._began.release()

    def await_speculation(self) -> None:
        """Wait until the speculative branch of this step has started: the training branch must
        not let a virtual clock jump over training before that branch's work is on its books
        (LangGraph starts the two branches in either order)."""
        self._began.acquire()

    def landed_now(self) -> list[int]:
        """The trials that finished since last asked, without waiting."""
        out = []
        while True:
            try:
                out.append(self.landed.get_nowait())
            except queue.Empty:
                return out

    def start(self, job: TrainingJob) -> InFlight:
        flight = InFlight(job)
        with self._lock:
            self._by_id[job.trial_id] = flight
        return flight

    def get(self, trial_id: int) -> InFlight:
        with self._lock:
            return self._by_id[trial_id]

    def end(self, trial_id: int) -> None:
        with self._lock:
            self._by_id.pop(trial_id, None)


@dataclass(frozen=True)
class TuneContext:
    """Everything the nodes act on and nothing that changes. ``llm=None``: the fallback decides."""

    study: Study
    portfolio: Portfolio
    trainer: Trainer
    builder: PromptBuilder
    llm: BaseChatModel | None
    protocol: Protocol = "json"
    grammar: bool = False  # a llama.cpp server: JSON decisions as an exact GBNF grammar
    max_trials: int = 20
    time_budget_s: float | None = None
    cost_weight: float | Literal["cool"] = 0.0  # "cool": 1 to 0 over the budget (agent.cost)
    max_retries: int = 2  # answers with a problem sent back per round, then the fallback
    max_steps: int = 6  # LLM calls per round (suggest-tool exploration included)
    speculation: SpeculationMode = "off"
    selftune_every: int = 0  # trials between self-tuning passes (0: off)
    decide_ahead: bool = True  # under a plan, ask the next decision in the background
    llm_after: int = 0  # finished trials before the LLM is asked on the critical path
    bounds: Bounds = field(default_factory=Bounds)
    started: float = field(default_factory=time.time)  # on the study's clock
    on_trial: Callable[[Trial, str], None] | None = None  # progress displays
    flights: Flights = field(default_factory=Flights)
    ahead: Ahead = field(default_factory=Ahead)  # the next plan's decision, asked meanwhile
    say: Callable[[str], None] | None = None  # notices for a person (the circuit breaker)
    breaker: Breaker = field(default_factory=Breaker)
    caller: ToolCaller | None = field(default=None, init=False)
    tools: Mapping[str, BaseTool] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.ahead.clock = self.clock
        if self.breaker.on_change is None:
            self.breaker.on_change = self._breaker_changed
        if self.builder.protocol != self.protocol:
            raise ValueError(f"the prompt builder renders the {self.builder.protocol} protocol, "
                             f"the context asks for {self.protocol}")
        if self.speculation == "lossless":  # each decision is verified serially: no chains
            object.__setattr__(self, "bounds", self.bounds.model_copy(update={"depth_max": 1}))
        if self.llm is not None and self.protocol == "tools":
            box = Toolbox(self.study, self.portfolio, self.trainer).tools()
            object.__setattr__(self, "tools", {t.name: t for t in box if t.name != "train_on_gpu"})
            object.__setattr__(self, "caller", ToolCaller(self.llm, [*box, stop_tool()], self.study))

    @property
    def clock(self) -> Clock:
        """The session's clock (the study's): what budgets and time stamps are read on."""
        return self.study.clock

    def _breaker_changed(self, state: str, reason: str) -> None:
        self.study.log_event("llm_breaker", state=state, reason=reason)
        if self.say is not None:
            self.say(f"LLM circuit {state}: {reason}")

    def check(self, answer: BaseMessage, offers: list[Offer]) -> Verdict:
        """The guard's verdict on an answer, in the session's protocol (the critical round's,
        a speculative round's and one asked ahead read it alike)."""
        if self.protocol == "tools":
            return check_tools(answer, offers, self.study.space, self.tools)
        return check_json(answer, offers, self.study.space)

    def spent(self) -> bool:
        """No new trial may start: the trial budget is taken (running trials included), the
        wall-clock budget is used up, or the run was cancelled or halted."""
        return (len(self.study.trials()) >= self.max_trials or self.trainer.cancel.is_set()
                or self.trainer.cancel.halted()
                or (self.time_budget_s is not None
                    and self.clock.now() - self.started >= self.time_budget_s))

    def pricing(self) -> tuple[float, float | None]:
        """How much a proposal's predicted training time weighs in the prior's ranking now,
        and the time budget left (None: no budget)."""
        elapsed = self.clock.now() - self.started
        left = None if self.time_budget_s is None else self.time_budget_s - elapsed
        if self.cost_weight == "cool":
            return weight(elapsed, self.time_budget_s), left
        return float(self.cost_weight), left

    def can_start(self, running: int) -> bool:
        """With ``running`` trials in flight, a worker is free and the budget allows another."""
        return running < self.trainer.workers and not self.spent()

    def initial_state(self, tau: float = 0.05, depth: int = 1, context: int = 24,
                      plan: int = 1) -> TuningState:
        """The state a run starts from: the knobs inside their bounds and an empty prompt log."""
        b = self.bounds
        return {"knobs": Knobs(tau=tau, depth=min(max(depth, b.depth_min), b.depth_max),
                               context=context, plan=min(max(plan, b.plan_min), b.plan_max)),
                "log": PromptLog(), "plan_left": 0, "running": {}}

    def recursion_limit(self) -> int:
        """LangGraph's step bound for a whole session: every round may use all its LLM steps."""
        return self.max_trials * (4 + 2 * self.max_steps) + 10 + 2 * self.trainer.workers


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


def ask(ctx: TuneContext, messages: list[BaseMessage], n_labels: int, detail: dict[str, Any],
        cancel: threading.Event | None = None) -> BaseMessage:
    """One LLM call in the session's protocol, timed into the ledger."""
    trial_number = len(ctx.study.trials())
    try:
        if ctx.caller is not None:
            answer = ctx.caller.invoke(messages, cancel=cancel, trial_number=trial_number,
                                       **detail)
        else:
            labels = [label(i) for i in range(n_labels)]
            model = json_model(ctx.llm, decision_schema(labels),
                               grammar=label_grammar(labels) if ctx.grammar else None)
            answer = timed_invoke(model, messages, study=ctx.study, protocol="json",
                                  trial_number=trial_number, cancel=cancel, **detail)
            if is_own(str(answer.content)):  # the configuration, in a second step
                step = [*messages, answer, HumanMessage(render("own.txt"))]
                params = timed_invoke(json_model(ctx.llm, own_schema(ctx.study.space), "params"),
                                      step, study=ctx.study, protocol="json",
                                      trial_number=trial_number, cancel=cancel, own=True,
                                      **detail)
                answer = AIMessage(content=_own_answer(str(params.content)),
                                   usage_metadata=params.usage_metadata)
    except LLM_ERRORS as exc:
        if not (is_context_overflow(exc) or isinstance(exc, EmptyAnswer)):
            ctx.breaker.failure(type(exc).__name__)  # (those two: the endpoint itself works)
        raise
    ctx.breaker.success()
    return answer


def _own_answer(params: str) -> str:
    """The two steps of an "own" decision as the one object the guard reads."""
    try:
        return json.dumps({"action": "own", "params": json.loads(params)})
    except json.JSONDecodeError:
        return '{"action": "own", "params": ' + params  # not JSON: the guard says so


def warm_up(ctx: TuneContext, prefix: str, round_no: int) -> None:
    """Send ``prefix`` (the next prompt's start) for one token, so that the server holds it in
    its KV cache when the real call comes: the first call after a compaction, or after rounds a
    plan decided without a call, then recomputes only its newest rows. Off the critical path
    (it runs while a trial trains); it feeds no decision and, failing, nothing but its row."""
    model = ctx.caller.bound() if ctx.caller is not None else ctx.llm
    try:
        timed_invoke(model.bind(max_tokens=1), [HumanMessage(prefix)], study=ctx.study,
                     protocol=ctx.protocol, trial_number=len(ctx.study.trials()), warmup=True,
                     round=round_no)
    except LLM_ERRORS:
        pass  # a warm-up that failed costs the real call its cache hit, nothing else


def round_offers(ctx: TuneContext, portfolio: Portfolio | None = None,
                 extra: list[Trial] | None = None) -> tuple[list[Offer], list[Score | None]]:
    """A round's proposals: the panel's (``portfolio``: a speculative fork's), ranked by the
    prior with ``extra`` assumed trials, its best :data:`SHOWN` and their scores. With two or
    more asks per tool the prior has more to choose from, and the prompt stays as long."""
    offers = (portfolio or ctx.portfolio).panel_offers()
    w, left = ctx.pricing()
    ranked, scores = rank(ctx.study, offers, extra=extra or (), cost_weight=w, left_s=left)
    return ranked[:SHOWN], scores[:SHOWN]


def decision_text(proposals: list[Offer], choice: Offer) -> str:
    """How the log records a decision: the round's label ("A", ...) or "own", and the tool."""
    tool, config = choice
    lab = next((label(i) for i, p in enumerate(proposals) if p == (tool, config)), "own")
    return f"{lab} ({tool})"


def commit(knobs: Knobs, proposals: list[Offer], choice: Offer) -> TuningState:
    """What an LLM decision commits to when one decision covers ``knobs.plan`` rounds: picking A
    (the prior's first) means "follow the prior", another proposal means "that tool", and an own
    configuration falls back to the prior (it has no tool to continue)."""
    tool = None
    if choice in proposals[1:]:
        tool = choice[0]
    return {"plan_left": knobs.plan - 1, "plan_tool": tool}


def planned(state: TuningState, proposals: list[Offer]) -> Offer:
    """A round the plan decides: the committed tool's proposal, else the prior's first."""
    tool = state.get("plan_tool")
    return next((p for p in proposals if p[0] == tool), proposals[0]) if tool else proposals[0]


def absorb(ctx: TuneContext, state: TuningState, landed: list[int]) -> TuningState:
    """Log trials that finished while the graph was deciding for another worker: each one's
    row appended in the order they landed, the display told. ``{}`` when none did."""
    if not landed:
        return {}
    log, running = state["log"], dict(state.get("running") or {})
    for trial_id in landed:
        pending = running.pop(trial_id)
        ctx.flights.end(trial_id)
        trial = ctx.study.trial(trial_id)
        log = ctx.builder.close(log, ctx.builder.landed(pending.round, pending.decision, trial),
                                state["knobs"].context)
        if ctx.on_trial:
            ctx.on_trial(trial, trial.tool)
    ctx.portfolio.sync()
    return {"log": log, "running": running}


def next_to_land(state: TuningState) -> int:
    """The trial in flight expected to end first: the one started earliest (N workers run
    trials of one workload, whose durations are alike); what speculation predicts."""
    return min(state["running"])


def catch_up(ctx: TuneContext, state: TuningState) -> None:
    """Advance the real tools past the proposals accepted speculative rounds took from their
    forks, so they do not offer them again (see :meth:`Portfolio.advance`)."""
    if state.get("lag"):
        ctx.portfolio.advance(state["lag"])
