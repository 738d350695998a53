"""Multi-fidelity pruning from intermediate values, decided by Optuna's own pruners.

The ledger's finished trials (with their per-step values) are mirrored into an in-memory Optuna
study; the running trial reports into it and asks ``should_prune()``. So the median rule,
successive halving and Hyperband behave exactly as in Optuna.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import optuna
from optuna.trial import TrialState, create_trial

from asap.tools.optimizer import quiet
from asap.tools.study import Study

PrunerKind = Literal["none", "median", "sha", "hyperband"]


def make_pruner(kind: PrunerKind, max_resource: int | None = None) -> optuna.pruners.BasePruner:
    if kind == "none":
        return optuna.pruners.NopPruner()
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1)
    if kind == "sha":
        return optuna.pruners.SuccessiveHalvingPruner()
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(max_resource=max_resource or "auto")
    raise ValueError(f"unknown pruner {kind!r}; choose none, median, sha or hyperband")


class Pruner:
    """Builds a ``report(step, value) -> should_stop`` callback per trial from the ledger."""

    def __init__(self, study: Study, kind: PrunerKind = "median", max_resource: int | None = None):
        self.study = study
        self.kind = kind
        self._pruner = make_pruner(kind, max_resource)

    def for_trial(self) -> Callable[[int, float], bool]:
        if self.kind == "none":
            return lambda step, value: False
        with quiet({}):
            mirror = optuna.create_study(direction=self.study.direction, pruner=self._pruner)
        for t in self.study.trials(status=("complete", "pruned")):
            if not t.intermediate:
                continue
            complete = t.status == "complete" and t.value is not None
            mirror.add_trial(create_trial(
                state=TrialState.COMPLETE if complete else TrialState.PRUNED,
                value=t.value if complete else None, intermediate_values=t.intermediate))
        live = mirror.ask()

        def report(step: int, value: float) -> bool:
            live.report(value, step)
            return live.should_prune()

        return report
