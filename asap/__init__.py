"""asap-hpo: agentic hyperparameter optimization with the LLM off the critical path.

The subpackages live in top-level folders of the repository (``agent/``, ``tools/``,
``graphs/``, ``prompts/``) and are mapped under this namespace at install time.
"""

__version__ = "0.1.0"


def __getattr__(name: str):  # noqa: ANN202 - PEP 562: asap.optimize, loaded on first use
    """``asap.optimize``: the root imports nothing until it is used (``import asap`` stays free
    of torch, LangGraph and the rest)."""
    if name == "optimize":
        from asap.graphs.api import optimize
        return optimize
    if name == "TrialPruned":  # raise it from an objective to stop the trial as pruned
        from asap.tools.types import TrialPruned
        return TrialPruned
    raise AttributeError(f"module 'asap' has no attribute {name!r}")
