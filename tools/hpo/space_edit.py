"""A person's words about a search space: parameter vocabulary, proposed ranges, space edits.

The chat uses these to turn "tune the learning rate and width" into a space; they sit apart from
the space's schema (:mod:`asap.tools.hpo.space`) because they are conversation helpers, not rules.
"""

from __future__ import annotations

from typing import Any

from asap.tools.hpo.space import CategoricalParam, IntParam, Space, SpaceError

# Common hyperparameter names and the ranges a practitioner would start from: what the chat
# proposes for a user's own workload when they name parameters but bring no space file.
KNOWN_RANGES: dict[str, dict[str, Any]] = {
    "lr": {"type": "float", "low": 1.0e-5, "high": 0.1, "log": True},
    "learning_rate": {"type": "float", "low": 1.0e-5, "high": 0.1, "log": True},
    "weight_decay": {"type": "float", "low": 1.0e-6, "high": 1.0e-2, "log": True},
    "width": {"type": "int", "low": 16, "high": 512, "log": True},
    "hidden_size": {"type": "int", "low": 16, "high": 512, "log": True},
    "depth": {"type": "int", "low": 1, "high": 6},
    "n_layers": {"type": "int", "low": 1, "high": 6},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128, 256]},
    "momentum": {"type": "float", "low": 0.0, "high": 0.99},
    "epochs": {"type": "int", "low": 1, "high": 50},
}
ALIASES = {"learning rate": "lr", "learning-rate": "lr", "wd": "weight_decay",
           "weight decay": "weight_decay", "layers": "n_layers", "hidden": "hidden_size",
           "batch size": "batch_size", "batch": "batch_size"}


def canonical(name: str) -> str:
    """A person's name for a parameter as a key: "learning rate" -> lr, "Batch size" -> batch_size."""
    plain = name.strip().lower()
    return ALIASES.get(plain, plain.replace(" ", "_").replace("-", "_"))


def propose_space(names: list[str]) -> tuple[Space, list[str]]:
    """A space over the named parameters from :data:`KNOWN_RANGES`; returns it and the names
    it does not know (the caller asks for their ranges)."""
    specs, unknown = {}, []
    for raw in names:
        key = canonical(raw)
        if key in KNOWN_RANGES:
            specs[key] = KNOWN_RANGES[key]
        else:
            unknown.append(raw)
    if not specs:
        raise SpaceError(f"no known parameter among {names}; known: {sorted(KNOWN_RANGES)}")
    return Space.from_dict(specs), unknown


def restrict(space: Space, keep: list[str], defaults: dict[str, Any] | None = None
             ) -> tuple[Space, dict[str, Any]]:
    """Search only ``keep``; pin every other parameter to one value so the workload still
    receives it: its entry in ``defaults`` (a workload's declared defaults), else the middle of
    its range (on a log scale for log parameters) or its first choice.

    A pinned parameter that can never be active (its parent is pinned to a value its condition
    excludes: ``momentum`` once ``optimizer`` is pinned to adam) leaves the space. Returns the
    new space and the pinned values.
    """
    missing = [k for k in keep if k not in space.names]
    if missing:
        raise SpaceError(f"unknown parameter(s) {missing}; the space has {space.names}")
    spec, pinned, dropped = space.to_dict(), {}, set()
    for p in space.params:
        if p.name in keep:
            continue
        if p.when is not None and (p.when.parent in dropped or (
                p.when.parent in pinned and not p.when.holds(pinned[p.when.parent]))):
            dropped.add(p.name)
            del spec[p.name]
            continue
        value = (defaults or {}).get(p.name)
        if value is None or not p.fits(value):
            value = p.middle()
        pinned[p.name] = value
        spec[p.name] = {"type": "categorical", "choices": [value],
                        **({"when": spec[p.name]["when"]} if "when" in spec[p.name] else {})}
    return Space.from_dict(spec), pinned


def narrow(space: Space, name: str, low: float, high: float, *, inside: bool = True) -> Space:
    """The same space with ``name``'s range cut to ``[low, high]`` (inside the old one), or,
    with ``inside=False``, set to it (the old range was only a guess)."""
    p = space[name] if name in space.names else None
    if p is None:
        raise SpaceError(f"'{name}' is not a numeric parameter of the space ({space.names})")
    if isinstance(p, CategoricalParam):
        raise SpaceError(f"'{name}' is a choice among {p.choices}, not a range")
    if inside and not float(p.low) <= low < high <= float(p.high):
        raise SpaceError(f"the new range of '{name}' must lie inside [{p.low}, {p.high}] with "
                         f"low < high, got [{low}, {high}]")
    if p.log and low <= 0:
        raise SpaceError(f"'{name}' is searched on a log scale: its low must be > 0, "
                         f"got {low:g}")
    spec = space.to_dict()
    spec[name] = {**spec[name], "low": int(low) if isinstance(p, IntParam) else low,
                  "high": int(high) if isinstance(p, IntParam) else high}
    return Space.from_dict(spec)


def pin(space: Space, value: str, name: str | None = None) -> Space:
    """The same space with a categorical parameter fixed to ``value`` ("try adam instead of
    sgd"): ``name``'s, else the one parameter whose choices hold ``value``."""
    holders = [p.name for p in space.params if isinstance(p, CategoricalParam)
               and any(str(c).lower() == value.lower() for c in p.choices)
               and (name is None or canonical(name) in (p.name, canonical(p.name)))]
    if not holders:
        raise SpaceError(f"no parameter of the space has the choice {value!r}")
    if len(holders) > 1:
        raise SpaceError(f"{value!r} is a choice of {holders}: say which parameter")
    p = space[holders[0]]
    choice = next(c for c in p.choices if str(c).lower() == value.lower())
    spec = space.to_dict()
    spec[p.name] = {**spec[p.name], "choices": [choice]}
    return Space.from_dict(spec)
