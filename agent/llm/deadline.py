"""A total deadline for a call to another server, whatever pace it keeps.

Why: a client's timeout bounds each socket read, not the request, so a server that answers one
byte a second holds a session for ever (0 trials after 600 s, measured); a deadline on the whole
call turns that into an error the session counts and gets past.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from asap.tools.types import Cancel


class DeadlineExceeded(TimeoutError):
    """A call did not complete within its total deadline (a server answering a byte at a time
    never trips the client's timeout, which bounds each read, not the request)."""


class Interrupted(RuntimeError):
    """The session a call belongs to was cancelled while the call was waited for."""


# The cancellation of the session a call is made for, seen by every thread of its graph: its
# calls stop being waited for once it is set (a served run's cancel, Ctrl-C in a chat).
session_stop: contextvars.ContextVar[Cancel | None] = contextvars.ContextVar(
    "session_stop", default=None)


T = TypeVar("T")
POLL_S = 0.2  # how often a call waited for looks at its session's cancellation


def within(seconds: float | None, fn: Callable[[], T], what: str = "the LLM call") -> T:
    """``fn()``, or :class:`DeadlineExceeded` once ``seconds`` have passed, whatever pace the
    other side keeps, or :class:`Interrupted` once the session's cancellation
    (:data:`session_stop`) is set. The call itself runs on in a daemon thread until its socket
    gives up: Python cannot interrupt a blocking read, but the session no longer waits for it."""
    if seconds is None:
        return fn()
    box: list[Any] = []
    done = threading.Event()

    def run() -> None:
        try:
            box.append((True, fn()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            box.append((False, exc))
        done.set()
    # The caller's context goes along: LangChain's callbacks and LangGraph's stream writer
    # live in context variables.
    threading.Thread(target=contextvars.copy_context().run, args=(run,), name="asap-deadline",
                     daemon=True).start()
    stop = session_stop.get()
    if stop is None:
        if not done.wait(seconds):
            raise DeadlineExceeded(f"{what} did not complete within {seconds:g} s")
    else:  # the deadline, or the session's cancellation, whichever comes first
        end = time.monotonic() + seconds
        while not done.wait(min(POLL_S, max(0.0, end - time.monotonic()))):
            if stop.is_set():
                raise Interrupted(f"{what} was abandoned: the session was cancelled")
            if time.monotonic() >= end:
                raise DeadlineExceeded(f"{what} did not complete within {seconds:g} s")
    ok, value = box[0]
    if ok:
        return value
    raise value
