"""One tuning task in, one typed result out: :func:`optimize` for a Python objective (as short
as Optuna's ``study.optimize``), :func:`run_task` for a workload reference.

A harness scores agents (or LLMs) on tuning tasks: it calls :func:`run_task` with the agent's chat
model (any LangChain ``BaseChatModel``) or an endpoint, and compares the :class:`TaskResult`s.

Example::

    import asap

    def objective(config, report):
        return (config["x"] - 2) ** 2

    result = asap.optimize(objective, {"x": {"type": "float", "low": -5, "high": 5}},
                           n_trials=20, direction="minimize")
"""

from __future__ import annotations

import pickle
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, Field
from rich.console import Console

from asap.agent.config import TuneConfig
from asap.agent.report.stats import cores_line
from asap.graphs.callbacks import TuneCallback
from asap.graphs.define_by_run import Stopper, optimize_define_by_run
from asap.graphs.progress import TrialLines
from asap.graphs.result import OptimizeResult, StudyView
from asap.graphs.session import tune
from asap.tools.hpo.panel import PANEL, Tool, panel_from, sampler_tool
from asap.tools.hpo.space import Space
from asap.tools.ledger.store import Ledger
from asap.tools.ledger.study import Study
from asap.tools.trials.define_by_run import takes_trial
from asap.tools.trials.workers import check_main_guard
from asap.tools.types import Cancel, Trial, safe_name
from asap.tools.workloads import Workload


class TaskResult(BaseModel):
    """What a harness scores: quality reached, what it cost, and how often the LLM failed."""

    study: str
    workload: str
    metric: str
    direction: str
    best_value: float | None = Field(description="best objective value; None if no trial completed")
    best_config: dict[str, Any] | None
    best_tool: str | None = Field(description="the tool that proposed the best configuration")
    tied_best: int = Field(default=0, description="complete trials at exactly the best value "
                           "(several: the metric has saturated; the best is the first of them)")
    trials: int
    ran: int = Field(default=0, description="trials this call ran (``trials`` counts the "
                     "study's, a resumed one's earlier trials included)")
    complete: int
    failed: int
    wall_clock_s: float
    llm_share: float | None = Field(description="exposed LLM time / wall-clock (trainer idle)")
    llm_calls: int
    cached_share: float | None
    accept_rate: float | None = Field(description="speculative rounds accepted, if any judged")
    fallbacks: int = Field(description="rounds the fallback policy decided (LLM failed)")
    retries: int
    llm_errors: int
    llm_record: dict[str, int] = Field(
        default_factory=dict, description="the LLM's decisions on rounds the prior scored: "
        "decisions, departed (picked other than the prior's pick), paid (beat the prior's "
        "prediction for its pick), improved (set a new best)")
    cores: dict[str, Any] | None = Field(
        default=None, description="how busy the trials kept the cores (trials in worker "
        "processes on a CPU host): busy (a trial's median CPU seconds per second), cores, "
        "workers, suggest (the workers that would fill the idle cores, or None)")

    @classmethod
    def from_summary(cls, s: dict[str, Any]) -> TaskResult:
        wall = s["time"]["wall_s"]
        return cls(**{k: s[k] for k in (
            "study", "workload", "metric", "direction", "best_value", "best_config", "best_tool",
            "tied_best", "trials", "complete", "failed", "llm_calls", "cached_share", "accept_rate",
            "fallbacks", "retries", "llm_errors", "llm_record", "cores")}, ran=s.get("ran", 0),
            wall_clock_s=wall, llm_share=s["time"]["exposed_llm_s"] / wall if wall else None)


def run_task(workload: str, *, llm: BaseChatModel | bool | str | None = None, trials: int = 20,
             callbacks: tuple[TuneCallback, ...] = (), cancel: Cancel | None = None,
             **settings: Any) -> TaskResult:
    """Run one tuning task (a fresh or resumed study) and return its :class:`TaskResult`.

    ``settings`` are :class:`~asap.agent.config.TuneConfig` fields (``db``, ``study``,
    ``time_budget_s``, ``base_url``, ``model``, ``speculation``, ...); a bad one raises
    :class:`~asap.agent.config.ConfigError` naming it. With ``llm`` that model decides;
    ``llm=False`` (or ``"off"``): the panel and the prior, no endpoint, no server.
    ``cancel`` stops the session from another thread (see :func:`~asap.graphs.session.tune`).
    """
    model, settings = _model(llm, settings)
    cfg = TuneConfig.make(workload=workload, trials=trials, **settings)
    return TaskResult.from_summary(tune(cfg, llm=model, callbacks=callbacks, cancel=cancel))


def _model(llm: BaseChatModel | bool | str | None, settings: dict[str, Any]
           ) -> tuple[BaseChatModel | None, dict[str, Any]]:
    """A chat model passed as ``llm``, or ``llm`` as the on/off setting (False, "off")."""
    if llm is None or isinstance(llm, BaseChatModel):
        return llm, settings
    return None, {**settings, "llm": llm}


