"""The tools' shared state: one optimizer per (library, algorithm), all fed the whole ledger.

Optimizers are created lazily and replay every finished trial on creation, so reopening a study
(a new process) rebuilds their state from the ledger alone; afterwards :meth:`Portfolio.sync`
tells each of them only the trials it has not seen.
"""

from __future__ import annotations

from typing import Any

from asap.agent.ledger import FINISHED, Study
from asap.tools.nevergrad_tool import NevergradOptimizer
from asap.tools.optimizer import Optimizer
from asap.tools.optuna_tool import OptunaOptimizer

LIBRARIES: dict[str, type[Optimizer]] = {"optuna": OptunaOptimizer, "nevergrad": NevergradOptimizer}


class Portfolio:
    """Optimizers bound to one study, kept in sync with its ledger."""

    def __init__(self, study: Study, seed: int = 0) -> None:
        self.study = study
        self.seed = seed
        self._optimizers: dict[str, Optimizer] = {}
        self._told: dict[str, set[int]] = {}

    def optimizer(self, library: str, algorithm: str) -> Optimizer:
        key = f"{library}:{algorithm}"
        if key not in self._optimizers:
            if library not in LIBRARIES:
                raise ValueError(f"unknown library {library!r}; choose one of {list(LIBRARIES)}")
            cls = LIBRARIES[library]
            self._optimizers[key] = cls(self.study.space, self.study.direction, algorithm, self.seed)
            self._told[key] = set()
        self.sync()
        return self._optimizers[key]

    def sync(self) -> int:
        """Tell every optimizer the finished trials it has not seen; returns how many were new."""
        if not self._optimizers:
            return 0
        known = set().union(*self._told.values()) if self._told else set()
        trials = [t for t in self.study.trials(status=FINISHED)]
        fresh = 0
        for key, opt in self._optimizers.items():
            told = self._told[key]
            for t in trials:
                if t.id not in told:
                    opt.tell(t)
                    told.add(t.id)
        fresh = len({t.id for t in trials} - known)
        return fresh

    def ask(self, library: str, algorithm: str, n: int = 1) -> list[dict[str, Any]]:
        return self.optimizer(library, algorithm).ask(n)
