"""asap-hpo: agentic hyperparameter optimization with the LLM off the critical path.

The subpackages live in top-level folders of the repository (``agent/``, ``tools/``,
``graphs/``, ``prompts/``) and are mapped under this namespace at install time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asap.graphs.result import OptimizeResult

__version__ = "0.1.0"


def optimize(objective: Callable[..., Any], space: Any = None, **settings: Any
             ) -> OptimizeResult:
    """Tune ``objective`` as Optuna's ``study.optimize`` does; the reference for every argument
    and the result is :func:`asap.graphs.api.optimize`, which this calls.

    The root imports nothing until this is called (``import asap`` stays free of torch,
    LangGraph and the rest). Called, it first starts the worker server that the trials fork
    from, so the objective module's imports load there while this process imports the graphs
    (on a second core the two overlap), unless the trials run in this process."""
    if settings.get("isolate", True) and settings.get("backend", "local") == "local":
        from asap.tools.trials.workers import start_for
        start_for(objective)
    from asap.graphs.api import optimize as run
    return run(objective, space, **settings)


def __getattr__(name: str):  # noqa: ANN202 - PEP 562: loaded on first use
    """``asap.TrialPruned``, imported when first used."""
    if name == "TrialPruned":  # raise it from an objective to stop the trial as pruned
        from asap.tools.types import TrialPruned
        return TrialPruned
    raise AttributeError(f"module 'asap' has no attribute {name!r}")
