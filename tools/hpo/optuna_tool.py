"""Optuna samplers as asap optimizers (ask-and-tell, foreign trials via ``add_trial``)."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState, create_trial

from asap.tools.hpo import panel
from asap.tools.hpo.optimizer import Optimizer, quiet
from asap.tools.hpo.space import CategoricalParam, FloatParam, Space
from asap.tools.types import Direction, Trial

# A ledger trial's status as Optuna's trial state.
STATES = {"complete": TrialState.COMPLETE, "failed": TrialState.FAIL, "pruned": TrialState.PRUNED}


def _sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        # multivariate + group: TPE models conditional sub-spaces jointly instead of per parameter.
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                          n_startup_trials=8)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=1,
                                            warn_independent_sampling=False)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=8,
                                         warn_independent_sampling=False)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, qmc_type="sobol", scramble=True,
                                          warn_independent_sampling=False)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(name)


def suggest_config(space: Space, trial: optuna.Trial) -> dict[str, Any]:
    """Define-by-run sampling: inactive conditional parameters are never suggested."""
    def suggest(p: Any) -> Any:
        if isinstance(p, CategoricalParam):
            return trial.suggest_categorical(p.name, p.choices)
        if isinstance(p, FloatParam):
            return trial.suggest_float(p.name, p.low, p.high, log=p.log, step=p.step)
        return trial.suggest_int(p.name, p.low, p.high, log=p.log, step=p.step)
    return space.build(suggest)


def distributions(space: Space, config: dict[str, Any]) -> dict[str, BaseDistribution]:
    """Optuna distributions of the parameters present in ``config`` (for ``add_trial``)."""
    out: dict[str, BaseDistribution] = {}
    for name in config:
        p = space[name]
        if isinstance(p, CategoricalParam):
            out[name] = CategoricalDistribution(p.choices)
        elif isinstance(p, FloatParam):
            out[name] = FloatDistribution(p.low, p.high, log=p.log, step=p.step)
        else:
            out[name] = IntDistribution(p.low, p.high, log=p.log, step=p.step)
    return out


class OptunaOptimizer(Optimizer):
    """One Optuna sampler over an in-memory study mirrored from the ledger."""

    library = "optuna"
    algorithms = panel.algorithms("optuna")
    # Experimental-feature warnings, silenced for asap's own calls only (a user's own Optuna code
    # keeps them); the INFO log of each in-memory trial is left to Optuna's verbosity.
    warnings_ignored = {"category": optuna.exceptions.ExperimentalWarning}

    def __init__(self, space: Space, direction: Direction, algorithm: str, seed: int = 0,
                 sampler: optuna.samplers.BaseSampler | None = None) -> None:
        """``sampler``: a user's own sampler object, used as it is (``algorithm`` is then its
        class name); else asap's settings of the sampler ``algorithm`` names, with ``seed``."""
        super().__init__(space, direction, algorithm, seed, custom=sampler is not None)
        with quiet(self.warnings_ignored):
            self.study = optuna.create_study(direction=direction,
                                             sampler=sampler or _sampler(algorithm, seed))

    def _ask(self) -> tuple[dict[str, Any], Any]:
        trial = self.study.ask()
        return suggest_config(self.space, trial), trial

    def _pend(self, trial: Trial) -> optuna.Trial:
        """The running trial as an Optuna RUNNING trial (enqueued, then asked: its parameters
        fixed), which TPE's constant liar sees; told through this handle when it finishes."""
        self.study.enqueue_trial(trial.config, skip_if_exists=False)
        handle = self.study.ask()
        suggest_config(self.space, handle)  # the enqueued values, recorded as its params
        return handle

    def _discard(self, handle: optuna.Trial) -> None:
        # FAIL: no sampler learns from it, and the liar no longer counts it as running.
        self.study.tell(handle, state=TrialState.FAIL)

    def _tell(self, trial: Trial, handle: Any | None) -> None:
        state = STATES[trial.status]
        value = trial.value if state == TrialState.COMPLETE else None
        if handle is not None:
            for step, v in sorted(trial.intermediate.items()):
                handle.report(v, step)
            self.study.tell(handle, value, state=state)
            return
        self.study.add_trial(create_trial(
            params=trial.config, distributions=distributions(self.space, trial.config),
            value=value, state=state, intermediate_values=dict(trial.intermediate),
            system_attrs=self._foreign_attrs(),
        ))

    def _foreign_attrs(self) -> dict[str, Any]:
        """CMA-ES only learns from trials tagged with its current generation; tag foreign ones.

        Injecting external solutions into the current generation is how CMA-ES variants take
        candidates they did not sample; other samplers ignore the tag.
        """
        if self.algorithm != "cmaes":
            return {}
        gens = [t.system_attrs["cma:generation"]
                for t in self.study.get_trials(deepcopy=False) if "cma:generation" in t.system_attrs]
        return {"cma:generation": max(gens) if gens else 0}
