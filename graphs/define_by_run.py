"""A define-by-run objective's sessions: one per space, the next on the space the trials showed.

:func:`asap.optimize` hands an Optuna-style ``objective(trial)`` here. Its space is unknown
before its first trial, so the first session runs one trial on a placeholder (every suggest is
new and answered with the middle of its range); whenever a finished trial shows a parameter the
space lacks, or a condition it did not know (:func:`~asap.tools.trials.define_by_run.learn`), the
session starts no new trial, the study's space and its trials' configurations are rewritten in
one transaction (:meth:`~asap.tools.ledger.study.Study.respace`), and the next session builds the
panel's tools on the grown space and tells them every trial. A space stops growing once every
branch has been seen, so a run has a few sessions, most of its trials in the last.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel

from asap.agent.config import TuneConfig
from asap.graphs.callbacks import TuneCallback
from asap.graphs.session import tune
from asap.tools.hpo.panel import Tool, panel_of
from asap.tools.hpo.portfolio import load_in_background
from asap.tools.hpo.space import Space
from asap.tools.ledger.store import Ledger
from asap.tools.ledger.study import Study
from asap.tools.trials.define_by_run import PROBE, DefineByRun, Spec, configs_in, learn
from asap.tools.types import FINISHED, Cancel, Trial
from asap.tools.workloads import Workload

MISMATCH = "a parameter keeps one distribution"  # the worker's words for a changed suggest


class Stopper:
    """The user's ``study.stop()`` across sessions: halts the running one and starts no other."""

    def __init__(self) -> None:
        self.current = Cancel()
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True
        self.current.halt()


class _Watch(TuneCallback):
    """Ends a session (no new trial) when a finished trial grows the space or shows a changed
    distribution."""

    def __init__(self, known: dict[str, Spec], cancel: Cancel) -> None:
        self.known, self.cancel = known, cancel
        self.grown: dict[str, Spec] | None = None
        self.error: str | None = None
        self.mismatched: list[int] = []  # trials that asked a parameter with another space

    def on_trial_complete(self, study: Study, trial: Trial, tool: str) -> None:
        if trial.status == "failed" and MISMATCH in (trial.error or ""):
            self.error = (trial.error or "").splitlines()[-1]
            self.mismatched.append(trial.id)
        else:
            try:
                grown = learn(study.trials(status=FINISHED), self.known)
            except ValueError as exc:
                self.error = str(exc)
            else:
                if grown != self.known:
                    self.grown = grown
        if self.error or self.grown:
            self.cancel.halt()


class _LoadTools(TuneCallback):
    """Imports the panel's libraries while the placeholder's trial trains in its worker
    (:func:`~asap.tools.hpo.portfolio.load_in_background`): the placeholder asks no tool, and
    the next session's first round would otherwise import them between two trials."""

    def __init__(self, panel: tuple[Tool, ...]) -> None:
        self.panel = panel
        self.thread: threading.Thread | None = None

    def on_trial_start(self, study: Study, number: int, config: dict[str, Any], tool: str
                       ) -> None:
        if self.thread is None:
            self.thread = load_in_background(self.panel)


def known_space(cfg: TuneConfig) -> dict[str, Spec]:
    """What a resumed study has learned so far (nothing for a new one, or one that has run only
    its placeholder)."""
    ledger = Ledger(cfg.db, readonly=True) if Path(cfg.db).exists() else None
    if ledger is None or not ledger.has_study(cfg.study_name):
        return {}
    space = ledger.open_study(cfg.study_name).space
    return {} if space.names == PROBE.names else space.to_dict()


def optimize_define_by_run(cfg: TuneConfig, objective: Callable[[Any], Any], metric: str,
                           direction: str, duration: str | None, llm: BaseChatModel | None,
                           callbacks: Sequence[TuneCallback], stopper: Stopper,
                           panel: tuple[Tool, ...] | None = None) -> dict[str, Any]:
    """Run ``objective(trial)`` until the study has ``cfg.trials`` trials, a session per space;
    the last session's summary, ``ran`` counting every session's trials. A suggest that changes
    a parameter's distribution (between trials, or against a resumed study's) raises
    ValueError naming it, and the trial that showed it is not kept (it ran outside the study's
    space)."""
    known, ran, start, budget = known_space(cfg), 0, time.monotonic(), cfg.time_budget_s
    while True:
        space = Space.from_dict(known) if known else PROBE
        wl = Workload(cfg.workload, DefineByRun(objective, metric, known), space, metric,
                      direction, duration=duration)
        stopper.current = cancel = Cancel()
        watch = _Watch(known, cancel)
        # In this process the objective would compete with the import for the interpreter.
        ahead = [_LoadTools(panel or panel_of(cfg.panel))] if space is PROBE and \
            not cfg.trials_here else []
        summary = tune(cfg, llm=llm, callbacks=[*callbacks, watch, *ahead], workload=wl,
                       cancel=cancel, panel=panel)
        ran += summary.get("ran", 0)
        if watch.error:  # the trials that showed it ran outside the study's space: not kept
            Ledger(cfg.db).open_study(cfg.study_name).discard(watch.mismatched)
            raise ValueError(f"objective(trial): {watch.error}")
        if watch.grown is None or stopper.stopped or summary["trials"] >= cfg.trials:
            if watch.grown is not None:  # the last trial grew it: keep what it showed
                _respace(cfg, watch.grown)
            if not known and watch.grown is None and summary["complete"]:
                raise ValueError("objective(trial) suggested no parameter: nothing to tune "
                                 "(call trial.suggest_float/int/categorical in it)")
            return {**summary, "ran": ran}
        known = watch.grown
        _respace(cfg, known)
        if budget is not None:  # the call's time budget, spent across its sessions
            if (left := budget - (time.monotonic() - start)) <= 0:
                return {**summary, "ran": ran}
            cfg = cfg.model_copy(update={"time_budget_s": left})


def _respace(cfg: TuneConfig, specs: dict[str, Spec]) -> None:
    ledger = Ledger(cfg.db)
    study = ledger.open_study(cfg.study_name)
    space = Space.from_dict(specs)
    study.respace(space, configs_in(space, study.trials(status=FINISHED)))
    ledger.checkpoint()  # as a session's end does: the ledger file alone holds it
