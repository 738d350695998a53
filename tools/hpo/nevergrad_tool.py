"""Nevergrad optimizers as asap optimizers (ask-and-tell, foreign trials via tell-not-asked).

Nevergrad is imported when the first of its optimizers is made, not with this module: it takes
~1 s to import, which every graph import would otherwise pay.
"""

from __future__ import annotations

import importlib.abc
import math
import sys
import threading
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from asap.tools.hpo import panel
from asap.tools.hpo.optimizer import Optimizer, quiet
from asap.tools.hpo.space import CategoricalParam, FloatParam, IntParam, Space
from asap.tools.types import Direction, Trial

if TYPE_CHECKING:
    import nevergrad as ng

_DUMMY = "__asap_constant_space__"


class _NoPyplotOnThisThread(importlib.abc.MetaPathFinder):
    """Refuses ``matplotlib.pyplot`` to the thread that installed it, and only to it (another
    thread's import, a report's plot, goes on as usual)."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(self, name: str, path: Any, target: Any = None) -> None:
        if name == "matplotlib.pyplot" and threading.get_ident() == self.thread:
            raise ImportError("matplotlib.pyplot is not imported with cma here")
        return None


def import_cma_without_pyplot() -> None:
    """Import ``cma`` (the CMA-ES that NGOpt's first ask imports) without the
    ``matplotlib.pyplot`` its ``cma.s`` shortcuts import with it: pyplot's import sat in a new
    study's first round, before its first trial (docs/evaluation.md), and asap never plots
    through cma. cma's own ``plot()`` imports pyplot when called, so only ``cma.s.figsave``
    and ``figshow`` are missing in a process that imported cma here. Nothing to do once
    either is imported."""
    if "cma" in sys.modules or "matplotlib.pyplot" in sys.modules:
        return
    finder = _NoPyplotOnThisThread()
    sys.meta_path.insert(0, finder)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # cma.s: "Could not import matplotlib.pyplot"
            import cma  # noqa: F401
    except ImportError:
        pass  # no cma: Nevergrad says what is missing when an optimizer needs it
    finally:
        sys.meta_path.remove(finder)


def _constant(p) -> bool:
    return len(p.choices) == 1 if isinstance(p, CategoricalParam) else p.low == p.high


def _log_scale(p) -> bool:
    """Whether Nevergrad can search ``p`` on a log scale: its ``Log`` steps by a factor of
    (high/low)**(1/6), and a range so narrow that the factor rounds to 1 made its bounds
    infinite (an error at the optimizer's creation); on such a range the linear scale searches
    the same values."""
    return p.log and math.exp((math.log(p.high) - math.log(p.low)) / 6.0) > 1.0


def parametrization(space: Space, seed: int) -> ng.p.Dict:
    """A flat Nevergrad Dict over every parameter; conditional ones are dropped at decode time.

    Nevergrad has no conditional spaces, so inactive parameters exist in the vector but do not
    matter; integer steps are searched as an index ``k`` with value ``low + k*step``.
    """
    import nevergrad as ng
    items: dict[str, ng.p.Parameter] = {}
    for p in space.params:
        if _constant(p):
            continue  # nothing to search
        if isinstance(p, CategoricalParam):
            items[p.name] = ng.p.Choice(p.choices)
        elif isinstance(p, FloatParam):
            items[p.name] = (ng.p.Log(lower=p.low, upper=p.high) if _log_scale(p)
                             else ng.p.Scalar(lower=p.low, upper=p.high))  # a step: snapped
        elif p.log:
            items[p.name] = ng.p.Log(lower=p.low, upper=p.high).set_integer_casting()
        else:
            items[p.name] = ng.p.Scalar(lower=0, upper=(p.high - p.low) // p.step).set_integer_casting()
    if not items:  # Nevergrad refuses a zero-dimensional problem
        items[_DUMMY] = ng.p.Scalar(lower=0.0, upper=1.0)
    param = ng.p.Dict(**items)
    param.random_state = np.random.RandomState(seed)
    return param


def decode(space: Space, value: dict[str, Any]) -> dict[str, Any]:
    """Nevergrad value -> config with only the active parameters, clipped into bounds."""
    def one(p: Any) -> Any:
        if p.name not in value:  # a constant parameter
            return p.choices[0] if isinstance(p, CategoricalParam) else p.low
        v = value[p.name]
        if isinstance(p, CategoricalParam):
            return v
        if isinstance(p, FloatParam):
            return p.snap(v)
        if p.log:
            return int(min(max(round(v), p.low), p.high))
        return p.low + p.step * int(min(max(round(v), 0), (p.high - p.low) // p.step))
    return space.build(one)


def encode(space: Space, config: dict[str, Any], param: ng.p.Dict) -> dict[str, Any]:
    """Config -> Nevergrad value; inactive parameters take a neutral value (centre, first choice)."""
    out: dict[str, Any] = {}
    for name in param.value:
        if name == _DUMMY:
            out[name] = 0.5
            continue
        p = space[name]
        if name in config:
            v = config[name]
            out[name] = (v - p.low) // p.step if isinstance(p, IntParam) and not p.log else v
        elif isinstance(p, CategoricalParam):
            out[name] = p.choices[0]
        elif p.log:
            out[name] = math.sqrt(p.low * p.high)
        else:
            mid = (p.low + p.high) / 2
            out[name] = p.snap(mid) if isinstance(p, FloatParam) else \
                ((p.high - p.low) // p.step) // 2
    return out


class NevergradOptimizer(Optimizer):
    """One Nevergrad optimizer; foreign trials are told as candidates it did not ask for."""

    library = "nevergrad"
    algorithms = panel.algorithms("nevergrad")
    warnings_ignored = {"module": "nevergrad"}  # budget and settings advice

    def __init__(self, space: Space, direction: Direction, algorithm: str, seed: int = 0,
                 budget: int = 200) -> None:
        import nevergrad as ng

        self.load()
        super().__init__(space, direction, algorithm, seed)
        # NGOpt picks its inner algorithm from the budget; num_workers allows a few open asks.
        with quiet(self.warnings_ignored):
            self.opt = ng.optimizers.registry[algorithm](
                parametrization=parametrization(space, seed), budget=budget, num_workers=4)

    @classmethod
    def load(cls) -> None:
        """Import Nevergrad and the ``cma`` that NGOpt's first ask imports (without pyplot)."""
        import nevergrad  # noqa: F401

        import_cma_without_pyplot()

    def _ask(self) -> tuple[dict[str, Any], Any]:
        cand = self.opt.ask()
        return decode(self.space, cand.value), cand

    def _tell(self, trial: Trial, handle: Any | None) -> None:
        # Failed and pruned trials have no comparable loss; Nevergrad has no failure state.
        if trial.status != "complete" or trial.value is None:
            return
        loss = self.loss(trial.value)
        if handle is not None:
            self.opt.tell(handle, loss)
            return
        value = encode(self.space, trial.config, self.opt.parametrization)
        try:
            self.opt.tell(self.opt.parametrization.spawn_child(new_value=value), loss)
        except _tell_not_asked():
            self.opt.suggest(**value)  # the next ask returns exactly this candidate
            self.opt.tell(self.opt.ask(), loss)


def _tell_not_asked() -> type[Exception]:
    """Nevergrad's error for an optimizer that takes no candidate it did not ask for."""
    import nevergrad as ng

    return ng.errors.TellNotAskedNotSupportedError
