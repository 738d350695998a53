"""Where a trial's workload runs: the trial backend interface and the two local backends.

Why an interface: the trainer supervises every trial the same way (records each intermediate
value, answers prune decisions, enforces the time limit and the session's budget, turns every
ending into a finished row with its reason) whatever runs the workload: a worker process forked
from the fork server (the default), this process (table lookups on the virtual clock inline;
``isolate=False`` on the session's own thread), or a Ray task (:mod:`asap.tools.trials.ray_backend`). A backend starts a trial and hands back a
:class:`TrialRun`; the trainer polls that run until it ends, or cancels it. A new backend is one
class implementing :class:`TrialBackend` and its run; pass it as ``Trainer(..., backend=...)``.
"""

from __future__ import annotations

import os
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from asap.tools.trials.caller import CallerThread
from asap.tools.trials.resources import Slot
from asap.tools.trials.workers import (
    Preload,
    crash_reason,
    describe,
    fork_server,
    plain,
    preload_of,
    serve_trials,
    stop_worker,
    worker_started,
)
from asap.tools.types import is_pruned
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
    number: int | None = None  # the trial's number in its study


class TrialRun(ABC):
    """One started trial, as its backend runs it."""

    # The objective's own running time, when the backend measured it where the trial ran (a Ray
    # task: its wait for a free worker and the worker's start-up left out); None: the trial
    # counts from when it was started.
    ran_s: float | None = None
    # The CPU seconds the trial used, every thread's, when the backend measured them (a worker
    # process here); over its seconds, the cores it kept busy.
    cpu_s: float | None = None

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
    """Starts trials; the :class:`~asap.tools.trials.trainer.Trainer` supervises them."""

    name: str = "backend"

    def prestart(self, workload: Workload) -> None:  # noqa: B027 - optional
        """Get ready before the first trial (a session calls this before its first decision,
        so the start-up overlaps that decision's LLM call). Nothing by default."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release what the backend keeps between trials (the session is over)."""

    @abstractmethod
    def start(self, launch: Launch, report: Report) -> TrialRun:
        """Start the trial and return at once; its reports go to ``report``."""


class ForkServerBackend(TrialBackend):
    """Each trial in a worker process forked from a server that preloaded the workload's
    module (and what its first trial imported) or its table: isolated (a crash, an
    out-of-memory or a hang takes only that worker) and started in milliseconds.

    ``reuse``: a worker that finished a trial runs its slot's next one (as Ray Tune's
    ``reuse_actors`` does), so the objective's first-call costs are paid once per slot; a
    worker that was stopped (cancelled, timed out, pruned past its grace) or ran out of memory
    is replaced. ``reuse=False``: a fresh process per trial.
    """

    name = "local"

    def __init__(self, reuse: bool = True) -> None:
        self.reuse = reuse
        self.learned = Preload()  # what finished trials imported beyond the preloads
        self._idle: dict[tuple, _Worker] = {}  # a kept worker per slot, between trials
        self._lock = threading.Lock()
        # Kept workers end with the backend, even one nobody closes (a tool caller's trainer).
        self._finalizer = weakref.finalize(self, _stop_all, self._idle, self._lock)

    def prestart(self, workload: Workload) -> None:
        fork_server(preload_of(workload))  # the imports and a table load in the server

    def start(self, launch: Launch, report: Report) -> TrialRun:
        key = (launch.slot.index, tuple(sorted(launch.slot.env().items())))
        with self._lock:
            worker = self._idle.pop(key, None)
        if worker is not None and not worker.proc.is_alive():
            worker.stop()
            worker = None
        wl = launch.workload
        job = (wl.target, launch.config, launch.fidelity, wl.kwargs, os.getcwd(), launch.seed,
               str(launch.log), launch.slot.threads, launch.number)
        if worker is not None:
            try:
                worker.conn.send(job)
                return _WorkerRun(worker, key, report, self)
            except OSError:  # it ended since it was kept: a fresh one takes the trial
                worker.stop()
        worker = _Worker.start(fork_server(preload_of(wl) | self.learned), launch)
        worker.conn.send(job)
        return _WorkerRun(worker, key, report, self)

    def keep(self, key: tuple, worker: _Worker) -> None:
        """A worker whose trial ended cleanly waits for its slot's next trial."""
        with self._lock:
            previous, self._idle[key] = self._idle.get(key), worker
        if previous is not None:
            previous.stop()

    def close(self) -> None:
        """End the kept workers (the session is over)."""
        self._finalizer()


