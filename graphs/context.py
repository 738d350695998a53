"""The tuning graph's run context: what the nodes act on and nothing that changes.

Following LangGraph's split (``StateGraph(State, context_schema=Context)``): the study, tools,
trainer, decision protocol, prompt builder, the session's settings and callbacks, passed as
``graph.invoke(..., context=...)`` and read by nodes as ``runtime.context``. The settings are the
session's :class:`~asap.agent.config.TuneConfig`, held whole (``ctx.cfg``): the context declares
no setting or default of its own. Built completely by :func:`make_context`, which derives what
follows from the settings (the protocol bound to the session's tools, speculation's mode, the
bounds lossless speculation imposes), then frozen.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage

from asap.agent.config import TuneConfig
from asap.agent.llm.breaker import Breaker
from asap.agent.llm.protocols import DEFAULT, DecisionProtocol, Verdict, make_protocol
from asap.agent.pricing import ALWAYS, Price, Verdicts, llm_due
from asap.agent.prior.cost import weight
from asap.agent.prompt import PromptBuilder, PromptLog
from asap.agent.selftune import Bounds, Knobs
from asap.agent.speculation import SpeculationMode, speculation_mode
from asap.graphs.ahead import Ahead
from asap.graphs.flights import Flights
from asap.graphs.growth import Growth
from asap.graphs.prefetch import Prefetch
from asap.graphs.state import TuningState
from asap.tools.hpo.panel import PANEL, Tool
from asap.tools.hpo.portfolio import Offer, Portfolio
from asap.tools.hpo_tools import Toolbox
from asap.tools.ledger.study import Study
from asap.tools.trials.clock import Clock
from asap.tools.trials.trainer import Trainer
from asap.tools.types import Trial


def tools_text(panel: tuple[Tool, ...] = PANEL) -> str:
    """The prompt's tools section: the panel, in the order its proposals are shown."""
    return "\n".join(f"- {t.algorithm} ({t.library})" for t in panel) + \
        "\n- llm (your own configuration)"


