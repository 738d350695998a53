"""One optimizer interface: ``ask`` for proposals, ``tell`` any finished trial.

Every HPO library is an adapter to :class:`Optimizer`. ``tell`` takes trials the optimizer never
asked for, because in asap-hpo the LLM picks whose proposal runs: a tool that only learned from its
own proposals would stay blind to most of the history.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

from asap.tools.hpo.space import Space
from asap.tools.types import Direction, Trial, config_key


@contextlib.contextmanager
def quiet(ignored: dict[str, Any]) -> Iterator[None]:
    """``warnings.filterwarnings("ignore", **ignored)`` for the ``with`` block only.

    Scoped, never a process-wide filter at import: the libraries' advice is noise inside asap's
    adapters but stays visible to the user's own code.
    """
    with warnings.catch_warnings():
        if ignored:
            warnings.filterwarnings("ignore", **ignored)
        # Optuna logs "A new study created in memory ..." at INFO for every internal study
        # (two per session): asap's, not the user's; their own studies stay as they set them.
        hush, loggers = _AboveInfo(), [logging.getLogger(name) for name in _CHATTER]
        for logger in loggers:
            logger.addFilter(hush)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeFilter(hush)


_CHATTER = ("optuna.storages._in_memory", "optuna.storages._rdb.storage")


class _AboveInfo(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO


class Optimizer(ABC):
    """Base class for the HPO tools' proposers.

    Subclasses implement :meth:`_ask` and :meth:`_tell`; the base class keeps the pending asks so
    a subclass can tell "my own proposal came back" apart from "a foreign trial".
    """

    library: str = ""
    algorithms: tuple[str, ...] = ()
    warnings_ignored: dict[str, Any] = {}  # the library's warnings silenced inside ask and tell

    def __init__(self, space: Space, direction: Direction, algorithm: str, seed: int = 0,
                 custom: bool = False) -> None:
        if not custom and algorithm not in self.algorithms:  # custom: the user's own object
            raise ValueError(f"unknown {self.library} algorithm {algorithm!r}; "
                             f"choose one of {list(self.algorithms)}")
        self.space = space
        self.direction = direction
        self.algorithm = algorithm
        self.seed = seed
        self.n_told = 0
        self._pending: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return f"{self.library}:{self.algorithm}"

    @classmethod  # noqa: B027 - optional hook, no-op by default
    def load(cls) -> None:
        """Import what this library's first optimizer and first ask need (nothing here: a
        library imported with its adapter's module), so a caller can pay it ahead, while a
        trial trains (:func:`asap.tools.hpo.portfolio.load_in_background`)."""

    def ask(self, n: int = 1) -> list[dict[str, Any]]:
        """Return ``n`` configurations, each valid in the space."""
        out = []
        for _ in range(n):
            with quiet(self.warnings_ignored):
                config, handle = self._ask()
            config = self.space.validate(config)
            self._pending[config_key(config)] = handle
            out.append(config)
        return out

    def tell(self, trial: Trial) -> None:
        """Learn from a finished trial, whoever proposed it."""
        handle = self._pending.pop(config_key(trial.config), None)
        with quiet(self.warnings_ignored):
            self._tell(trial, handle)
        self.n_told += 1

    def pend(self, trial: Trial) -> None:
        """A trial started that this optimizer did not ask for: let the library see it as running
        (Optuna's constant liar counts running trials), so N workers do not get N copies of one
        proposal. Its result comes later through :meth:`tell`. A library that cannot hold a
        foreign running point (Nevergrad) ignores it; its own asked-not-told points stay pending."""
        key = config_key(trial.config)
        if key in self._pending:
            return  # its own proposal: already pending in the library
        with quiet(self.warnings_ignored):
            handle = self._pend(trial)
        if handle is not None:
            self._pending[key] = handle

    def discard(self, config: dict[str, Any]) -> None:
        """A proposal that will not be trained (another tool's won the round): close it, so a
        library that counts running trials does not wait on it forever."""
        handle = self._pending.pop(config_key(config), None)
        if handle is not None:
            with quiet(self.warnings_ignored):
                self._discard(handle)

    def _pend(self, trial: Trial) -> Any | None:
        """A handle for a foreign running trial, or None when the library cannot hold one."""
        return None

    def _discard(self, handle: Any) -> None:  # noqa: B027 - optional hook, no-op by default
        """Close an asked proposal nobody will train (nothing by default)."""

    def loss(self, value: float) -> float:
        """The value as a loss to minimize (libraries like Nevergrad only minimize)."""
        return -value if self.direction == "maximize" else value

    @abstractmethod
    def _ask(self) -> tuple[dict[str, Any], Any]:
        """One proposal and an opaque handle the library needs to tell it back."""

    @abstractmethod
    def _tell(self, trial: Trial, handle: Any | None) -> None:
        """Tell one finished trial; ``handle`` is None when the trial was not asked here."""
