"""The trials in flight: one :class:`InFlight` channel per trial, kept by the run's
:class:`Flights`.

Why its own module: it is the one thing the graph's two parallel branches share while a trial
trains (the job, the prediction, the chained level, the cancel signal), lock-guarded; the
graph's state itself is only ever written by LangGraph between steps.
"""

from __future__ import annotations

import queue
import threading

from asap.tools.trials.clock import Clock
from asap.tools.trials.job import TrainingJob


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
