"""Where a trial's workload runs: the trial backend interface and the two local backends.

Why an interface: the trainer supervises every trial the same way (records each intermediate
value, answers prune decisions, enforces the time limit and the session's budget, turns every
ending into a finished row with its reason) whatever runs the workload: a worker process forked
from the fork server (the default), the supervising thread itself (table lookups on the virtual
clock), or a Ray task (:mod:`asap.tools.ray_backend`). A backend starts a trial and hands back a
:class:`TrialRun`; the trainer polls that run until it ends, or cancels it. A new backend is one
class implementing :class:`TrialBackend` and its run; pass it as ``Trainer(..., backend=...)``.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from asap.tools.resources import Slot
from asap.tools.types import is_pruned
from asap.tools.workers import (
    Preload,
    crash_reason,
    describe,
    fork_server,
    plain,
    preload_of,
    run_worker,
    stop_worker,
    worker_started,
)
from asap.tools.workloads import Workload, call, load_target

# The trainer's report handler: records (step, value) and answers whether the trial must stop.
Report = Callable[[int, float], bool]
# How a run ended: ("done", what the workload returned), ("pruned", None) when the objective
# raised TrialPruned, ("error", a one-line reason).
Ending = tuple[Literal["done", "pruned", "error"], Any]


@dataclass(frozen=True)
class Launch:
    """What a backend needs to start one trial."""

    workload: Workload
    config: dict[str, Any]
    fidelity: int | None
    seed: int  # the trial's own seed
    trial_id: int
    slot: Slot  # the worker it runs on (its GPUs or CPU threads)
    log: Path  # where a worker writes what the workload prints


class TrialRun(ABC):
    """One started trial, as its backend runs it."""

    @abstractmethod
    def poll(self, timeout_s: float) -> Ending | None:
        """Wait up to ``timeout_s`` for the trial to end, passing its reports to the handler
        meanwhile; its :data:`Ending`, or None while it still runs."""

    @abstractmethod
    def cancel(self) -> None:
        """Stop the trial now (cancelled, past its time limit, or pruned past its grace)."""

    def close(self) -> None:  # noqa: B027 - most runs hold nothing more
        """Release what the run holds; called once, after it ended or was cancelled."""


class TrialBackend(ABC):
    """Starts trials; the :class:`~asap.tools.trainer.Trainer` supervises them."""

    name: str = "backend"

    def prestart(self, workload: Workload) -> None:  # noqa: B027 - optional
        """Get ready before the first trial (a session calls this before its first decision,
        so the start-up overlaps that decision's LLM call). Nothing by default."""

    @abstractmethod
    def start(self, launch: Launch, report: Report) -> TrialRun:
        """Start the trial and return at once; its reports go to ``report``."""


class ForkServerBackend(TrialBackend):
    """Each trial in its own worker process, forked from a server that preloaded the workload's
    module (and what its first trial imported) or its table: isolated (a crash, an
    out-of-memory or a hang takes only that trial) and started in milliseconds."""

    name = "local"

    def __init__(self) -> None:
        self.learned = Preload()  # what finished trials imported beyond the preloads

    def prestart(self, workload: Workload) -> None:
        fork_server(preload_of(workload))  # the imports and a table load in the server

    def start(self, launch: Launch, report: Report) -> TrialRun:
        ctx = fork_server(preload_of(launch.workload) | self.learned)
        parent, child = ctx.Pipe()
        wl = launch.workload
        proc = ctx.Process(target=run_worker, name=f"asap-trial-{launch.trial_id}", daemon=True,
                           args=(child, wl.target, launch.config, launch.fidelity, wl.kwargs,
                                 os.getcwd(), launch.seed, os.getpid(), str(launch.log),
                                 launch.slot.env(), launch.slot.threads))
        proc.start()
        worker_started(+1)
        child.close()
        return _WorkerRun(proc, parent, report, self)


class _WorkerRun(TrialRun):
    """A worker process and the pipe its reports and result come through."""

    def __init__(self, proc: Any, conn: Any, report: Report, backend: ForkServerBackend) -> None:
        self.proc, self.conn, self.report, self.backend = proc, conn, report, backend
        self.closed = False

    def poll(self, timeout_s: float) -> Ending | None:
        if not self.conn.poll(timeout_s):
            if not self.proc.is_alive() and not self.conn.poll(0.05):
                return "error", crash_reason(self.proc)
            return None
        try:
            msg = self.conn.recv()
        except EOFError:
            self.proc.join(1)
            return "error", crash_reason(self.proc)
        if msg[0] == "report":
            self.conn.send(self.report(msg[1], msg[2]))
            return None
        if msg[0] == "done":  # the packages it imported: preloaded for the next trials
            self.backend.learned |= Preload(frozenset(msg[2]))
            return "done", msg[1]
        return ("pruned", None) if msg[0] == "pruned" else ("error", msg[1])

    def cancel(self) -> None:
        stop_worker(self.proc)

    def close(self) -> None:
        stop_worker(self.proc)  # and whatever it started (its process group)
        self.conn.close()
        if not self.closed:
            self.closed = True
            worker_started(-1)


class InProcessBackend(TrialBackend):
    """The workload runs in the supervising thread: for table lookups, which need no isolation
    (the eval's virtual-clock grids run 1,000s of them and skip a worker's start-up). Nothing
    can stop such a trial before it returns: no time limit, no cancellation."""

    name = "in-process"

    def start(self, launch: Launch, report: Report) -> TrialRun:
        return _HereRun(launch, report)


class _HereRun(TrialRun):
    def __init__(self, launch: Launch, report: Report) -> None:
        self.launch, self.report = launch, report

    def poll(self, timeout_s: float) -> Ending | None:
        wl, run = self.launch.workload, self.launch
        try:
            metrics = call(load_target(wl.target), run.config, self.report, run.fidelity,
                           wl.kwargs, run.seed)
            return "done", plain(metrics)
        except BaseException as exc:  # noqa: BLE001 - sys.exit() too: a failed trial
            return ("pruned", None) if is_pruned(exc) else ("error", describe(exc))

    def cancel(self) -> None:
        """Nothing to stop: the trial ran to its end inside :meth:`poll`."""
