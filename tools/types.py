"""Plain data at the bottom of the house: a trial as stored, its states, a study's direction.

Everything above (the ledger, the optimizers, the agent) speaks in these types; they import
nothing of asap, as ``optuna/trial/_frozen.py`` sits below Optuna's storages and samplers.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Direction = Literal["minimize", "maximize"]
Status = Literal["running", "complete", "failed", "pruned"]
TimingKind = Literal["llm_call", "tool_call", "train", "speculation", "selftune"]
# The ledger's events: decisions worth keeping, each kind written in one place and read by name.
EventKind = Literal[
    "session", "decision", "fallback", "guard_retry", "guard_reminder", "llm_error", "llm_price",
    "llm_breaker", "protocol", "speculation", "ahead", "warmup", "selftune", "context_shrink",
    "stop", "space_exhausted", "repeat_avoided", "prior_excluded", "tool_failed", "tool_choice",
    "mirror_error", "workers"]
FINISHED: tuple[Status, ...] = ("complete", "failed", "pruned")


@dataclass(frozen=True)
class Trial:
    """One trial as stored; ``value`` is the objective metric, or None if it has none."""

    id: int
    number: int
    config: dict[str, Any]
    tool: str
    status: Status
    value: float | None
    metrics: dict[str, float]
    intermediate: dict[int, float]
    error: str | None
    fidelity: int | None
    started_at: float
    ended_at: float | None
    duration: float | None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def evaluated(self) -> dict[str, Any]:
        """The configuration the value belongs to: ``config``, or the grid point a table
        workload snapped it to (kept in ``meta``)."""
        return self.meta.get("evaluated", self.config)


def better(direction: Direction, a: float, b: float | None) -> bool:
    """True when value ``a`` is strictly better than ``b`` under ``direction``."""
    if b is None:
        return True
    return a > b if direction == "maximize" else a < b


def config_key(config: dict[str, Any]) -> str:
    """One string per validated configuration (JSON in the space's order): how the ledger stores
    it, how repeats are found, how a told trial is matched to a pending ask."""
    return json.dumps(config)


# A study's name becomes file names (reports, the chat's space files) and comes from people, an
# LLM's extraction and the LangGraph server API: letters, digits, dot, underscore and dash only,
# starting with a letter or digit (no path separators, no "..", no hidden files).
DEFAULT_DB = "asap.db"  # the ledger every command reads and writes unless told another
STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # tab and newline are text


def printable(text: str) -> str:
    """``text`` with its control characters shown as ``?`` (tab and newline kept): stored text
    from a workload or an old ledger, shown on a terminal (where ESC starts a sequence) or in a
    plot (where no font has a glyph for it)."""
    return _CONTROL.sub("?", text)


def safe_name(text: str) -> str:
    """``text`` as a study or file name: each run of other characters becomes one dash."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip(".-_")[:128]
    return name or "study"


class Terminated(KeyboardInterrupt):
    """SIGTERM (what schedulers, systemd and container runtimes send): a session stops as on
    Ctrl-C (trials in flight marked, the session logged) and the CLI exits 143."""


class TrialPruned(Exception):  # noqa: N818 - Optuna's name, which people already raise
    """Raised by an objective to stop its trial as pruned (``raise asap.TrialPruned()``, after
    ``report`` said so or on its own judgement); Optuna's ``optuna.TrialPruned`` works alike."""


def is_pruned(exc: BaseException) -> bool:
    """``exc`` is a prune (asap's or Optuna's ``TrialPruned``: matched by name, so the worker
    needs no Optuna import)."""
    return type(exc).__name__ == "TrialPruned"


class Cancelled(KeyboardInterrupt):
    """A session stopped through its :class:`Cancel` (the chat's Ctrl-C on another thread, a
    LangGraph server's ``runs.cancel``): handled like Ctrl-C, everything finished is saved."""


class Cancel:
    """A cancellation a session checks: set from any thread, it stops the trials in flight
    (each recorded as failed with the reason) and the tuning graph before its next round.

    Why not a signal: a session may run on a worker thread (LangGraph runs nodes there; a server
    runs many sessions), where no signal handler can be installed.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._halt = threading.Event()
        self.reason = "cancelled"
        self._listeners: list[Callable[[], None]] = []

    def halt(self) -> None:
        """Start no new trial; the ones running finish and the session ends as usual
        (Optuna's ``study.stop()``)."""
        self._halt.set()

    def halted(self) -> bool:
        return self._halt.is_set()

    def cancel(self, reason: str = "cancelled") -> None:
        self.reason = reason
        self._event.set()
        for fn in list(self._listeners):
            fn()

    def listen(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` when cancelled (a virtual clock's trials have no worker polling)."""
        self._listeners.append(fn)

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def clear(self) -> None:
        self._event.clear()
        self.reason = "cancelled"


def redact(text: str, url: str | None = None) -> str:
    """``text`` with the password of ``url`` (default: ``text`` is the URL) shown as ``***``:
    error lines name the URL a person gave, never the secret in it."""
    try:
        parts = urllib.parse.urlsplit(url if url is not None else text)
        password = parts.password
    except ValueError:  # not a URL at all: nothing to find
        return text
    if not password:
        return text
    # The password field where a URL's netloc holds it (user:password@), not every occurrence
    # of its text: "ostgres" inside "postgresql", or "a" inside every word, stay as they are.
    userinfo = parts.netloc.rpartition("@")[0]
    user = userinfo.partition(":")[0]
    return text.replace(f"{user}:{password}@", f"{user}:***@")
