"""In-process trials on the thread that started the session, while the session runs beside it.

Why: an objective that runs in this process (``isolate=False``) on a thread of its own is slowed
whenever another thread of the process already holds an OpenMP team, as the caller's does once
it has run torch (a user trying the objective once before tuning it; a script that ran another
study first). libgomp then counts more threads than cores and stops its workers spinning between
parallel regions, so each of a small model's many small regions waits for threads to wake: more
than twice the time (docs/decision-loop.md, "Measurements behind the defaults"). On the caller's
thread the objective uses the team that thread already has.
"""

from __future__ import annotations

import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
_Call = tuple[contextvars.Context, Callable[[], Any], Future]


class CallerThread:
    """Calls handed over by other threads, run on the thread that :meth:`serve` s them."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._stopped = False

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn`` on the serving thread, in the submitter's context variables; its result
        (or exception) comes back in the future. After :meth:`stop` it fails at once."""
        future: Future[T] = Future()
        with self._lock:
            if self._stopped:
                future.set_exception(_gone())
            else:
                self._calls.put((contextvars.copy_context(), fn, future))
        return future

    def serve(self, around: Callable[[], contextlib.AbstractContextManager[Any]]
              = contextlib.nullcontext) -> None:
        """Run the calls as they come, each inside ``around()``, until :meth:`stop`. A
        KeyboardInterrupt (Ctrl-C lands on this thread) fails the call it interrupted and ends
        serving, raised."""
        try:
            while (item := self._calls.get()) is not None:
                context, fn, future = item
                if future.set_running_or_notify_cancel():
                    try:
                        with around():
                            future.set_result(context.run(fn))
                    except BaseException as exc:
                        future.set_exception(exc)
                        if isinstance(exc, KeyboardInterrupt):
                            raise
        finally:
            with self._lock:
                self._stopped = True
                self._drain()

    def stop(self) -> None:
        """End :meth:`serve` once the calls queued before this have run."""
        self._calls.put(None)

    def _drain(self) -> None:
        """Fail the calls that will not run, so no submitter waits for them."""
        while True:
            try:
                item = self._calls.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item[2].set_exception(_gone())


def _gone() -> RuntimeError:
    return RuntimeError("the session's thread no longer runs trials")
