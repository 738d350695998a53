"""A trial in flight (:class:`TrainingJob`), its seed, and how what it returned is judged.

Why apart from the trainer: a caller holds jobs (a tuning loop with several trials in flight
waits on whichever lands first) without needing the trainer's supervision code.
"""

from __future__ import annotations

import math
import numbers
import queue
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from asap.tools.trials.clock import Clock
from asap.tools.trials.resources import Slot
from asap.tools.trials.workers import plain
from asap.tools.types import Trial


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
    _cpu_s: float | None = None  # the CPU seconds it used, where its backend measured them
    _land_lock: threading.Lock = field(default_factory=threading.Lock)
    _held: threading.Event | None = None  # set: it may land (None: it lands when it ends)
    _freed: bool = False  # its worker's slot is free again (the trainer's, under its lock)

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

    def release(self) -> None:
        """Let a held trial land (``Trainer.start(hold=True)``); nothing for one not held."""
        if self._held is not None:
            self._held.set()

    def cancel(self, reason: str = "cancelled") -> None:
        """Kill the worker; the trial is recorded as failed with ``reason``."""
        self._reason = reason
        self._cancel.set()
        self.release()
        if self._on_cancel is not None:
            self._on_cancel()


def judge(metrics: Any, metric: str, pruned: bool) -> tuple[str, dict[str, float], str | None]:
    """Check what the workload returned; a missing or non-numeric metric fails the trial."""
    name, metrics = metric, plain(metrics)  # numpy, torch: plain numbers
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
