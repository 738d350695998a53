"""Define-by-run objectives: an Optuna ``objective(trial)`` run as it is, its space learned from
its ``suggest_*`` calls.

Why: an Optuna user's objective declares its search space while it runs (``x =
trial.suggest_float("x", -10, 10)``), conditional parameters included (a parameter suggested
only under one branch). asap's tools and prior need the space up front, so it is learned as
trials run: :class:`DefineByRun` wraps the objective as an asap workload ``(config, report)``;
in the worker, :class:`SuggestTrial` answers each ``suggest_*`` with the configuration's value,
or, for a parameter the space does not have yet (or holds inactive here), with the middle of
its range (the centre asap starts from), and the trial's return carries what was suggested
(:data:`PAYLOAD`). From every trial's record :func:`learn` builds the space: parameters in the
order first suggested, a parameter absent from some trials conditional on the earlier one whose
values tell when it is asked (``when: {parent: classifier, in: [SVC]}``, or a bound on a number).
When the space grows, the session ends and the next starts on the new space with the trials'
configurations rewritten to what each one used (:func:`configs_in`), so the panel's tools are
rebuilt on it and told every trial.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from asap.tools.hpo.space import Space
from asap.tools.types import Trial, is_pruned

PAYLOAD = "__asap_trial__"  # the key a define-by-run trial's return carries its record under
PROBE = Space.from_dict({"__probe__": {"type": "categorical", "choices": [0]}})  # nothing known
Spec = dict[str, Any]


def takes_trial(objective: Callable[..., Any]) -> bool:
    """Whether ``objective`` is Optuna-style, ``objective(trial)``: one parameter to pass. An
    asap objective is called as ``(config, report)``, so one whose ``report`` has a default
    (``objective(config, report=None)``, callable both ways) is asap's unless its one required
    parameter is named as Optuna names it."""
    try:
        params = list(inspect.signature(objective).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    return len(required) == 1 and (len(positional) == 1 or "trial" in required[0].name)


def _param(name: str, spec: Spec) -> Any:
    """``spec`` as the space's parameter; a SpaceError names what is wrong with it."""
    return Space.from_dict({name: spec})[name]


def _spec(kind: str, name: str, **given: Any) -> Spec:
    """A suggest call's distribution as a space entry, checked as the space checks it."""
    spec = {"type": kind, **{k: v for k, v in given.items() if v is not None and v is not False}}
    if kind == "int" and spec.get("step") == 1:
        spec.pop("step")
    _param(name, spec)
    return spec


class SuggestTrial:
    """What an Optuna objective is handed in an asap trial: the ``suggest_*`` calls, reports
    and pruning, user attributes, ``number`` and ``params``, as Optuna's ``Trial`` has them."""

    def __init__(self, config: dict[str, Any], report: Callable[[int, float], bool],
                 known: dict[str, Spec], number: int | None) -> None:
        self._config, self._report, self._known = config, report, known
        self.number = number if number is not None else -1
        self.params: dict[str, Any] = {}
        self.distributions: dict[str, Spec] = {}
        self.user_attrs: dict[str, Any] = {}
        self.values: dict[int, float] = {}  # its reports, step -> value
        self._prune = False

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        return self._suggest(name, _spec("float", name, low=low, high=high, step=step, log=log))

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1,
                    log: bool = False) -> int:
        return self._suggest(name, _spec("int", name, low=low, high=high, step=step, log=log))

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._suggest(name, _spec("categorical", name, choices=list(choices)))

    def report(self, value: float, step: int) -> None:
        """An intermediate value (Optuna's argument order); the pruner's answer is kept for
        :meth:`should_prune`."""
        self.values[int(step)] = float(value)
        self._prune = bool(self._report(int(step), float(value))) or self._prune

    def should_prune(self) -> bool:
        return self._prune

    def set_user_attr(self, key: str, value: Any) -> None:
        self.user_attrs[key] = value

    def _suggest(self, name: str, spec: Spec) -> Any:
        seen = self.distributions.get(name) or self._known.get(name)
        if seen is not None and {k: v for k, v in seen.items() if k != "when"} != spec:
            raise ValueError(f"suggest for {name!r} asks {_words(spec)}, but an earlier "
                             f"{'call' if name in self.distributions else 'trial'} asked "
                             f"{_words(seen)}: a parameter keeps one distribution")
        if name not in self.params:
            given = self._config.get(name)
            # a parameter the space lacks starts where asap starts one: its middle
            self.params[name] = given if name in self._config else _param(name, spec).middle()
        self.distributions[name] = spec
        return self.params[name]

    def record(self, pruned: bool = False) -> dict[str, Any]:
        """What the trial suggested and used, in call order, for the ledger."""
        return {"suggested": self.distributions, "used": self.params,
                "user_attrs": self.user_attrs, "pruned": pruned}


