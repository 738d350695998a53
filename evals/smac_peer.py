"""SMAC3's hyperparameter-optimization facade as an eval peer: what a user who knows the field
would run instead of asap, asked and told through SMAC's own ask-and-tell.

SMAC3 is an optional extra (``pip install 'asap-hpo[smac]'``) so the default install stays lean;
without it the method stops with one line saying how to install it. The space is translated to
ConfigSpace: choices by their index (a choice may be ``None``, which ConfigSpace cannot hold), a
stepped number by its index on the grid (so a condition on it holds for the value asap sees),
conditions as ConfigSpace conditions.
"""

from __future__ import annotations

import importlib.util
import math
import tempfile
from collections.abc import Callable
from typing import Any

from asap.tools.hpo.params import Condition
from asap.tools.hpo.space import CategoricalParam, FloatParam, IntParam, Space

INSTALL = "pip install 'asap-hpo[smac]'"
MISSING = f"the smac method needs SMAC3, an optional extra: {INSTALL}"


class SmacMissing(ValueError):
    """SMAC3 is not installed; the message says how to install it."""


def check_installed() -> None:
    """:class:`SmacMissing` unless SMAC3 can be imported (checked without importing it: a grid
    asks before its first cell, and SMAC's imports are slow)."""
    if importlib.util.find_spec("smac") is None:
        raise SmacMissing(f"{MISSING} (or leave smac out of --methods)")


def facade() -> tuple[Any, Any]:
    """SMAC's HPO facade and Scenario, or :class:`SmacMissing` naming the install command."""
    try:
        from smac import HyperparameterOptimizationFacade, Scenario
    except ImportError as exc:
        raise SmacMissing(f"{MISSING} ({exc})") from None
    return HyperparameterOptimizationFacade, Scenario


def _grid(p: Any) -> int | None:
    """The last index of a stepped number's grid (its values ``low + k * step``); None for a
    choice or a number without a step."""
    if isinstance(p, FloatParam) and p.step is not None:
        return p.steps
    if isinstance(p, IntParam) and p.step != 1:
        return (p.high - p.low) // p.step
    return None


def config_space(space: Space, seed: int) -> Any:
    """``space`` as a ConfigSpace ``ConfigurationSpace``."""
    from ConfigSpace import Categorical, ConfigurationSpace, Float, Integer

    cs = ConfigurationSpace(seed=seed)
    for p in space.params:
        if isinstance(p, CategoricalParam):
            cs.add(Categorical(p.name, [str(i) for i in range(len(p.choices))]))
        elif (last := _grid(p)) is not None:
            cs.add(Integer(p.name, (0, last)))
        elif isinstance(p, FloatParam):
            cs.add(Float(p.name, (p.low, p.high), log=p.log))
        else:
            cs.add(Integer(p.name, (p.low, p.high), log=p.log))
    for p in space.params:
        if p.when is not None:
            cs.add(_condition(cs, space, p.name, p.when))
    return cs


def _condition(cs: Any, space: Space, child: str, when: Condition) -> Any:
    """A :class:`Condition` as ConfigSpace's: ``in`` over the parent's choices (by index), the
    bounds as greater/less-than tests (``ge``/``le`` one step inside; on a stepped parent, on
    its grid's index), all of them together."""
    from ConfigSpace import AndConjunction, GreaterThanCondition, InCondition, LessThanCondition

    parent = space[when.parent]
    grid = _grid(parent) is not None
    whole = grid or isinstance(parent, IntParam)  # SMAC's value for the parent is an integer

    def at(v: float) -> float:  # a value of the parent where SMAC's lives (a grid's index)
        x = (v - parent.low) / parent.step if grid else v
        return round(x) if whole and abs(x - round(x)) < 1e-9 else x

    tests = []
    if when.in_ is not None:
        values = ([str(parent.choices.index(v)) for v in when.in_ if v in parent.choices]
                  if isinstance(parent, CategoricalParam) else [at(v) for v in when.in_])
        tests.append(InCondition(cs[child], cs[when.parent], values))
    cut: dict[str, Callable[[float], float]] = (
        {"gt": math.floor, "ge": lambda x: math.ceil(x) - 1,
         "lt": math.ceil, "le": lambda x: math.floor(x) + 1} if whole else
        {"gt": float, "ge": lambda x: math.nextafter(x, -math.inf),
         "lt": float, "le": lambda x: math.nextafter(x, math.inf)})
    for op, test in (("gt", GreaterThanCondition), ("ge", GreaterThanCondition),
                     ("lt", LessThanCondition), ("le", LessThanCondition)):
        if (bound := getattr(when, op)) is not None:
            tests.append(test(cs[child], cs[when.parent], cut[op](at(bound))))
    return tests[0] if len(tests) == 1 else AndConjunction(*tests)


def to_config(space: Space, smac_config: Any) -> dict[str, Any]:
    """SMAC's configuration in the space's values: choices back from their index, a stepped
    number from its grid index, numbers as Python numbers."""
    raw = dict(smac_config)
    out: dict[str, Any] = {}
    for p in space.params:
        if p.name not in raw:
            continue
        v = raw[p.name]
        if isinstance(p, CategoricalParam):
            out[p.name] = p.choices[int(v)]
        elif _grid(p) is not None:
            value = p.low + int(v) * p.step
            out[p.name] = p.snap(value) if isinstance(p, FloatParam) else int(value)
        else:
            out[p.name] = float(v) if isinstance(p, FloatParam) else int(v)
    return out


class SmacAsker:
    """SMAC's HPO facade with its defaults, asked and told one trial at a time (cost minimized:
    a maximized metric is told negated)."""

    def __init__(self, space: Space, direction: str, trials: int, seed: int) -> None:
        hpo, scenario = facade()
        from smac.runhistory.dataclasses import TrialValue
        from smac.runhistory.enumerations import StatusType

        self.space, self.sign = space, -1.0 if direction == "maximize" else 1.0
        self._value, self._crashed = TrialValue, StatusType.CRASHED
        self._out = tempfile.TemporaryDirectory(prefix="asap-smac-")
        self.smac = hpo(scenario(config_space(space, seed), deterministic=True, n_trials=trials,
                                 seed=seed, output_directory=self._out.name),
                        target_function=lambda config, seed=0: 0.0,  # never called: ask-and-tell
                        overwrite=True, logging_level=40)
        self._costs: list[float] = []

    def ask(self) -> tuple[dict[str, Any], Any]:
        """The next configuration, and SMAC's trial info to tell its result with."""
        info = self.smac.ask()
        return to_config(self.space, info.config), info

    def tell(self, info: Any, value: float | None) -> None:
        """The result of the configuration ``info`` was asked with; one that failed (None) is
        told as crashed at the worst cost told so far (SMAC's default crash cost, infinity,
        turns its random forest's targets into NaN)."""
        if value is None:
            worst = max(self._costs, default=0.0)
            self.smac.tell(info, self._value(cost=worst, status=self._crashed))
        else:
            self._costs.append(self.sign * value)
            self.smac.tell(info, self._value(cost=self.sign * value))

    def close(self) -> None:
        self._out.cleanup()