@dataclass(frozen=True)
class TuneContext:
    """Everything the nodes act on and nothing that changes. ``llm=None``: the fallback decides."""

    study: Study
    portfolio: Portfolio
    trainer: Trainer
    builder: PromptBuilder
    llm: BaseChatModel | None
    decider: DecisionProtocol | None  # how the LLM answers; None exactly when no LLM
    cfg: TuneConfig  # the session's settings, each declared once, there
    spec_mode: SpeculationMode  # cfg.speculation resolved ("auto"), and off without an LLM
    tune_every: int  # cfg.selftune_every, 0 when self-tuning is off or there is no LLM
    bounds: Bounds  # self-tuning's (a knob the user set pinned; lossless: depth 1)
    breaker: Breaker
    ahead: Ahead  # the next plan's decision, asked meanwhile
    started: float = field(default_factory=time.time)  # on the study's clock
    on_trial: Callable[[Trial, str], None] | None = None  # progress displays
    on_phase: Callable[[str], None] | None = None  # what the session waits on (displays)
    on_decision: Callable[[dict[str, Any]], None] | None = None  # each round's decision
    flights: Flights = field(default_factory=Flights)
    say: Callable[[str], None] | None = None  # notices for a person (the circuit breaker)
    llm_ready: Callable[[], bool] = lambda: True  # the embedded server may still be loading
    prefetched: Prefetch = field(default_factory=Prefetch)  # what they proposed meanwhile
    verdicts: Verdicts = field(default_factory=Verdicts)  # the last price verdict, logged once
    growth: Growth = field(default_factory=Growth)  # its workers, grown to fill idle cores

    # The settings nodes read, by the names they read them (each one a TuneConfig field).
    max_trials = property(lambda self: self.cfg.trials)
    time_budget_s = property(lambda self: self.cfg.time_budget_s)
    cost_weight = property(lambda self: self.cfg.cost_weight)
    max_retries = property(lambda self: self.cfg.max_retries)
    max_steps = property(lambda self: self.cfg.max_steps)
    decide_ahead = property(lambda self: self.cfg.decide_ahead)
    llm_after = property(lambda self: self.cfg.llm_after)
    ask = property(lambda self: self.cfg.ask)
    prefetch = property(lambda self: self.cfg.prefetch)
    in_order = property(lambda self: self.cfg.in_order)

    @property
    def clock(self) -> Clock:
        """The session's clock (the study's): what budgets and time stamps are read on."""
        return self.study.clock

    def check(self, answer: BaseMessage, offers: list[Offer]) -> Verdict:
        """The guard's verdict on an answer, in the session's protocol (the critical round's,
        a speculative round's and one asked ahead read it alike)."""
        assert self.decider is not None
        return self.decider.check(answer, offers, self.study.space)

    def phase(self, name: str) -> None:
        """Tell the displays what the session waits on now ("tools", "llm", "training")."""
        if self.on_phase is not None:
            self.on_phase(name)

    def spent(self) -> bool:
        """No new trial may start: the trial budget is taken (running trials included), the
        wall-clock budget is used up, or the run was cancelled or halted."""
        return (len(self.study.trials()) >= self.max_trials or self.trainer.cancel.is_set()
                or self.trainer.cancel.halted()
                or (self.time_budget_s is not None
                    and self.clock.now() - self.started >= self.time_budget_s))

    def pricing(self) -> tuple[float, float | None, int | None]:
        """How much a proposal's predicted training time weighs in the prior's ranking now,
        the time budget left (None: no budget), and with several workers the trials the cap
        leaves each worker, this one included (1: the last wave; None with one worker): no
        worker should idle behind a straggler (:func:`asap.agent.prior.cost.tail`)."""
        elapsed = self.clock.now() - self.started
        left = None if self.time_budget_s is None else self.time_budget_s - elapsed
        workers = self.trainer.workers
        waves = (None if workers <= 1
                 else max(1, math.ceil((self.max_trials - len(self.study.trials())) / workers)))
        w = weight(elapsed, self.time_budget_s) if self.cost_weight == "cool" else float(
            self.cost_weight)
        return w, left, waves

    def price(self, round_no: int) -> Price:
        """Whether round ``round_no``'s decision is worth an LLM call (:mod:`asap.agent.pricing`),
        whichever node asks (the critical path, speculation, a warm-up, a decision asked ahead);
        each change of verdict is an ``llm_price`` event with its reason."""
        price = ALWAYS if self.ask == "always" else llm_due(self.study, self.max_trials,
                                                            self.trainer.workers)
        if price.ratio is not None and self.verdicts.changed(price.ask):  # priced, and new
            self.study.log_event("llm_price", ask=price.ask, why=price.why, round=round_no,
                                 ratio=price.ratio)
        return price

    def prefetching(self) -> bool:
        """The training branch asks the next round's proposals (:mod:`asap.graphs.prefetch`):
        the serial loop on the real clock (one worker, no speculative branch to fork the tools
        meanwhile; a virtual clock charges the tools their real time either way), with the
        trials in worker processes: an objective in this process shares the interpreter with
        the asks and the fit, and was slowed by more than they take (docs/decision-loop.md)."""
        return (self.prefetch and self.trainer.workers == 1 and self.spec_mode == "off"
                and not self.clock.virtual and not self.cfg.trials_here)

    def can_start(self, running: int) -> bool:
        """With ``running`` trials started and not yet taken, another may be decided (the budget
        allows it and :meth:`in_flight` is not reached)."""
        return running < self.in_flight() and not self.spent()

    def in_flight(self) -> int:
        """The trials the graph keeps started and not yet taken: one per worker, and with
        several workers taking results in order on the real clock, one more, decided while they
        all train (its start waits for a worker): no worker then waits for an earlier trial to
        end, and trial n is decided from the results of trials 0 .. n - workers - 1."""
        workers = self.trainer.workers
        return workers + (self.in_order and workers > 1 and not self.clock.virtual)

    def initial_state(self, tau: float | None = None, depth: int | None = None,
                      context: int | None = None, plan: int | None = None) -> TuningState:
        """The state a run starts from: the knobs (the settings', unless given; a self-tuned one
        the settings leave unset starts at 1 round of depth and plan and 24 rounds of context)
        inside their bounds, an empty prompt log, and every key a round reads (nodes read
        ``state["key"]``, never a default of their own)."""
        c, b = self.cfg, self.bounds
        tau = c.tau if tau is None else tau
        depth = depth if depth is not None else c.depth or 1
        context = context if context is not None else c.context or 24
        plan = plan if plan is not None else c.plan or 1
        return {"knobs": Knobs(tau=tau, depth=min(max(depth, b.depth_min), b.depth_max),
                               context=context, plan=min(max(plan, b.plan_min), b.plan_max)),
                "log": PromptLog(), "round": 0, "plan_left": 0, "plan_tool": None,
                "running": {}, "chain": [], "lag": 0, "verify": None, "scores": [],
                "proposals": [], "offers": [], "choice": None, "decided_by": "llm",
                "error": None, "reminded": False, "spent": False, "stop": False, "fill": False,
                "tune_due": False}

    def recursion_limit(self) -> int:
        """LangGraph's step bound for a whole session: every round may use all its LLM steps."""
        return self.max_trials * (4 + 2 * self.max_steps) + 10 + 2 * self.trainer.workers


