"""Multi-fidelity pruning from intermediate values, decided by Optuna's own pruners.

Why one Optuna study for the whole session, not one rebuilt per trial: successive halving and
Hyperband keep their rungs in each trial's system attributes, written as the trial itself asks
``should_prune()``. A trial copied in with its intermediate values has no rungs, so in a study
rebuilt per trial a new trial would compete with nobody and never be pruned. Here the ledger's
earlier trials are replayed once (each reports step by step and asks, as it would have), then
each live trial reports into the same study and is told its end, so the median rule, successive
halving and Hyperband behave exactly as in Optuna. The mirror is named after the study, so
Hyperband puts a trial in the same bracket on every replay.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Literal

import optuna
from optuna.trial import TrialState

from asap.tools.hpo.optimizer import quiet
from asap.tools.ledger.study import Study
from asap.tools.types import Trial

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
    """Builds a ``report(step, value) -> should_stop`` callback per trial, all of them
    reporting into one Optuna study that mirrors the ledger's trials with intermediate values."""

    def __init__(self, study: Study, kind: PrunerKind = "median", max_resource: int | None = None):
        self.study = study
        self.kind = kind
        self._pruner = make_pruner(kind, max_resource)
        self._mirror: optuna.Study | None = None
        self._told: set[int] = set()  # ledger trial ids the mirror has ended
        self._live: dict[int, optuna.Trial] = {}  # ledger trial id -> its running mirror trial
        self._lock = threading.Lock()  # reports of parallel trials arrive on several threads

    def for_trial(self, trial_id: int | None = None) -> Callable[[int, float], bool]:
        """The callback for the trial ``trial_id`` (the ledger's id) that starts now."""
        if self.kind == "none":
            return lambda step, value: False
        with self._lock:
            self._sync()
            live = self._mirror.ask()
            if trial_id is not None:
                self._live[trial_id] = live

        def report(step: int, value: float) -> bool:
            with self._lock:
                live.report(value, step)
                return live.should_prune()

        return report

    def _sync(self) -> None:
        """Bring the mirror up to the ledger: a live trial that has ended is told its end; a
        finished trial it never saw (an earlier session's) is replayed."""
        if self._mirror is None:
            with quiet({}):
                self._mirror = optuna.create_study(study_name=self.study.name,
                                                   direction=self.study.direction,
                                                   pruner=self._pruner)
        for t in self.study.trials(status=("complete", "pruned", "failed")):
            if t.id in self._told:
                continue
            self._told.add(t.id)
            live = self._live.pop(t.id, None)
            if live is None and t.intermediate and t.status != "failed":
                live = self._replay(t)
            if live is not None:
                self._end(live, t)

    def _replay(self, t: Trial) -> optuna.Trial:
        """An earlier trial, reported step by step as it ran, asking at each step (which
        writes its rungs); it reports no further once it would have been pruned."""
        live = self._mirror.ask()
        for step, value in sorted(t.intermediate.items()):
            live.report(value, step)
            if live.should_prune():
                break
        return live

    def _end(self, live: optuna.Trial, t: Trial) -> None:
        if t.status == "complete" and t.value is not None:
            self._mirror.tell(live, t.value)
        else:
            self._mirror.tell(live, state=TrialState.PRUNED if t.status == "pruned"
                              else TrialState.FAIL)
