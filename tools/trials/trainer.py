"""``train_on_gpu``'s engine: trials train in worker processes (a slot's worker runs its next
trial unless it was stopped, see :class:`~asap.tools.trials.backend.ForkServerBackend`).

Why a process: the caller stays free while a trial trains (speculation runs meanwhile), and a
hung or crashing trial can be killed without taking the tuner down. The parent supervises
through a pipe: it records each intermediate value in the ledger, answers prune decisions,
enforces the time limit and turns every failure (exception, NaN, out-of-memory, timeout, crash,
bad metric) into a failed trial with a readable reason.
"""

from __future__ import annotations

import contextvars
import math
import queue
import sqlite3
import threading
import warnings
from collections.abc import Callable
from typing import Any

from asap.tools.hpo.pruning import Pruner
from asap.tools.ledger.study import BudgetSpent, Study
from asap.tools.trials.backend import ForkServerBackend, InProcessBackend, Launch, TrialBackend
from asap.tools.trials.clock import Clock, ClockError, landing
from asap.tools.trials.define_by_run import PAYLOAD
from asap.tools.trials.job import TrainingJob, judge, trial_seed
from asap.tools.trials.resources import Slot
from asap.tools.trials.workers import describe, keep_log, trial_log
from asap.tools.types import Cancel, Trial
from asap.tools.workloads import Workload

# Called as progress(event, trial number, data): "start" ({config, tool}) when a trial's worker
# starts, "report" ({step, value}) for each intermediate value: what a live display shows.
Progress = Callable[[str, int, dict[str, Any]], None]


