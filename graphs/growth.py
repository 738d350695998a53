"""A session's workers, grown once to fill the cores its first trials left idle.

Why here: the decision is :func:`asap.agent.cores.grow_to`'s; this applies it to the run (the
trainer's slots, an event, a line for the person watching), once, when the session's first
:data:`~asap.agent.cores.MEASURED` trials have landed: at the same trial in every run, so a
seed still gives the same decisions on the same machine. Only a session whose workers were not set,
with its trials in worker processes on this machine's CPU, on the real clock, grows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asap.agent.cores import MEASURED, busy, grow_to
from asap.tools.trials.resources import plan_slots

if TYPE_CHECKING:
    from asap.graphs.context import TuneContext


class Growth:
    """Whether a session may still grow its workers (once), and on how many cores."""

    def __init__(self, cores: int | None = None) -> None:
        self.cores = cores  # None: it never grows (workers set, GPUs, Ray, a virtual clock)
        self.open = cores is not None and cores > 1


def grow(ctx: TuneContext) -> None:
    """Once this session's first trials are measured, grow its workers to fill the idle cores
    (:func:`~asap.agent.cores.grow_to`); the next round then fills the new workers."""
    growth = ctx.growth
    if not growth.open or growth.cores is None:
        return
    rows = [r for r in ctx.study.timings("train")
            if r["start"] >= ctx.started and "cpu_s" in r["detail"]]
    if len(rows) < MEASURED:
        return
    growth.open = False  # decided once, at the same trial in every run
    left = ctx.max_trials - len(ctx.study.trials())
    to = grow_to(rows, growth.cores, ctx.trainer.workers, left)
    if to is None:
        return
    ctx.trainer.grow(plan_slots(to, cores=growth.cores))
    share = busy(rows)
    ctx.study.log_event("workers", after=len(rows), to=to, busy=share, cores=growth.cores)
    if ctx.say is not None:
        ctx.say(f"the first {len(rows)} trials kept {share:.1f} of {growth.cores} cores busy: "
                f"{to} workers from here on (set workers to 1 to keep one)")
