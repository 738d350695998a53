"""What a round does with the state: its proposals, its log rows, what a plan commits to.

Plain functions of the context and the state, shared by the critical path
(:mod:`asap.graphs.tuning`) and the speculative branch (:mod:`asap.graphs.speculative`).
"""

from __future__ import annotations

from asap.agent.llm.protocols import label
from asap.agent.prior.ranking import SHOWN, Score, rank
from asap.agent.selftune import Knobs
from asap.graphs.context import TuneContext
from asap.graphs.state import TuningState
from asap.tools.hpo.portfolio import Offer, Portfolio
from asap.tools.types import Trial


def round_offers(ctx: TuneContext, portfolio: Portfolio | None = None,
                 extra: list[Trial] | None = None) -> tuple[list[Offer], list[Score | None]]:
    """A round's proposals: the panel's (``portfolio``: a speculative fork's), ranked by the
    prior with ``extra`` assumed trials, its best :data:`SHOWN` and their scores. With two or
    more asks per tool the prior has more to choose from, and the prompt stays as long."""
    return ranked_offers(ctx, (portfolio or ctx.portfolio).panel_offers(), extra)


def ranked_offers(ctx: TuneContext, offers: list[Offer], extra: list[Trial] | None = None
                  ) -> tuple[list[Offer], list[Score | None]]:
    """The panel's ``offers`` ranked by the prior on the trials finished now (and ``extra``
    assumed ones): its best :data:`SHOWN` and their scores."""
    w, left, waves = ctx.pricing()
    ranked, scores = rank(ctx.study, offers, extra=extra or (), cost_weight=w, left_s=left,
                          waves=waves)
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
    tool = state["plan_tool"]
    return next((p for p in proposals if p[0] == tool), proposals[0]) if tool else proposals[0]


def absorb(ctx: TuneContext, state: TuningState, landed: list[int]) -> TuningState:
    """Log trials that finished while the graph was deciding for another worker: each one's
    row appended in the order they landed, the display told. ``{}`` when none did."""
    if not landed:
        return {}
    log, running = state["log"], dict(state["running"])
    for trial_id in landed:
        pending = running.pop(trial_id)
        ctx.flights.end(trial_id)
        trial = ctx.study.trial(trial_id)
        log = ctx.builder.close(log, ctx.builder.landed(pending.round, pending.decision, trial),
                                state["knobs"].context)
        if ctx.on_trial:
            ctx.on_trial(trial, trial.tool)
    # The tools are told these results before they are next asked (Portfolio.panel_offers),
    # not here: with proposals asked ahead, that is while the next trial trains.
    return {"log": log, "running": running}


def next_to_land(state: TuningState) -> int:
    """The trial in flight expected to end first: the one started earliest (N workers run
    trials of one workload, whose durations are alike); what speculation predicts."""
    return min(state["running"])


def catch_up(ctx: TuneContext, state: TuningState) -> None:
    """Advance the real tools past the proposals accepted speculative rounds took from their
    forks, so they do not offer them again (see :meth:`Portfolio.advance`)."""
    if state["lag"]:
        ctx.portfolio.advance(state["lag"])
