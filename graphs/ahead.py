"""Decisions asked ahead: while a plan's rounds train, the next plan's decision is asked in the
background, and no round waits for it.

Why: the self-tuner sets ``plan`` > 1 when the LLM is slower than training. Speculating then
cannot hide a decision (the trial it overlaps ends first, and the next one waits for the call),
and the call at the end of each plan reads every row the plan added uncached
(docs/speculation-and-selftuning.md has the numbers). A plan's decision is a policy ("the prior's order", or "that
tool"), not a configuration, so it can be asked on the results in at its first round and applied
when the plan runs out: no prediction to verify. If it has not returned by then, the plan holds for another round; once it
is back, idle rounds warm the newest log rows in the server's cache, so the next decision reads
only the rows since the last warm-up (one or two) and its block.

The first round is asked the same way: with no result and no prior there is nothing to decide
from, so it trains the prior's pick while the LLM reads the prompt cold (the largest exposed
call of a session), and that answer decides round 2.

One :class:`Ahead` per run (in the :class:`~asap.graphs.context.TuneContext`), one background call
at a time; the graph's ``finish`` node cancels whatever is still asked when the session ends
(and waits for it: a prompt is read to its end, and the embedded server cannot stop under a
request).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage

from asap.tools.hpo.portfolio import Offer
from asap.tools.trials.clock import Clock


@dataclass(frozen=True)
class Asked:
    """A decision asked ahead: the round it was asked at, what that round offered, its answer."""

    round: int
    offers: list[Offer]
    current: str  # that round's prompt block
    answer: BaseMessage | None = None
    error: BaseException | None = None


class Ahead:
    """The run's background LLM work, one call at a time: a decision asked ahead, held until a
    round takes it, or a cache warm-up."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()  # background work overlaps training: on its books
        self._lock = threading.Lock()
        self._running: Future[Any] | None = None  # the background call, of either kind
        self._decision: Future[Asked] | None = None  # asked and not taken yet
        self.cancel = threading.Event()

    def busy(self) -> bool:
        """A call is running."""
        with self._lock:
            return not self._idle()

    def asked(self) -> bool:
        """A decision was asked and not taken yet (running, or returned and held)."""
        with self._lock:
            return self._decision is not None

    def ask(self, asked: Asked, call: Callable[[threading.Event], BaseMessage]) -> bool:
        """Ask a decision in the background (``call`` gets the cancel event), after the warm-up
        running, if any; False when a decision is asked already.

        A decision does not wait for a round to find the server idle: a warm-up that outlasted
        a few 0.1-s rounds (the CPU busy with trials) kept a plan's rounds from asking until the
        plan had run out, and the next decision went on the critical path."""
        def run() -> Asked:
            try:
                return dataclasses.replace(asked, answer=call(self.cancel))
            except Exception as exc:  # handed to the round that takes it
                return dataclasses.replace(asked, error=exc)
        with self._lock:
            if self._decision is not None:
                return False
            self._decision = self._start(run)
        return True

    def warm(self, call: Callable[[], Any]) -> bool:
        """Warm the cache in the background; False when a call runs."""
        def run() -> None:
            try:
                call()
            except Exception:  # a warm-up that failed costs its cache hit, nothing else
                pass
        with self._lock:
            if not self._idle():
                return False
            self._start(run)
        return True

    def take(self) -> Asked | None:
        """The decision asked ahead, once it has returned (then it is no longer held)."""
        with self._lock:
            if self._decision is None or not self._decision.done():
                return None
            out, self._decision = self._decision.result(), None
            return out

    def close(self) -> None:
        """Cancel what is asked and wait for the running call to end: the session is over."""
        self.cancel.set()
        with self._lock:
            running = self._running
        if running is not None:
            running.result()

    def _idle(self) -> bool:
        return self._running is None or self._running.done()

    def _start(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run ``fn`` in a thread once the call running now has ended (one call at a time)."""
        before, future = self._running, Future()
        self._running = future
        self.clock.begin()  # here, not in the thread: the clock must not jump before it runs

        def run() -> None:
            try:
                if before is not None:
                    before.result()
                future.set_result(fn())
            finally:
                self.clock.end()
        threading.Thread(target=run, name="asap-ahead", daemon=True).start()
        return future
