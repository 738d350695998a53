"""The session's clock: real time, or a virtual clock on which hours of training pass in seconds.

Why a virtual clock: on a tabular benchmark a configuration's ``train_time`` decides a method's
wall-clock far more than how many trials it runs (HPOBench australian: 3.9 s median, 8,563 s
max), and sleeping it (``--time-scale``) costs hours or, scaled down, measures nothing but the
LLM. Like Syne Tune's simulator backend and its time keeper, the virtual clock charges each
trial its simulated duration and sleeps not at all.

How it charges the agent: virtual time flows at the real rate, so every piece of the agent's
own work (an LLM call, the tools' asks, the prior, bookkeeping) costs its measured duration; and
when the only thing left is to wait for a trial (a thread in :meth:`Clock.wait`), no work that
overlaps training in the real system is running (:meth:`Clock.busy`: speculative calls,
decisions asked ahead, warm-ups) and no trial's result is still being computed
(:meth:`Clock.hold`), the clock jumps to the earliest scheduled landing. Work that overlaps a
trial is so charged only for the part that outlasts it: the clock reaches the landing while that
work still runs. Landings happen in time order, whatever order their results were computed in:
with N workers this is a discrete-event simulation.

Example::

    clock, landed = VirtualClock(), threading.Event()
    clock.hold()                                        # a trial's result is being computed
    clock.at(clock.now() + 3600, lambda t: landed.set(), held=True)  # it lands in an hour
    clock.join(landed)                                  # at once, and an hour later on the clock
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Literal, TypeVar

ClockName = Literal["real", "virtual"]
CLOCKS: tuple[ClockName, ...] = ("real", "virtual")
T = TypeVar("T")


class ClockError(ValueError):
    """The virtual clock cannot price a trial: its workload reports no usable duration."""


class Clock:
    """Real time: ``now()`` is ``time.time()``, waits are plain waits. The interface every
    clock implements; the virtual clock adds scheduling."""

    name: ClockName = "real"

    @property
    def virtual(self) -> bool:
        return self.name == "virtual"

    def now(self) -> float:
        """Seconds since the epoch on this clock."""
        return time.time()

    def take(self, q: queue.SimpleQueue[T]) -> T:
        """The next item of ``q`` (a trial that landed), blocking until there is one: the
        caller has nothing else to do meanwhile."""
        return q.get()

    def join(self, event: threading.Event) -> None:
        """Block until ``event`` is set (a trial landed)."""
        event.wait()

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Agent work that overlaps training (it runs while trials train)."""
        yield

    def begin(self) -> None:
        """Overlapping work starts now, to end in another thread with :meth:`end`."""

    def end(self) -> None:
        """The overlapping work begun with :meth:`begin` is over."""

    def hold(self) -> None:
        """A trial's result is being computed: its landing is not scheduled yet."""

    def at(self, when: float, fn: Callable[[float], None], *, held: bool = False) -> None:
        """Call ``fn(when)`` once the clock reaches ``when`` (``held``: this is the landing of
        a trial :meth:`hold` announced). Real time runs it now: training took real time."""
        fn(when)

    def close(self) -> None:
        """Stop the clock's thread, if it has one."""


class TimeSource:
    """Where a virtual clock's seconds come from: the machine's monotonic clock. Tests pass a
    source they advance by hand, so that the agent's work costs exactly what they say."""

    def monotonic(self) -> float:
        return time.monotonic()

    def timeout(self, seconds: float) -> float | None:
        """How long the keeper may sleep for ``seconds`` of this source (None: until woken)."""
        return max(seconds, 0.0)

    def attach(self, wake: Callable[[], None]) -> None:
        """``wake()`` is to be called whenever this source's time moves by other means."""


