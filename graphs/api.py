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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, Field

from asap.agent.config import TuneConfig
from asap.graphs.session import TuneCallback, tune
from asap.tools.ledger import Study
from asap.tools.space import Space
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
    trials: int
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

    @classmethod
    def from_summary(cls, s: dict[str, Any]) -> TaskResult:
        wall = s["time"]["wall_s"]
        return cls(**{k: s[k] for k in (
            "study", "workload", "metric", "direction", "best_value", "best_config", "best_tool",
            "trials", "complete", "failed", "llm_calls", "cached_share", "accept_rate",
            "fallbacks", "retries", "llm_errors", "llm_record")},
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


def optimize(objective: Callable[..., float | dict[str, float]],
             space: Space | Mapping[str, Any], *, n_trials: int = 20, metric: str = "value",
             direction: str = "maximize", llm: BaseChatModel | bool | str | None = None,
             callbacks: Sequence[Callable[[Study, Trial], None]] = (),
             duration: str | None = None, **settings: Any) -> TaskResult:
    """Tune ``objective(config, report) -> float | dict`` over ``space`` (a dict in the space
    file's form, or a :class:`Space`), like Optuna's ``study.optimize``.

    The objective runs in a worker process, pickled by reference: define it with ``def`` at the
    top level of a module (a script's own functions work when it guards its entry point with
    ``if __name__ == "__main__":``); a lambda or a closure gets a clear error before anything
    starts. A float return is the ``metric`` value; a dict names its metrics; ``duration`` names
    the one that holds a trial's simulated seconds, for ``clock="virtual"``. ``callbacks`` are
    called as ``fn(study, trial)`` after each finished trial, as in Optuna. ``settings`` are
    :class:`~asap.agent.config.TuneConfig` fields (``db``, ``study``, ``time_budget_s``,
    ``base_url``, ``isolate=False`` to run in this process, ...). ``llm``: a chat model to
    decide with, or ``False`` / ``"off"`` for the panel and the prior without an LLM.
    """
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
    space = space if isinstance(space, Space) else Space.from_dict(dict(space))
    if settings.get("isolate", True):
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
    settings.setdefault("study", safe_name(ref))
    llm, settings = _model(llm, settings)
    cfg = TuneConfig.make(workload=ref, trials=n_trials, **settings)
    wl = Workload(ref, objective, space, metric, direction, duration=duration)
    hooks = [*(_Callback(fn) for fn in callbacks)]
    return TaskResult.from_summary(tune(cfg, llm=llm, callbacks=hooks, workload=wl))


class _Callback(TuneCallback):
    """An Optuna-style ``fn(study, trial)`` called after each finished trial."""

    def __init__(self, fn: Callable[[Study, Trial], None]) -> None:
        self.fn = fn

    def on_trial_complete(self, study: Study, trial: Trial, tool: str) -> None:
        self.fn(study, trial)
