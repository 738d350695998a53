"""The self-tuning node: retunes the knobs (tau, depth, context, plan) from the ledger's timings.

Why a node of its own: the design names it, and a graph drawn from ``langgraph.json`` shows it.
It runs just before the trials-in-flight fan-out (``await_train || speculate``): a trial is
already training, so the pass costs no wall-clock, and the branch that decides ahead reads the
knobs it leaves.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from asap.agent.selftune import selftune
from asap.graphs.context import TuneContext
from asap.graphs.state import TuningState


def due(ctx: TuneContext) -> bool:
    """Whether a self-tuning pass is due: every ``selftune_every`` finished trials, and every
    round until a first pass has read enough (3 decisions, 3 trials), since the knobs start as
    guesses: a short-trial session's early rounds are where a plan saves the most calls."""
    done = len(ctx.study.finished_ids())
    if not ctx.tune_every or done == 0:
        return False
    return not (done % ctx.tune_every and ctx.study.timings("selftune"))


def selftune_node(state: TuningState, runtime: Runtime[TuneContext]) -> TuningState:
    """Retune the knobs from the ledger. The graph routes here only when :func:`due` said so
    at dispatch (``tune_due``): a round with nothing due pays no extra graph step, and the
    ledger is not read twice for it."""
    ctx = runtime.context
    with ctx.clock.busy():  # overlaps training, as the speculative branch's work does
        return {"knobs": selftune(ctx.study, state["knobs"], ctx.bounds)}