# Optuna's keywords that mean the same here, and the asap setting each one is.
OPTUNA_NAMES = {"timeout": "time_budget_s", "n_jobs": "workers", "study_name": "study"}
# Optuna's keywords with no counterpart: what to use instead.
ELSEWHERE = {
    "storage": "the trials live in asap's ledger (db='asap.db'); optuna_storage="
               "'sqlite:///optuna.db' mirrors them into an Optuna storage as they finish",
    "catch": "a trial that raises never ends the session: it is recorded as failed, with its "
             "error",
    "gc_after_trial": "trials run in worker processes (isolate=True); reuse_workers=False "
                      "gives each trial a fresh one, so nothing accumulates between trials",
    "load_if_exists": "study= names a study: an existing one resumes, a new one is created",
}


def optimize(objective: Callable[..., float | dict[str, float]],
             space: Space | Mapping[str, Any] | None = None, *, n_trials: int = 20,
             metric: str = "value",
             direction: str = "minimize", llm: BaseChatModel | bool | str | None = None,
             callbacks: Sequence[Callable[[StudyView, Any], None]] = (),
             duration: str | None = None, show_progress_bar: bool = True,
             **settings: Any) -> OptimizeResult:
    """Tune ``objective(config, report) -> float | dict`` over ``space`` (a dict in the space
    file's form, or a :class:`Space`) for ``n_trials`` more trials, like Optuna's
    ``study.optimize``; returns the study in Optuna's shapes (:class:`OptimizeResult`:
    ``best_params``, ``best_trial``, ``trials``, ``trials_dataframe()``, ``to_optuna()``).

    An Optuna objective runs as it is: ``objective(trial)`` with no ``space`` declares the space
    by its ``trial.suggest_float/int/categorical`` calls (``log``, ``step``; a parameter asked
    only under a branch is learned as conditional on it), and may call ``trial.report``,
    ``trial.should_prune``, ``trial.set_user_attr`` and read ``trial.number`` and
    ``trial.params`` (:mod:`asap.tools.trials.define_by_run`).

    Each call is a new study unless ``study=`` (or Optuna's ``study_name=``) names one: then
    an existing study resumes and runs ``n_trials`` more. The objective runs in a worker
    process, pickled by reference: define it with ``def`` at the top level of a module (a
    script's own functions work when it guards its entry point with ``if __name__ ==
    "__main__":``); a lambda or a closure gets a clear error before anything starts. A float
    return is the ``metric`` value, minimized unless ``direction="maximize"`` (Optuna's
    default, so a script moved from Optuna keeps its direction); a dict names its metrics;
    ``duration`` names the one that
    holds a trial's simulated seconds, for ``clock="virtual"``. ``callbacks`` are called as
    ``fn(study, trial)`` after each finished trial, as in Optuna: ``study`` reads like an Optuna
    study (``best_value``, ``trials``, ``stop()``) and ``trial`` is Optuna's ``FrozenTrial``
    (``.params``, ``.value``, ``.state``). ``show_progress_bar``: a bar on a terminal, a line
    per trial otherwise (on stderr); False prints nothing. ``settings`` are
    :class:`~asap.agent.config.TuneConfig` fields (``db``, ``study``, ``time_budget_s``,
    ``base_url``, ``isolate=False`` to run in this process, ...); Optuna's ``timeout``,
    ``n_jobs`` and ``study_name`` are taken for what they mean. ``llm``: a chat model to decide
    with, or ``False`` / ``"off"`` for the panel and the prior without an LLM.

    Runs are reproducible: ``seed`` (default 0) seeds every tool, so two calls with the same
    objective and settings propose the same configurations; pass another ``seed=`` for another
    run (to compare with Optuna over several runs, vary it as you would a sampler's seed). On a
    CPU host the trials start one at a time and, once the first three have left cores idle
    (most scikit-learn objectives keep one busy), as many at once as fill them; results are
    still taken in the order the trials started, so this holds with several workers too, on the
    same machine. ``workers=1`` (Optuna's ``n_jobs=1``) keeps one trial at a time.
    """
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
    if not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 1:
        raise ValueError(f"n_trials must be a positive integer (that many more trials), "
                         f"got {n_trials!r}")
    settings, panel = _panel(_from_optuna(settings))
    by_run = takes_trial(objective)
    if space is None and not by_run:
        raise ValueError("the objective takes (config, report) and needs its search space: "
                         "pass space=...; or write it as Optuna does, objective(trial), and "
                         "declare the space with trial.suggest_float/int/categorical")
    if space is not None and by_run:
        raise ValueError("objective(trial) declares its space with its suggest calls: pass no "
                         "space= (or write objective(config, report) for a space given here)")
    if space is not None:
        space = space if isinstance(space, Space) else Space.from_dict(dict(space))
    if settings.get("isolate", True):
        check_main_guard(objective)
        try:
            pickle.dumps(objective)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise ValueError(f"the objective {getattr(objective, '__qualname__', objective)!r} "
                             "cannot run in a worker process (it is pickled by reference: a "
                             "lambda or a function defined inside another one cannot be); "
                             "define it with def at the top level of a module, or pass "
                             f"isolate=False to run it in this process ({exc})") from None
    ref = f"{getattr(objective, '__module__', 'objective')}:" \
          f"{getattr(objective, '__qualname__', 'objective')}"
    db = settings.get("db", TuneConfig.model_fields["db"].default)
    name, before = _study_for(db, settings.get("study"), _stem(objective))
    llm, settings = _model(llm, {**settings, "study": name})
    cfg = TuneConfig.make(workload=ref, trials=before + n_trials, **settings)
    stopper = Stopper()
    hooks: list[TuneCallback] = [_Callback(fn, stopper.stop) for fn in callbacks]
    if show_progress_bar:
        hooks.append(TrialLines(n_trials))
    if by_run:
        summary = TaskResult.from_summary(optimize_define_by_run(
            cfg, objective, metric, direction, duration, llm, hooks, stopper, panel))
    else:
        wl = Workload(ref, objective, space, metric, direction, duration=duration)
        summary = TaskResult.from_summary(tune(cfg, llm=llm, callbacks=hooks, workload=wl,
                                               cancel=stopper.current, panel=panel))
    study = Ledger(cfg.db, readonly=True).open_study(name)
    if show_progress_bar and (idle := cores_line(summary.cores, "workers=")) is not None:
        Console(stderr=True).print(idle, highlight=False, markup=False)
    if summary.trials == before:
        warnings.warn(f"study '{name}' ran no trial: {_why_none(study, summary)}", stacklevel=2)
    return OptimizeResult(study, summary)


