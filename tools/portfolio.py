"""The tools' shared state: one optimizer per (library, algorithm), all fed the whole ledger.

Optimizers are created lazily and replay every finished trial on creation, so reopening a study
(a new process) rebuilds their state from the ledger alone; afterwards :meth:`Portfolio.sync`
tells each of them only the trials it has not seen.
"""

from __future__ import annotations

import zlib
from typing import Any

from asap.agent.ledger import Study
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
            # One seed per tool: with a shared seed their random start-up samples coincide.
            seed = (self.seed + zlib.crc32(key.encode())) % 2**31
            self._optimizers[key] = cls(self.study.space, self.study.direction, algorithm, seed)
            self._told[key] = set()
        self.sync()
        return self._optimizers[key]

    def sync(self) -> int:
        """Tell every optimizer the finished trials it has not seen; returns how many were new."""
        if not self._optimizers:
            return 0
        finished = self.study.finished_ids()
        seen = set.intersection(*self._told.values())
        new = {i: self.study.trial(i) for i in finished if i not in seen}
        for key, opt in self._optimizers.items():
            told = self._told[key]
            for tid in sorted(new):
                if tid not in told:
                    opt.tell(new[tid])
                    told.add(tid)
        return len(new)

    def ask(self, library: str, algorithm: str, n: int = 1) -> list[dict[str, Any]]:
        return self.optimizer(library, algorithm).ask(n)