def make_context(study: Study, portfolio: Portfolio, trainer: Trainer,
                 llm: BaseChatModel | None, cfg: TuneConfig, *, protocol: str = DEFAULT,
                 grammar: bool = False, breaker: Breaker | None = None,
                 bounds: Bounds | None = None, **live: Any) -> TuneContext:
    """A run's context, built whole from the session's settings ``cfg``: the prompt builder for
    ``protocol`` and the trainer's workers, the protocol bound to the session's tools
    (``grammar``: the server takes llama.cpp GBNF grammars), speculation's mode (off without
    an LLM), self-tuning's bounds (a knob ``cfg`` sets is pinned; lossless speculation keeps
    depth 1) over ``bounds`` (the self-tuner's policy, default :class:`Bounds`); ``live`` are
    the run's callbacks and clocks (``started``, ``on_trial``, ``say``, ``llm_ready``, ...)."""
    builder = PromptBuilder(study, tools_text(portfolio.panel), mode=cfg.prompt,
                            protocol=protocol, workers=trainer.workers, proposals=cfg.proposals)
    decider = None
    if llm is not None:
        decider = make_protocol(protocol, llm, study,
                                Toolbox(study, portfolio, trainer).tools(), grammar)
    speculation = speculation_mode(cfg) if llm is not None else "off"
    bounds = self_tuned_bounds(cfg, bounds or Bounds())
    if speculation == "lossless":  # each decision is verified serially
        bounds = bounds.model_copy(update={"depth_max": 1})
    breaker = breaker or Breaker()
    if breaker.on_change is None:
        say = live.get("say")
        breaker.on_change = lambda state, reason: _breaker_changed(study, say, state, reason)
    return TuneContext(study, portfolio, trainer, builder, llm, decider, cfg, speculation,
                       cfg.selftune_every if cfg.selftune and llm is not None else 0, bounds,
                       breaker, Ahead(clock=study.clock), **live)


def self_tuned_bounds(cfg: TuneConfig, policy: Bounds) -> Bounds:
    """Self-tuning's bounds (``policy``'s); a knob the user set is pinned to their value."""
    fixed: dict[str, int] = {}
    for knob in ("context", "depth", "plan"):
        if (value := getattr(cfg, knob)) is not None:
            fixed |= {f"{knob}_min": value, f"{knob}_max": value}
    return policy.model_copy(update=fixed)


def _breaker_changed(study: Study, say: Callable[[str], None] | None, state: str,
                     reason: str) -> None:
    study.log_event("llm_breaker", state=state, reason=reason)
    if say is not None:
        say(f"LLM circuit {state}: {reason}")