class VirtualClock(Clock):
    """Simulated time: real-rate flow for the agent's work, jumps over idle training.

    ``origin``: where the clock starts (default: now; a resumed study continues from its last
    time stamp)."""

    name: ClockName = "virtual"

    def __init__(self, origin: float | None = None, source: TimeSource | None = None) -> None:
        self._source = source or TimeSource()
        self._offset = (time.time() if origin is None else origin) - self._source.monotonic()
        self._cond = threading.Condition()
        self._events: list[tuple[float, int, Callable[[float], None]]] = []
        self._seq = itertools.count()
        self._busy = 0  # overlapping work and results being computed
        self._firing = False  # a landing is being recorded: the next waits for it
        self._closed = False
        self._source.attach(self._wake)
        self._keeper = threading.Thread(target=self._keep, name="asap-clock", daemon=True)
        self._keeper.start()

    def now(self) -> float:
        return self._source.monotonic() + self._offset

    def take(self, q: queue.SimpleQueue[T]) -> T:
        self.wait(lambda: not q.empty())
        return q.get_nowait()

    def join(self, event: threading.Event) -> None:
        self.wait(event.is_set)

    def wait(self, ready: Callable[[], bool]) -> None:
        """Block until ``ready()``; while every thread of the agent waits, the clock jumps to
        the next landing. The waiting thread makes the jump itself when it can (no hop to the
        keeper thread: on a loaded machine each hop cost milliseconds a trial)."""
        with self._cond:
            while not ready():
                if self._closed:
                    raise RuntimeError("the virtual clock was closed while a trial was awaited")
                if (due := self._next(jump=True)) is not None:
                    self._cond.release()
                    try:
                        self._fire(*due)
                    finally:
                        self._cond.acquire()
                    self._landed()
                    continue
                self._cond.wait()  # a result scheduled, overlapping work ended, a landing

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        self.begin()
        try:
            yield
        finally:
            self.end()

    def begin(self) -> None:
        with self._cond:
            self._busy += 1

    def end(self) -> None:
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()

    def hold(self) -> None:
        self.begin()

    def at(self, when: float, fn: Callable[[float], None], *, held: bool = False) -> None:
        with self._cond:
            heapq.heappush(self._events, (when, next(self._seq), fn))
            if held:  # in the same step: no moment with neither the hold nor the event
                self._busy -= 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if threading.current_thread() is not self._keeper:
            self._keeper.join(5)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _next(self, jump: bool = False) -> tuple[float, Callable[[float], None]] | None:
        """The event to fire now (popped, the clock moved to it), under the lock: one that is
        due, or with ``jump`` (the caller waits for a landing) the next one while nothing
        overlapping runs and no result is being computed (the jump over idle training); None
        otherwise. One firing at a time, so no later landing overtakes an earlier one."""
        if self._firing or not self._events or not (self._events[0][0] <= self.now()
                                                    or (jump and not self._busy)):
            return None
        when, _, fn = heapq.heappop(self._events)
        if when > self.now():
            self._offset = when - self._source.monotonic()
        self._firing = True
        return when, fn

    def _fire(self, when: float, fn: Callable[[float], None]) -> None:
        """Run an event's callback (outside the lock)."""
        try:
            fn(when)
        except Exception as exc:  # noqa: BLE001 - a landing's own error is its trial's
            warnings.warn(f"a scheduled landing failed: {type(exc).__name__}: {exc}",
                          stacklevel=1)

    def _landed(self) -> None:
        """After a firing (under the lock): every waiter checks again."""
        self._firing = False
        self._cond.notify_all()

    def _keep(self) -> None:
        """The time keeper: fire each event when its time comes (trials that land while the
        agent works, at the real rate); jumps are the waiting thread's."""
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    if (due := self._next()) is not None:
                        break
                    self._cond.wait(self._source.timeout(self._events[0][0] - self.now())
                                    if self._events else None)
            self._fire(*due)
            with self._cond:
                self._landed()


def landing(start: float, status: str, metrics: dict[str, float], error: str | None,
            duration: str | None, workload: str, limit_s: float, stop_at: float | None
            ) -> tuple[float, str, str | None]:
    """When, and as what, a trial that started at ``start`` lands on the virtual clock: after its
    simulated duration (its ``duration`` metric), cut at its time limit and at the session's
    time budget (``stop_at``), both read on this clock. A failed trial without a duration lands
    at once; a trial that completed without a usable one cannot be priced (ClockError)."""
    seconds = metrics.get(duration) if duration else None
    if seconds is None:
        if status != "failed":
            raise ClockError(f"the virtual clock needs each trial's simulated duration: "
                             f"workload {workload!r} returned no {duration!r} metric")
        seconds = 0.0
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ClockError(f"workload {workload!r} returned a simulated duration "
                         f"{duration}={seconds!r}; it must be a finite number of seconds >= 0")
    end = start + seconds
    if seconds > limit_s:
        end, status, error = start + limit_s, "failed", (
            f"timeout: exceeded the {limit_s:g}s time limit (--trial-timeout, on the virtual "
            "clock)")
    if stop_at is not None and end > stop_at:
        end, status, error = max(stop_at, start), "failed", (
            "stopped: the session's time budget ran out during this trial")
    return end, status, error


def make_clock(name: str, origin: float | None = None) -> Clock:
    """The clock called ``name`` (``real`` or ``virtual``); a clear error for any other."""
    if name == "real":
        return Clock()
    if name == "virtual":
        return VirtualClock(origin)
    raise ClockError(f"unknown clock {name!r}; choose one of {', '.join(CLOCKS)}")
