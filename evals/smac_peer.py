"""SMAC3's hyperparameter-optimization facade as an eval peer: what a user who knows the field
would run instead of asap, asked and told through SMAC's own ask-and-tell.

SMAC3 is an optional extra (``pip install 'asap-hpo[smac]'``) so the default install stays lean;
without it the method stops with one line saying how to install it. The space is translated to
ConfigSpace: choices by their index (a choice may be ``None``, which ConfigSpace cannot hold),
conditions as ConfigSpace conditions, a step by snapping SMAC's value to it.
"""

from __future__ import annotations

import importlib.util
import math
import tempfile
from typing import Any

from asap.tools.params import Condition
from asap.tools.space import CategoricalParam, FloatParam, IntParam, Space

INSTALL = "pip install 'asap-hpo[smac]'"


class SmacMissing(ValueError):
    """SMAC3 is not installed; the message says how to install it."""


def check_installed() -> None:
    """:class:`SmacMissing` unless SMAC3 can be imported (checked without importing it: a grid
    asks before its first cell, and SMAC's imports take ~2 s)."""
    if importlib.util.find_spec("smac") is None:
        raise SmacMissing(f"the smac method needs SMAC3, an optional extra: {INSTALL} (or leave "
                          "smac out of --methods)")


def facade() -> tuple[Any, Any]:
    """SMAC's HPO facade and Scenario, or :class:`SmacMissing` naming the install command."""
    try:
        from smac import HyperparameterOptimizationFacade, Scenario
    except ImportError as exc:
        raise SmacMissing(f"the smac method needs SMAC3, an optional extra: {INSTALL} "
                          f"({exc})") from None
    return HyperparameterOptimizationFacade, Scenario


def config_space(space: Space, seed: int) -> Any:
    """``space`` as a ConfigSpace ``ConfigurationSpace``."""
    from ConfigSpace import Categorical, ConfigurationSpace, Float, Integer

    cs = ConfigurationSpace(seed=seed)
    for p in space.params:
        if isinstance(p, CategoricalParam):
            cs.add(Categorical(p.name, [str(i) for i in range(len(p.choices))]))
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
    bounds as greater/less-than tests (``ge``/``le`` one step inside), all of them together."""
    from ConfigSpace import AndConjunction, GreaterThanCondition, InCondition, LessThanCondition

    parent = space[when.parent]
    tests = []
    if when.in_ is not None:
        values = ([str(parent.choices.index(v)) for v in when.in_ if v in parent.choices]
                  if isinstance(parent, CategoricalParam) else list(when.in_))
        tests.append(InCondition(cs[child], cs[when.parent], values))
    below = (lambda v: v - 1) if isinstance(parent, IntParam) else (
        lambda v: math.nextafter(v, -math.inf))
    above = (lambda v: v + 1) if isinstance(parent, IntParam) else (
        lambda v: math.nextafter(v, math.inf))
    for bound, make in ((when.gt, lambda v: GreaterThanCondition(cs[child], cs[when.parent], v)),
                        (None if when.ge is None else below(when.ge),
                         lambda v: GreaterThanCondition(cs[child], cs[when.parent], v)),
                        (when.lt, lambda v: LessThanCondition(cs[child], cs[when.parent], v)),
                        (None if when.le is None else above(when.le),
                         lambda v: LessThanCondition(cs[child], cs[when.parent], v))):
        if bound is not None:
            tests.append(make(bound))
    return tests[0] if len(tests) == 1 else AndConjunction(*tests)


def to_config(space: Space, smac_config: Any) -> dict[str, Any]:
    """SMAC's configuration in the space's values: choices back from their index, numbers as
    Python numbers on the parameter's step."""
    raw = dict(smac_config)
    out: dict[str, Any] = {}
    for p in space.params:
        if p.name not in raw:
            continue
        v = raw[p.name]
        if isinstance(p, CategoricalParam):
            out[p.name] = p.choices[int(v)]
        elif isinstance(p, FloatParam):
            out[p.name] = p.snap(float(v))
        else:
            k = round((int(v) - p.low) / p.step)
            out[p.name] = int(min(max(p.low + k * p.step, p.low), p.high))
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
        self._asked: dict[str, list[Any]] = {}
        self._costs: list[float] = []

    def ask(self, key: Any) -> dict[str, Any]:
        """The next configuration; ``key(config)`` files SMAC's trial info for :meth:`tell`."""
        info = self.smac.ask()
        config = to_config(self.space, info.config)
        self._asked.setdefault(key(config), []).append(info)
        return config

    def tell(self, key: str, value: float | None) -> None:
        """The result of the configuration filed under ``key``; one that failed (None) is told
        as crashed at the worst cost told so far (SMAC's default crash cost, infinity, turns
        its random forest's targets into NaN)."""
        info = self._asked[key].pop(0)
        if value is None:
            worst = max(self._costs, default=0.0)
            self.smac.tell(info, self._value(cost=worst, status=self._crashed))
        else:
            self._costs.append(self.sign * value)
            self.smac.tell(info, self._value(cost=self.sign * value))

    def close(self) -> None:
        self._out.cleanup()
