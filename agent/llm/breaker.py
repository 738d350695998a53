"""A circuit breaker for the LLM endpoint: a dead or hanging server costs a few calls, not all.

Why: each call waits the request timeout, and the client retries twice, so a hanging endpoint
cost 375 s for two trials, again every round. After ``failures`` consecutive failed calls the
circuit opens: rounds are decided by the fallback (the prior's pick) without asking. After
``cooldown`` rounds one call probes the endpoint again (half-open); a success closes the
circuit, a failure reopens it for twice as long (up to ``max_cooldown``). Counting rounds, not
seconds, keeps it deterministic and independent of the machine's speed.

Thread-safe: the speculative branch asks from another thread. It only ever asks a closed
circuit (:meth:`closed`): a probe belongs on the critical path, where its answer is used.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Breaker:
    """Consecutive LLM failures open the circuit; see the module docstring."""

    def __init__(self, failures: int = 2, cooldown: int = 4, max_cooldown: int = 32,
                 on_change: Callable[[str, str], None] | None = None) -> None:
        if failures < 1 or cooldown < 1 or max_cooldown < cooldown:
            raise ValueError("failures and cooldown must be >= 1, max_cooldown >= cooldown")
        self.failures, self.cooldown, self.max_cooldown = failures, cooldown, max_cooldown
        self.on_change = on_change  # (state, reason): the ledger event and the live display
        self._lock = threading.Lock()
        self._failed = 0  # consecutive failures
        self._skip = 0  # rounds still decided without the LLM while open
        self._wait = cooldown  # the next opening's length
        self._open = False

    def closed(self) -> bool:
        with self._lock:
            return not self._open

    def allow(self) -> bool:
        """May this round ask the LLM? Open: no, until the cooldown's rounds have passed, then
        once (the probe)."""
        with self._lock:
            if not self._open:
                return True
            if self._skip > 0:
                self._skip -= 1
                return False
            return True  # half-open: this call is the probe

    def success(self) -> None:
        with self._lock:
            was_open, self._open, self._failed, self._wait = self._open, False, 0, self.cooldown
        if was_open:
            self._tell("closed", "the endpoint answered the probe")

    def failure(self, reason: str) -> None:
        with self._lock:
            self._failed += 1
            if self._open:  # the probe failed: stay open, twice as long
                self._wait = min(self.max_cooldown, self._wait * 2)
            elif self._failed < self.failures:
                return
            self._open, self._skip = True, self._wait
            wait = self._wait
        self._tell("open", f"{self._failed} failed LLM calls in a row ({reason}); the prior "
                           f"decides the next {wait} rounds, then one call probes the endpoint")

    def _tell(self, state: str, reason: str) -> None:
        if self.on_change is not None:
            self.on_change(state, reason)