def _stop_all(idle: dict[tuple, _Worker], lock: threading.Lock) -> None:
    with lock:
        workers = list(idle.values())
        idle.clear()
    for worker in workers:
        worker.stop()


class _Worker:
    """A worker process and its pipe: trials go in, reports and results come back."""

    def __init__(self, proc: Any, conn: Any) -> None:
        self.proc, self.conn = proc, conn
        self.stopped = False

    @classmethod
    def start(cls, ctx: Any, launch: Launch) -> _Worker:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=serve_trials, name=f"asap-worker-{launch.slot.index}",
                           daemon=True, args=(child, os.getpid(), launch.slot.env()))
        proc.start()
        worker_started(+1)
        child.close()
        return cls(proc, parent)

    def stop(self) -> None:
        """End the process and whatever it started (its process group)."""
        if self.stopped:
            return
        self.stopped = True
        stop_worker(self.proc)
        self.conn.close()
        worker_started(-1)


class _WorkerRun(TrialRun):
    """One trial on a worker: its reports and its result come through the worker's pipe."""

    def __init__(self, worker: _Worker, key: tuple, report: Report,
                 backend: ForkServerBackend) -> None:
        self.worker, self.key, self.report, self.backend = worker, key, report, backend
        self.proc, self.conn = worker.proc, worker.conn
        self.clean = False  # ended by its own result: the worker may run the next trial

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
        if msg[0] == "cpu":  # the trial's CPU seconds, sent just before its ending
            self.cpu_s = msg[1]
            return None
        # A worker that ran out of memory may not be sound: it runs no other trial.
        self.clean = not (msg[0] == "error" and str(msg[1]).startswith("out of memory"))
        if msg[0] == "done":  # the packages it imported: preloaded for the next workers
            self.backend.learned |= Preload(frozenset(msg[2]))
            return "done", msg[1]
        return ("pruned", None) if msg[0] == "pruned" else ("error", msg[1])

    def cancel(self) -> None:
        self.clean = False
        self.worker.stop()

    def close(self) -> None:
        if self.clean and self.backend.reuse and self.proc.is_alive():
            self.backend.keep(self.key, self.worker)
        else:
            self.worker.stop()


class InProcessBackend(TrialBackend):
    """The workload runs in this process: for table lookups, which need no isolation (the
    eval's virtual-clock grids run 1,000s of them and skip a worker's start-up), and objectives
    that cannot be pickled (``isolate=False``). It runs on ``caller``'s serving thread when one
    is given (the session's own thread: :mod:`asap.tools.trials.caller` says why), else in the
    supervising thread. Nothing can stop such a trial before it returns: no time limit, no
    cancellation."""

    name = "in-process"

    def __init__(self, caller: CallerThread | None = None) -> None:
        self.caller = caller

    def start(self, launch: Launch, report: Report) -> TrialRun:
        return _HereRun(launch, report, self.caller)


class _HereRun(TrialRun):
    def __init__(self, launch: Launch, report: Report, caller: CallerThread | None) -> None:
        self.launch, self.report, self.caller = launch, report, caller

    def poll(self, timeout_s: float) -> Ending | None:
        """The trial's ending, once it has run (the whole trial runs within this call)."""
        if self.caller is None:
            return self._run()
        try:
            return self.caller.submit(self._run).result()
        except BaseException as exc:  # noqa: BLE001 - Ctrl-C on the serving thread, or it ended
            return "error", describe(exc)

    def _run(self) -> Ending:
        wl, run = self.launch.workload, self.launch
        try:
            metrics = call(load_target(wl.target), run.config, self.report, run.fidelity,
                           wl.kwargs, run.seed, run.number)
            return "done", plain(metrics)
        except BaseException as exc:  # noqa: BLE001 - sys.exit() too: a failed trial
            if isinstance(exc, KeyboardInterrupt) and self.caller is not None:
                raise  # Ctrl-C on the session's thread: it ends the session there
            return ("pruned", None) if is_pruned(exc) else ("error", describe(exc))

    def cancel(self) -> None:
        """Nothing to stop: the trial ran to its end inside :meth:`poll`."""
