"""``train_on_gpu``'s engine: each trial trains in its own worker process.

Why a process: the caller stays free while a trial trains (speculation runs meanwhile), a hung
or crashing trial can be killed without taking the tuner down, and CUDA/torch state never leaks
between trials. The parent supervises through a pipe: it records each intermediate value in the
ledger, answers prune decisions, enforces the time limit and turns every failure (exception, NaN,
out-of-memory, timeout, crash, bad metric) into a failed trial with a readable reason.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import numbers
import os
import queue
import tempfile
import threading
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asap.tools.clock import Clock, ClockError, landing
from asap.tools.ledger import Study
from asap.tools.pruning import Pruner
from asap.tools.resources import Slot
from asap.tools.types import Cancel, Trial, is_pruned, safe_name
from asap.tools.workers import (
    crash_reason,
    describe,
    fork_server,
    plain,
    run_worker,
    stop_worker,
    tables_of,
)
from asap.tools.workloads import Workload, call, load_target

# Called as progress(event, trial number, data): "start" ({config, tool}) when a trial's worker
# starts, "report" ({step, value}) for each intermediate value: what a live display shows.
Progress = Callable[[str, int, dict[str, Any]], None]


@dataclass
class TrainingJob:
    """A trial in flight. ``wait()`` returns the finished :class:`Trial` from the ledger."""

    trial_id: int
    config: dict[str, Any]
    seed: int = 0  # the trial's own seed: what a workload's randomness draws from
    number: int = 0  # the trial's number in its study
    slot: Slot = field(default_factory=lambda: Slot(0))  # the worker it runs on
    clock: Clock = field(default_factory=Clock)  # the session's: what "landed" is read on
    _thread: threading.Thread | None = None
    _result: list[Trial] = field(default_factory=list)
    _cancel: threading.Event = field(default_factory=threading.Event)
    _reason: str = "cancelled"
    _landed: queue.SimpleQueue | None = None
    _done: threading.Event = field(default_factory=threading.Event)  # recorded finished
    _on_cancel: Callable[[], None] | None = None  # a virtual landing still to come: bring it now
    _recorded: bool = False  # its result is in (landed, or scheduled to)
    _land_lock: threading.Lock = field(default_factory=threading.Lock)

    def done(self) -> bool:
        """The trial has landed: recorded finished (on a virtual clock, once its simulated
        duration has passed, not when its result was computed)."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> Trial | None:
        """The finished trial; ``timeout`` (real seconds) None waits on the session's clock."""
        if timeout is None:
            self.clock.join(self._done)
        else:
            self._done.wait(timeout)
        return self._result[0] if self._result else None

    def cancel(self, reason: str = "cancelled") -> None:
        """Kill the worker; the trial is recorded as failed with ``reason``."""
        self._reason = reason
        self._cancel.set()
        if self._on_cancel is not None:
            self._on_cancel()