class Trainer:
    """Runs trials of one workload for one study."""

    def __init__(self, study: Study, workload: Workload, *, time_limit_s: float = 600.0,
                 pruner: Pruner | None = None, prune_grace_s: float = 10.0,
                 seed: int = 0, backend: TrialBackend | None = None, in_process: bool = False,
                 stop_at: float | None = None, cancel: Cancel | None = None,
                 progress: Progress | None = None, slots: list[Slot] | None = None) -> None:
        if not (time_limit_s > 0 and math.isfinite(time_limit_s)):
            raise ValueError(f"time_limit_s must be a positive number, got {time_limit_s}")
        self.study = study
        self.workload = workload
        self.time_limit_s = time_limit_s
        self.pruner = pruner
        self.prune_grace_s = prune_grace_s
        self.seed = seed
        # Where trials run: a worker process each by default; ``in_process=True`` is short for
        # the in-process backend (table lookups, which need no isolation).
        self.backend = backend or (InProcessBackend() if in_process else ForkServerBackend())
        # The session's wall-clock budget ends here (a stamp on the session's clock): a trial
        # still running then is stopped and failed, so the budget holds while a trial runs.
        self.stop_at = stop_at
        # The session's cancellation (another thread's Ctrl-C, a server's runs.cancel): stops
        # every trial in flight, recorded as failed with its reason.
        self.cancel = cancel or Cancel()
        self.progress = progress or (lambda event, number, data: None)
        # The workers (see asap.tools.trials.resources.plan_slots): at most one trial on each at once.
        # None: no limit (a tool caller may start trials side by side), each on its own index.
        self.slots = slots
        self._busy: set[int] = set()
        self._slot_lock = threading.Lock()
        self._slot_freed = threading.Condition(self._slot_lock)  # a start waiting for a worker
        self._jobs: list[TrainingJob] = []
        # What ends the session, after its trials in flight are cancelled: a trial the virtual
        # clock cannot price (no duration, or a bad one), a ledger that cannot be written (a
        # full disk).
        self.fatal: ClockError | sqlite3.Error | None = None
        self.cancel.listen(self._cancelled)

    @property
    def clock(self) -> Clock:
        """The session's clock: the study's (real, or a virtual one set on it)."""
        return self.study.clock

    @property
    def workers(self) -> int:
        """How many trials a tuning loop keeps in flight on this trainer."""
        return len(self.slots) if self.slots else 1

    def grow(self, slots: list[Slot]) -> None:
        """Run on ``slots`` from the next trial on (more workers than before: the trials in
        flight keep theirs, their indices among the new ones)."""
        with self._slot_lock:
            if self.slots is not None and len(slots) < len(self.slots):
                raise ValueError(f"{len(slots)} workers cannot replace {len(self.slots)}")
            self.slots = slots

    def prestart(self) -> None:
        """Let the backend get ready now (the fork server loads torch and a table's rows in its
        own process, in the background), so that the first trial does not wait for it: a
        session calls this before its first decision, whose LLM call overlaps the 2-5 s."""
        self.backend.prestart(self.workload)

    def close(self) -> None:
        """End what the backend keeps between trials (its workers): the session is over."""
        self.backend.close()

    def _take_slot(self, wait: bool = False) -> Slot:
        """A free worker's slot; ``wait``: until one is free (a trial in flight ends; a cancel
        or the session's time budget ending raise :class:`BudgetSpent` instead)."""
        with self._slot_lock:
            if self.slots is None:
                slot = Slot(next(i for i in range(len(self._busy) + 1) if i not in self._busy))
            else:
                while (slot := next((s for s in self.slots if s.index not in self._busy),
                                    None)) is None:
                    if not wait:
                        raise RuntimeError(f"all {len(self.slots)} workers are busy")
                    self._slot_freed.wait()
                    if self.cancel.is_set() or (self.stop_at is not None
                                                and self.clock.now() > self.stop_at):
                        raise BudgetSpent("no worker came free before the session ended")
            self._busy.add(slot.index)
            return slot

    def start(self, config: dict[str, Any], *, tool: str, fidelity: int | None = None,
              meta: dict[str, Any] | None = None, allow_repeat: bool = True,
              limit: int | None = None, landed: queue.SimpleQueue | None = None,
              hold: bool = False, wait: bool = False) -> TrainingJob:
        """Validate, record a running trial on a free worker, start it and return at once.

        ``landed``: the trial's id is put there once it is recorded finished (how a caller with
        several trials in flight waits for whichever ends first). ``hold`` (real clock): its
        result, once in, is recorded only when the caller releases it (``job.release()``), its
        worker free meanwhile; how a caller takes results in an order of its own, whichever
        trial ends first (the session's ``in_order``); a cancel releases it. ``wait``: with
        every worker busy, wait for one (else that is an error)."""
        fidelity = fidelity if fidelity is not None else self.workload.default_fidelity
        if self.workload.evaluates is not None and self.study.space.is_valid(config):
            evaluated = self.workload.evaluates(config)
            if evaluated != config:  # e.g. the table's grid point: what the value belongs to
                meta = {**(meta or {}), "evaluated": evaluated}
        slot = self._take_slot(wait)
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
        if hold and not self.clock.virtual:  # a virtual clock lands trials in a fixed order
            job._held = threading.Event()
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
        with self._slot_lock:  # a start waiting for a worker gives up
            self._slot_freed.notify_all()
        for job in list(self._jobs):
            job.release()
            if job._on_cancel is not None and not job.done():
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
            self._supervise(job, fidelity, start)
        except BaseException as exc:  # noqa: BLE001 - recorded as the trial's failure
            if isinstance(exc, sqlite3.Error):  # the ledger cannot be written: a full disk
                self._end_session(exc, f"the ledger cannot be written: {exc}")
            if not job._recorded:
                try:
                    self._record(job, start, "failed", {}, f"supervisor error: {describe(exc)}")
                except sqlite3.Error as again:
                    self._end_session(again, f"the ledger cannot be written: {again}")

    def _end_session(self, exc: ClockError | sqlite3.Error, reason: str) -> None:
        """The session ends on ``exc`` (the first such error wins): every trial is cancelled."""
        if self.fatal is None:
            self.fatal = exc
            self.cancel.cancel(reason)

    def _supervise(self, job: TrainingJob, fidelity: int | None, start: float) -> None:
        """Start the trial on the backend and poll it until it ends or must stop."""
        reports = _Reports(self, job)
        log = trial_log(self.study.ledger.path, self.study.name, job.number)
        run = self.backend.start(Launch(self.workload, job.config, fidelity, job.seed,
                                        job.trial_id, job.slot, log, job.number), reports)
        deadline, ending, halt = start + self.time_limit_s, None, None
        try:
            while ending is None:
                if (halt := self._halt(job, deadline, reports.pruned_at)) is not None:
                    run.cancel()
                    break
                ending = run.poll(0.05)
        finally:
            run.close()
        job._cpu_s = run.cpu_s
        if ending is not None and ending[0] == "done" and isinstance(ending[1], dict) \
                and PAYLOAD in ending[1]:  # a define-by-run trial: what it suggested and used
            record = ending[1].pop(PAYLOAD)
            if record.pop("pruned") and reports.pruned_at is None:  # it raised TrialPruned
                reports.pruned_at = self.clock.now()
            self.study.annotate(job.trial_id, **record)
        if ending is None:
            assert halt is not None
            status, metrics, error = halt[0], {}, halt[1]
        elif ending[0] == "error" and (job._cancel.is_set() or self.cancel.is_set()):
            status, metrics, error = "failed", {}, self._why(job)  # e.g. Ctrl-C in the objective
        elif ending[0] == "done":
            status, metrics, error = self._judge(ending[1], reports.pruned_at is not None)
        else:
            status, metrics, error = ("pruned", {}, None) if ending[0] == "pruned" else \
                ("failed", {}, ending[1])
        if keep_log(log):
            self.study.annotate(job.trial_id, log=str(log))
        if run.ran_s is not None and not self.clock.virtual:  # from when the objective began
            start = max(start, self.clock.now() - run.ran_s)
        self._record(job, start, status, metrics, error)

    def _why(self, job: TrainingJob) -> str:
        """Why a cancelled trial stopped: its own cancellation's reason, or the session's."""
        return job._reason if job._cancel.is_set() else self.cancel.reason

    def _halt(self, job: TrainingJob, deadline: float, pruned_at: float | None
              ) -> tuple[str, str | None] | None:
        """Whether a trial in flight must stop now, as (status, reason): cancelled, the
        session's time budget spent, its time limit passed, or pruned and past its grace."""
        if job._cancel.is_set() or self.cancel.is_set():
            return "failed", self._why(job)
        now = self.clock.now()
        if self.stop_at is not None and now > self.stop_at and not pruned_at:
            return "failed", "stopped: the session's time budget ran out during this trial"
        if now > deadline or (pruned_at and now > pruned_at + self.prune_grace_s):
            if pruned_at:
                return "pruned", None
            return "failed", (f"timeout: exceeded the {self.time_limit_s:g}s time limit "
                              "(--trial-timeout)")
        return None

    def _record(self, job: TrainingJob, start: float, status: str, metrics: dict[str, float],
                error: str | None) -> None:
        """The trial's result is in: it lands now (real clock), or when its simulated duration
        has passed on the virtual clock."""
        job._recorded = True
        if not self.clock.virtual:
            end = self.clock.now()
            if job._held is not None and not self.cancel.is_set():  # the caller takes
                self._free(job)  # results in its own order; its worker is free now
                job._held.wait()  # (a cancel releases every job)
            self._land(job, start, end, status, metrics, error)
            return
        try:
            end, status, error = landing(start, status, metrics, error, self.workload.duration,
                                         self.workload.ref, self.time_limit_s, self.stop_at)
        except ClockError as exc:  # the session ends on it; the trial lands failed, now
            end, status, error = self.clock.now(), "failed", str(exc)
            self._end_session(exc, str(exc))
        job._on_cancel = lambda: self.clock.at(self.clock.now(), lambda at: self._land(
            job, start, at, "failed", {}, self._why(job)))
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
                                                 error=error, ended_at=end, started_at=start)
                usage = {} if job._cpu_s is None else {"cpu_s": round(job._cpu_s, 3)}
                self.study.log_timing("train", start, end, trial_number=result.number,
                                      status=status, tool=result.tool, worker=job.slot.index,
                                      **usage)
                job._result.append(result)
            finally:  # the worker is free and the waiter told, even if the ledger failed
                self._free(job)
                job._done.set()
                if job._landed is not None:
                    job._landed.put(job.trial_id)

    def _free(self, job: TrainingJob) -> None:
        """The trial's worker is free, once (a held trial frees it before it lands, and its
        slot may run another trial by then)."""
        with self._slot_lock:
            first, job._freed = not job._freed, True
        if first:
            self._release(job.slot)

    def _release(self, slot: Slot) -> None:
        with self._slot_lock:
            self._busy.discard(slot.index)
            self._slot_freed.notify_all()

    def _judge(self, metrics: Any, pruned: bool) -> tuple[str, dict[str, float], str | None]:
        return judge(metrics, self.workload.metric, pruned)


class _Reports:
    """The one report/prune handler, whatever backend runs the trial: a finite intermediate
    value is recorded and shown, then answered with whether to stop (once pruned, always); a
    non-finite one stops the trial unrecorded."""

    def __init__(self, trainer: Trainer, job: TrainingJob) -> None:
        self.trainer, self.job = trainer, job
        self.should_prune = trainer.pruner.for_trial(job.trial_id) if trainer.pruner else None
        self.pruned_at: float | None = None  # when pruning was first decided (session clock)

    def __call__(self, step: int, value: float) -> bool:
        if not math.isfinite(value):
            return True
        t = self.trainer
        t.study.report(self.job.trial_id, step, value)
        t._tell("report", self.job.number, {"step": step, "value": value})
        if self.pruned_at is None and self.should_prune and self.should_prune(step, value):
            self.pruned_at = t.clock.now()
        return self.pruned_at is not None