def _words(spec: Spec) -> str:
    if spec["type"] == "categorical":
        return f"choices {spec['choices']}"
    return (f"{spec['type']} [{spec['low']}, {spec['high']}]" + (" log" if spec.get("log")
            else "") + (f" step {spec['step']}" if spec.get("step") else ""))


class DefineByRun:
    """An Optuna-style objective as an asap workload ``(config, report) -> dict``: pickled with
    a reference to the objective, so it runs in a worker process like any objective."""

    def __init__(self, objective: Callable[[Any], Any], metric: str, known: dict[str, Spec]
                 ) -> None:
        self.objective, self.metric, self.known = objective, metric, known

    def __call__(self, config: dict[str, Any], report: Callable[[int, float], bool],
                 number: int | None = None) -> dict[str, Any]:
        trial = SuggestTrial(config, report, self.known, number)
        try:
            value = self.objective(trial)
        except BaseException as exc:
            if not is_pruned(exc):
                raise
            last = trial.values[max(trial.values)] if trial.values else None
            return {**({self.metric: last} if last is not None else {}),
                    PAYLOAD: trial.record(pruned=True)}
        if isinstance(value, dict):
            return {**value, PAYLOAD: trial.record()}
        return {self.metric: value, PAYLOAD: trial.record()}


def learn(trials: Sequence[Trial], known: dict[str, Spec]) -> dict[str, Spec]:
    """The space the trials' records show (parameters in the order first suggested, each
    one's distribution, and a condition for one some trials did not ask): ``known`` grown."""
    records = [t.meta for t in trials if isinstance(t.meta.get("used"), dict)]
    specs: dict[str, Spec] = {k: {kk: vv for kk, vv in v.items() if kk != "when"}
                              for k, v in known.items()}
    for r in records:
        for name, spec in r["suggested"].items():
            if name in specs and specs[name] != spec:
                raise ValueError(f"parameter {name!r} was suggested as {_words(specs[name])} "
                                 f"and as {_words(spec)}: a parameter keeps one distribution")
            specs.setdefault(name, spec)
    used = [r["used"] for r in records]
    out: dict[str, Spec] = {}
    for name, spec in specs.items():
        when = None
        if used and not all(name in u for u in used):
            when = _condition(name, list(out), used, known.get(name, {}).get("when"))
        out[name] = {**spec, **({"when": when} if when else {})}
    return out


def _condition(name: str, before: list[str], used: list[dict[str, Any]],
               was: dict[str, Any] | None) -> dict[str, Any] | None:
    """The test on an earlier parameter that tells when ``name`` is asked, or None when no
    single parameter tells (then it is searched always and ignored where unused)."""
    for parent in reversed(before):  # the nearest earlier one first
        if any(name in u and parent not in u for u in used):
            continue  # asked without the parent: not conditioned on it
        withs = [u[parent] for u in used if name in u]
        without = [u[parent] for u in used if name not in u and parent in u]
        if not without or not withs:
            continue
        if all(isinstance(v, bool) or not isinstance(v, int | float) for v in withs + without):
            if not set(map(repr, withs)) & set(map(repr, without)):
                return {"parent": parent, "in": list(dict.fromkeys(withs))}
            continue
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in withs + without):
            if max(without) < min(withs):
                return {"parent": parent, "gt": float(max(without))}
            if max(withs) < min(without):
                return {"parent": parent, "lt": float(min(without))}
    return was


def configs_in(space: Space, trials: Sequence[Trial]) -> dict[int, dict[str, Any]]:
    """Each trial's configuration in ``space``: what it used (a trial that failed before it
    said: its configuration), an active parameter it did not ask at the middle of its range,
    an inactive one left out."""
    out = {}
    for t in trials:
        used = t.meta.get("used") if isinstance(t.meta.get("used"), dict) else t.config
        out[t.id] = space.validate(space.build(
            lambda p, used=used: used[p.name] if p.name in used and p.fits(used[p.name])
            else p.middle()))
    return out