class Trainer:
    """Runs trials of one workload for one study."""

    def __init__(self, study: Study, workload: Workload, *, time_limit_s: float = 600.0,
                 pruner: Pruner | None = None, prune_grace_s: float = 10.0,
                 seed: int = 0, in_process: bool = False, stop_at: float | None = None,
                 cancel: Cancel | None = None, progress: Progress | None = None,
                 slots: list[Slot] | None = None) -> None:
        if not (time_limit_s > 0 and math.isfinite(time_limit_s)):
            raise ValueError(f"time_limit_s must be a positive number, got {time_limit_s}")
        self.study = study
        self.workload = workload
        self.time_limit_s = time_limit_s
        self.pruner = pruner
        self.prune_grace_s = prune_grace_s
        self.seed = seed
        # A table lookup needs no isolation: in-process trials skip the worker's start-up (the
        # eval's simulated-clock grids run 1,000s of them). No time limit can stop them.
        self.in_process = in_process
        # The session's wall-clock budget ends here (a stamp on the session's clock): a trial
        # still running then is stopped and failed, so the budget holds while a trial runs.
        self.stop_at = stop_at
        # The session's cancellation (another thread's Ctrl-C, a server's runs.cancel): stops
        # every trial in flight, recorded as failed with its reason.
        self.cancel = cancel or Cancel()
        self.progress = progress or (lambda event, number, data: None)
        # The workers (see asap.tools.resources.plan_slots): at most one trial on each at once.
        # None: no limit (a tool caller may start trials side by side), each on its own index.
        self.slots = slots
        self._busy: set[int] = set()
        self._slot_lock = threading.Lock()
        self._jobs: list[TrainingJob] = []
        # A trial the virtual clock cannot price (no duration, or a bad one) ends the session
        # with this error, after its trials in flight are cancelled.
        self.fatal: ClockError | None = None
        self.cancel.listen(self._cancelled)

    @property
    def clock(self) -> Clock:
        """The session's clock: the study's (real, or a virtual one set on it)."""
        return self.study.clock

    @property
    def workers(self) -> int:
        """How many trials a tuning loop keeps in flight on this trainer."""
        return len(self.slots) if self.slots else 1

    def prestart(self) -> None:
        """Start the fork server now (torch and a table's rows load in its own process, in the
        background), so that the first trial does not wait for it: a session calls this before
        its first decision, whose LLM call then overlaps the 2-5 s the server takes to load."""
        if not self.in_process:
            fork_server(tables_of(self.workload))

    def _take_slot(self) -> Slot:
        with self._slot_lock:
            if self.slots is None:
                slot = Slot(next(i for i in range(len(self._busy) + 1) if i not in self._busy))
            else:
                slot = next((s for s in self.slots if s.index not in self._busy), None)
                if slot is None:
                    raise RuntimeError(f"all {len(self.slots)} workers are busy")
            self._busy.add(slot.index)
            return slot

    def start(self, config: dict[str, Any], *, tool: str, fidelity: int | None = None,
              meta: dict[str, Any] | None = None, allow_repeat: bool = True,
              limit: int | None = None, landed: queue.SimpleQueue | None = None
              ) -> TrainingJob:
        """Validate, record a running trial on a free worker, start it and return at once.

        ``landed``: the trial's id is put there once it is recorded finished (how a caller with
        several trials in flight waits for whichever ends first)."""
        fidelity = fidelity if fidelity is not None else self.workload.default_fidelity
        if self.workload.evaluates is not None and self.study.space.is_valid(config):
            evaluated = self.workload.evaluates(config)
            if evaluated != config:  # e.g. the table's grid point: what the value belongs to
                meta = {**(meta or {}), "evaluated": evaluated}
        slot = self._take_slot()
        try:
            trial_id = self.study.start_trial(config, tool=tool, fidelity=fidelity,
                                              meta={**(meta or {}), "worker": slot.index},
                                              allow_repeat=allow_repeat, limit=limit)
        except BaseException:
            self._release(slot)
            raise
        trial = self.study.trial(trial_id)
        job = TrainingJob(trial_id, trial.config, trial_seed(self.seed, trial.number),
                          trial.number, slot, self.clock)
        job._landed = landed
        self.clock.hold()  # its landing is scheduled once its result is in
        # The caller's context goes along: a progress callback may read context variables (a
        # LangGraph node's stream writer does).
        job._thread = threading.Thread(target=contextvars.copy_context().run,
                                       args=(self._guarded, job, fidelity, trial.started_at),
                                       name=f"trial-{trial_id}", daemon=True)
        self._jobs = [j for j in self._jobs if not j.done()] + [job]
        job._thread.start()
        self._tell("start", trial.number, {"config": trial.config, "tool": tool})
        return job

    def _tell(self, event: str, number: int, data: dict[str, Any]) -> None:
        """Progress for displays; a display that fails never fails the trial."""
        try:
            self.progress(event, number, data)
        except Exception as exc:  # noqa: BLE001 - someone else's callback
            warnings.warn(f"a progress callback failed: {type(exc).__name__}: {exc}",
                          stacklevel=2)

    def _cancelled(self) -> None:
        """The session was cancelled: trials waiting for their virtual landing land now."""
        for job in list(self._jobs):
            if job._on_cancel is not None and not job.done():
                job._reason = self.cancel.reason
                job._on_cancel()

    def cancel_all(self, reason: str, *, wait_s: float = 0.0) -> None:
        """Cancel every trial in flight (Ctrl-C), optionally waiting for each to be recorded."""
        jobs = list(self._jobs)
        for job in jobs:
            job.cancel(reason)
        for job in jobs if wait_s > 0 else ():
            job.wait(wait_s)

    def run(self, config: dict[str, Any], *, tool: str, fidelity: int | None = None) -> Trial:
        """Start a trial and wait for it; Ctrl-C records it as failed ("interrupted") first."""
        job = self.start(config, tool=tool, fidelity=fidelity)
        try:
            result = job.wait()
        except KeyboardInterrupt:
            job.cancel("interrupted by the user (Ctrl-C)")
            job.wait(30)
            raise
        assert result is not None
        return result

    def _guarded(self, job: TrainingJob, fidelity: int | None, start: float) -> None:
        """A trial's supervision; whatever goes wrong inside it, the trial is recorded (failed,
        with the reason) and its worker and clock hold released: a session never hangs on it."""
        try:
            if self.in_process:
                self._run_here(job, fidelity, start)
            else:
                self._supervise(job, fidelity, start)
        except BaseException as exc:  # noqa: BLE001 - recorded as the trial's failure
            if not job._recorded:
                self._record(job, start, "failed", {}, f"supervisor error: {describe(exc)}")

    def _supervise(self, job: TrainingJob, fidelity: int | None, start: float) -> None:
        status, metrics, error, pruned_at = "failed", {}, None, None
        should_prune = self.pruner.for_trial() if self.pruner else (lambda s, v: False)
        ctx = fork_server(tables_of(self.workload))
        parent, child = ctx.Pipe()
        log = self.log_path(job.number)
        proc = ctx.Process(target=run_worker, name=f"asap-trial-{job.trial_id}", daemon=True, args=(
            child, self.workload.target, job.config, fidelity, self.workload.kwargs, os.getcwd(),
            job.seed, os.getpid(), str(log), job.slot.env(), job.slot.threads))
        proc.start()
        child.close()
        deadline = start + self.time_limit_s
        try:
            while True:
                if (halt := self._halt(job, deadline, pruned_at)) is not None:
                    status, error = halt
                    break
                if not parent.poll(0.05):
                    if not proc.is_alive() and not parent.poll(0.05):
                        error = crash_reason(proc)
                        break
                    continue
                try:
                    msg = parent.recv()
                except EOFError:
                    proc.join(1)
                    error = crash_reason(proc)
                    break
                if msg[0] == "report":
                    stop, pruned_at = self._reported(job, msg[1], msg[2], should_prune,
                                                     pruned_at)
                    parent.send(stop)
                elif msg[0] == "done":
                    status, metrics, error = self._judge(msg[1], pruned_at is not None)
                    break
                elif msg[0] == "pruned":  # the objective raised TrialPruned
                    status, metrics, error = "pruned", {}, None
                    break
                else:  # ("error", reason)
                    error = msg[1]
                    break
        finally:
            stop_worker(proc)
            parent.close()
        if log.exists() and log.stat().st_size:
            self.study.annotate(job.trial_id, log=str(log))
        else:  # nothing printed: leave no empty file or folder behind
            log.unlink(missing_ok=True)
            for folder in (log.parent, log.parent.parent):
                with contextlib.suppress(OSError):  # not empty: another trial's log is there
                    folder.rmdir()
        self._record(job, start, status, metrics, error)

    def _halt(self, job: TrainingJob, deadline: float, pruned_at: float | None
              ) -> tuple[str, str | None] | None:
        """Whether a trial in flight must stop now, as (status, reason): cancelled, the
        session's time budget spent, its time limit passed, or pruned and past its grace."""
        if job._cancel.is_set() or self.cancel.is_set():
            return "failed", job._reason if job._cancel.is_set() else self.cancel.reason
        now = self.clock.now()
        if self.stop_at is not None and now > self.stop_at and not pruned_at:
            return "failed", "stopped: the session's time budget ran out during this trial"
        if now > deadline or (pruned_at and now > pruned_at + self.prune_grace_s):
            if pruned_at:
                return "pruned", None
            return "failed", (f"timeout: exceeded the {self.time_limit_s:g}s time limit "
                              "(--trial-timeout)")
        return None

    def _reported(self, job: TrainingJob, step: int, value: float,
                  should_prune: Callable[[int, float], bool], pruned_at: float | None
                  ) -> tuple[bool, float | None]:
        """A worker's intermediate value: recorded and shown, then the prune answer it gets
        back (a non-finite value stops it unrecorded) and when pruning was first decided."""
        if not math.isfinite(value):
            return True, pruned_at
        self.study.report(job.trial_id, step, value)
        self._tell("report", job.number, {"step": step, "value": value})
        stop = should_prune(step, value)
        return stop, (self.clock.now() if stop and pruned_at is None else pruned_at)

    def log_path(self, number: int) -> Path:
        """Where trial ``number``'s worker writes what the workload prints (stdout and stderr):
        ``<ledger>-logs/<study>/trial-<n>.log`` beside the ledger. Kept (and named in the
        trial's meta as ``log``) when the workload printed something."""
        ledger = Path(self.study.ledger.path)
        base = (Path(tempfile.gettempdir()) / "asap-logs" if str(ledger) == ":memory:"
                else ledger.parent / f"{ledger.name}-logs")
        return base / safe_name(self.study.name) / f"trial-{number}.log"  # the worker makes it

    def _run_here(self, job: TrainingJob, fidelity: int | None, start: float) -> None:
        """The trial in this thread: the same reports, judging and records, no worker."""
        pruned = False
        should_prune = self.pruner.for_trial() if self.pruner else (lambda s, v: False)

        def report(step: int, value: float) -> bool:
            nonlocal pruned
            if not math.isfinite(value):
                return True
            self.study.report(job.trial_id, step, value)
            self._tell("report", job.number, {"step": step, "value": value})
            pruned = pruned or should_prune(step, value)
            return pruned
        try:
            metrics = call(load_target(self.workload.target), job.config, report, fidelity,
                           self.workload.kwargs, job.seed)
            status, metrics, error = self._judge(metrics, pruned)
        except BaseException as exc:  # noqa: BLE001 - sys.exit() too: a failed trial
            status, metrics, error = ("pruned", {}, None) if is_pruned(exc) else (
                "failed", {}, describe(exc))
        self._record(job, start, status, metrics, error)

    def _record(self, job: TrainingJob, start: float, status: str, metrics: dict[str, float],
                error: str | None) -> None:
        """The trial's result is in: it lands now (real clock), or when its simulated duration
        has passed on the virtual clock."""
        job._recorded = True
        if not self.clock.virtual:
            self._land(job, start, self.clock.now(), status, metrics, error)
            return
        try:
            end, status, error = landing(start, status, metrics, error, self.workload.duration,
                                         self.workload.ref, self.time_limit_s, self.stop_at)
        except ClockError as exc:  # the session ends on it; the trial lands failed, now
            end, status, error = self.clock.now(), "failed", str(exc)
            if self.fatal is None:
                self.fatal = exc
                self.cancel.cancel(str(exc))
        job._on_cancel = lambda: self.clock.at(self.clock.now(), lambda at: self._land(
            job, start, at, "failed", {}, job._reason))
        self.clock.at(end, lambda at: self._land(job, start, at, status, metrics, error),
                      held=True)
        if job._cancel.is_set() or self.cancel.is_set():  # cancelled before it was scheduled
            job._on_cancel()

    def _land(self, job: TrainingJob, start: float, end: float, status: str,
              metrics: dict[str, float], error: str | None) -> None:
        """Record the finished trial (once: a cancelled virtual landing may come twice)."""
        with job._land_lock:
            if job._done.is_set():
                return
            try:
                result = self.study.finish_trial(job.trial_id, status=status, metrics=metrics,
                                                 error=error, ended_at=end)
                self.study.log_timing("train", start, end, trial_number=result.number,
                                      status=status, tool=result.tool, worker=job.slot.index)
                job._result.append(result)
            finally:  # the worker is free and the waiter told, even if the ledger failed
                self._release(job.slot)
                job._done.set()
                if job._landed is not None:
                    job._landed.put(job.trial_id)

    def _release(self, slot: Slot) -> None:
        with self._slot_lock:
            self._busy.discard(slot.index)

    def _judge(self, metrics: Any, pruned: bool) -> tuple[str, dict[str, float], str | None]:
        """Check what the workload returned; a missing or non-numeric metric fails the trial."""
        name, metrics = self.workload.metric, plain(metrics)  # numpy, torch: plain numbers
        if isinstance(metrics, numbers.Real) and not isinstance(metrics, bool):
            metrics = {name: metrics}  # an objective may return its value alone, as in Optuna
        if not isinstance(metrics, dict):
            return "failed", {}, f"workload returned {type(metrics).__name__}, expected a dict of metrics"
        clean: dict[str, float] = {}
        for k, v in metrics.items():
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                return "failed", {}, f"metric {k!r} is not a number: {v!r}"
            try:
                clean[str(k)] = float(v)
            except OverflowError:  # an int past float's range (10**400)
                return "failed", {}, f"metric {k!r} is too large for a number: {str(v)[:40]}..."
        if pruned:
            return "pruned", {k: v for k, v in clean.items() if math.isfinite(v)}, None
        if name not in clean:
            return "failed", {}, f"workload returned no {name!r} metric (got {sorted(clean)})"
        if not math.isfinite(clean[name]):
            return "failed", {}, f"metric {name!r} is {clean[name]} (NaN loss?)"
        return "complete", clean, None


def trial_seed(seed: int, number: int) -> int:
    """Trial ``number``'s seed in a session seeded ``seed``: fresh for every trial, the same for
    the same trial of another run with that seed (methods compared at equal seeds draw alike)."""
    return zlib.crc32(f"{seed}:{number}".encode())
