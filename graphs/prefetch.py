"""The next round's proposals, asked while the current trial trains.

Why: on trials of a second or two, asking four tools (more in the first rounds, where the
libraries load) is a gap in which no trial trains. In the serial loop (one worker, no
speculative branch) the training branch asks them as soon as the trial has started, with that
trial pending in every tool (as a second worker would see it), and the next round takes them if
nothing else has started since. The tools are still told every result, and the prior ranks the
proposals once the trial has landed, on every result: only the tools' proposals lag one result
behind, as asynchronous BO's do.
"""

from __future__ import annotations

import threading

from asap.tools.hpo.portfolio import Offer


class Prefetch:
    """One round's proposals asked ahead, valid while the study's trials are those it saw."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._basis: int | None = None
        self._proposals: list[Offer] | None = None

    def put(self, basis: int, proposals: list[Offer]) -> None:
        """Keep ``proposals``, computed when the study had ``basis`` trials."""
        with self._lock:
            self._basis, self._proposals = basis, proposals

    def take(self, basis: int) -> list[Offer] | None:
        """The proposals, if asked with the study at ``basis`` trials (no trial started
        since); None otherwise. Either way they are gone after this."""
        with self._lock:
            kept, self._proposals = self._proposals, None
            return kept if kept is not None and self._basis == basis else None