def _from_optuna(settings: dict[str, Any]) -> dict[str, Any]:
    """Optuna's keywords as asap settings; one with no counterpart is an error naming what to
    use instead."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if key in ELSEWHERE:
            raise ValueError(f"{key}= is Optuna's; here {ELSEWHERE[key]}")
        if key == "pruner" and not isinstance(value, str):
            raise ValueError("pruner= takes a name here: 'median' (Optuna's default), 'sha', "
                             f"'hyperband' or 'none', not {type(value).__name__}")
        out[OPTUNA_NAMES.get(key, key)] = value  # n_jobs=-1 too: workers=-1, every core
    return out


def _panel(settings: dict[str, Any]) -> tuple[dict[str, Any], tuple[Tool, ...] | None]:
    """Optuna's ``sampler=`` (a sampler object: it proposes every round, first, beside the
    panel's tools) and ``panel=`` with sampler objects among tools' names, as the panel of tool
    objects the session takes (None: ``panel`` names tools only, and stays a setting)."""
    sampler, items = settings.get("sampler"), settings.get("panel")
    objects = isinstance(items, list | tuple) and not all(isinstance(i, str) for i in items)
    if sampler is None and not objects:
        return settings, None
    tools = PANEL if items is None else panel_from(items)
    if sampler is not None:
        own = sampler_tool(sampler)
        tools = (own, *(t for t in tools if t.key != own.key))
    rest = {k: v for k, v in settings.items() if k not in ("sampler", "panel")}
    return rest, tools


def _stem(objective: Callable[..., Any]) -> str:
    """A new study's name: the objective's module and name (a script's file stem for
    ``__main__``), as a study name may be spelled."""
    module = getattr(objective, "__module__", None) or "objective"
    if module == "__main__":
        module = Path(getattr(sys.modules["__main__"], "__file__", None) or "main").stem
    return safe_name(f"{module}-{getattr(objective, '__qualname__', 'objective')}")


def _study_for(db: str, name: str | None, stem: str) -> tuple[str, int]:
    """The study this call runs and how many trials it already has: ``name`` (resumed when it
    exists), else a new one named after the objective (``stem``, ``stem-2``, ...)."""
    ledger = Ledger(db, readonly=True) if Path(db).exists() else None
    if name is not None:
        has = ledger is not None and ledger.has_study(name)
        return name, len(ledger.open_study(name).trials()) if has else 0
    taken = set() if ledger is None else set(ledger.study_names())
    n = 1
    while (candidate := stem if n == 1 else f"{stem}-{n}") in taken:
        n += 1
    return candidate, 0


def _why_none(study: Study, summary: TaskResult) -> str:
    """Why a call started no trial, from what the session logged."""
    if study.events("space_exhausted"):
        return "every configuration of the space has run"
    if summary.stopped_by_llm:
        return "the LLM stopped the session"
    return "the budget was spent before a trial could start"


class _Callback(TuneCallback):
    """An Optuna-style ``fn(study, trial)`` called after each finished trial: ``study`` an
    Optuna-shaped view whose ``stop()`` starts no new trial, ``trial`` a ``FrozenTrial``."""

    def __init__(self, fn: Callable[[StudyView, Any], None], stop: Callable[[], None]) -> None:
        self.fn, self.stop = fn, stop

    def on_trial_complete(self, study: Study, trial: Trial, tool: str) -> None:
        from asap.tools.ledger.optuna_mirror import frozen
        view = StudyView(study, self.stop)
        self.fn(view, frozen(study, trial))
