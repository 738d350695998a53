"""Blocking sessions inside async graph runs, stoppable by the run's cancellation.

A LangGraph server runs graphs with ``astream`` and cancels a run (``runs.cancel``) by cancelling
its asyncio task. A sync node runs in a thread the cancellation cannot reach, so its trials would
go on with no owner. Here the session runs in a thread with a :class:`~asap.tools.types.Cancel`:
when the task is cancelled, the token is set, the session stops its trials (recorded as failed
with the reason) and ends, and only then does the cancellation go on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TypeVar

from asap.tools.types import Cancel

T = TypeVar("T")
CANCELLED = "cancelled: the run was cancelled"


class Stopped(RuntimeError):
    """The session in the thread stopped on its cancellation (a KeyboardInterrupt there would
    escape asyncio's task machinery and stop the event loop itself)."""


async def cancellable(work: Callable[[Cancel], T], reason: str = CANCELLED) -> T:
    """Run ``work(cancel)`` in a thread (the run's context copied, so LangGraph's stream writer
    and runtime work there); a cancelled task sets ``cancel`` and waits for ``work`` to end."""
    cancel = Cancel()

    def run() -> T:
        try:
            return work(cancel)
        except KeyboardInterrupt as exc:
            raise Stopped(str(exc)) from None

    task = asyncio.ensure_future(asyncio.to_thread(run))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        cancel.cancel(reason)
        # The session records its trials, then returns or stops; a second cancellation of
        # the run (a server's interrupt after its cancel) does not cut that wait short.
        while not task.done():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(task)
        raise
