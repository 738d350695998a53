"""What ``asap.optimize`` returns: the study in Optuna's shapes, and the run's own numbers.

Why: most people who call ``asap.optimize`` come from ``study.optimize`` and reach first for
``best_params``, ``best_trial``, ``trials`` and ``trials_dataframe()``. These are Optuna's own
objects (``FrozenTrial``, the ``DataFrame`` Optuna builds), made from the ledger by the same
conversion the Optuna mirror uses (:mod:`asap.tools.ledger.optuna_mirror`: the evaluated
configuration as params, the proposing tool as the ``tool`` user attribute, each trial's own
times), so ``optuna.visualization`` and ``optuna.importance`` work on :meth:`to_optuna`. The
numbers a harness scores (wall-clock, the LLM's share, its record) are :attr:`summary`, a
:class:`~asap.graphs.api.TaskResult`; its fields also read as attributes here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asap.tools.ledger.study import Study

if TYPE_CHECKING:
    import optuna
    import pandas


class StudyView:
    """An asap study read as an Optuna study (the ledger is read on every access, so a view
    handed to a callback during the run is current)."""

    def __init__(self, study: Study, stop: Any = None) -> None:
        self._study = study
        self._stop = stop

    @property
    def study_name(self) -> str:
        return self._study.name

    @property
    def direction(self) -> str:
        return self._study.direction

    def to_optuna(self) -> optuna.Study:
        """An in-memory ``optuna.Study`` holding the finished trials (Optuna's plots and
        importance evaluators take it)."""
        from asap.tools.ledger.optuna_mirror import in_memory
        return in_memory(self._study)

    @property
    def trials(self) -> list[optuna.trial.FrozenTrial]:
        """The finished trials (complete, failed, pruned) as Optuna's ``FrozenTrial``, numbered
        as in the ledger."""
        from asap.tools.ledger.optuna_mirror import frozen
        return [frozen(self._study, t)
                for t in self._study.trials(status=("complete", "failed", "pruned"))]

    @property
    def best_trial(self) -> optuna.trial.FrozenTrial:
        """The best complete trial; ``ValueError`` when none completed (as Optuna)."""
        from asap.tools.ledger.optuna_mirror import frozen
        best = self._study.best()
        if best is None:
            raise ValueError(f"no trial of study '{self._study.name}' has completed")
        return frozen(self._study, best)

    @property
    def best_value(self) -> float:
        return self.best_trial.value

    @property
    def best_params(self) -> dict[str, Any]:
        return self.best_trial.params

    def trials_dataframe(self, **kwargs: Any) -> pandas.DataFrame:
        """Optuna's ``trials_dataframe`` (same columns, same arguments) of the finished
        trials."""
        return self.to_optuna().trials_dataframe(**kwargs)

    def stop(self) -> None:
        """Start no new trial (from a callback, as Optuna's ``study.stop()``); the trials
        running finish."""
        if self._stop is None:
            raise RuntimeError("stop() works from a callback during asap.optimize")
        self._stop()


class OptimizeResult(StudyView):
    """The finished study (:class:`StudyView`) and the run's numbers (:attr:`summary`)."""

    def __init__(self, study: Study, summary: Any) -> None:
        super().__init__(study)
        self.summary = summary

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "summary":
            raise AttributeError(name)
        try:
            return getattr(self.summary, name)
        except AttributeError:
            raise AttributeError(f"'OptimizeResult' has no attribute {name!r}") from None

    def __repr__(self) -> str:
        s = self.summary
        return (f"OptimizeResult(study={s.study!r}, trials={s.trials}, best_value="
                f"{s.best_value!r}, wall_clock_s={s.wall_clock_s:.1f})")
