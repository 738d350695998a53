"""Typed search spaces with conditional (hierarchical) parameters.

A :class:`Space` is an ordered list of parameters. A parameter may carry a ``when`` condition on
an earlier parameter, which makes it active only for some parent values (``momentum`` only when
``optimizer == "sgd"``; ``n_units_l3`` only when ``n_layers >= 3``). Order matters: a parent comes
before its children, which is what define-by-run samplers (Optuna) need.

Example::

    space = Space.from_dict({
        "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
        "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
        "momentum": {"type": "float", "low": 0.0, "high": 0.99,
                     "when": {"parent": "optimizer", "in": ["sgd"]}},
    })
    space.validate({"lr": 0.01, "optimizer": "adam"})
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from asap.tools.hpo.params import (
    CategoricalParam,
    Condition,
    FloatParam,
    IntParam,
    Param,
    Scalar,
    SpaceError,
)
from asap.tools.types import config_key
from asap.tools.yaml_file import load_yaml

__all__ = ["CategoricalParam", "Condition", "FloatParam", "IntParam", "Param", "Scalar", "Space",
           "SpaceError"]


class Space(BaseModel):
    """An ordered, validated search space; parents precede the parameters they condition."""

    model_config = ConfigDict(extra="forbid")

    params: list[Param] = Field(min_length=1)

    @model_validator(mode="after")
    def _structure(self) -> Space:
        seen: dict[str, Any] = {}
        for p in self.params:
            if p.name in seen:
                raise ValueError(f"parameter '{p.name}' is defined twice")
            if p.when is not None:
                if p.when.parent == p.name:
                    raise ValueError(f"parameter '{p.name}' is conditioned on itself (a cycle)")
                if p.when.parent not in seen:
                    known = {q.name for q in self.params}
                    why = "must come before it" if p.when.parent in known else "does not exist"
                    raise ValueError(
                        f"parameter '{p.name}': its parent '{p.when.parent}' {why}"
                        + (" (conditions may not form a cycle)" if p.when.parent in known else "")
                    )
            seen[p.name] = p
        return self

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Space:
        """Build from ``{name: spec}`` (or ``{"params": {...}}`` / ``{"params": [...]}``)."""
        if not isinstance(data, dict):
            raise SpaceError(f"a search space must be a mapping, got {type(data).__name__}")
        body = data.get("params", data)
        if isinstance(body, dict):
            items = []
            for name, spec in body.items():
                if not isinstance(spec, dict):
                    raise SpaceError(f"parameter '{name}': expected a mapping, got {spec!r}")
                items.append({"name": name, **spec})
        elif isinstance(body, list):
            items = body
        else:
            raise SpaceError("'params' must be a mapping or a list")
        try:
            return cls(params=items)
        except ValidationError as exc:
            raise SpaceError(_explain(exc, items)) from None

    @classmethod
    def from_file(cls, path: str | Path) -> Space:
        """Load a YAML or JSON file (JSON is YAML, so one parser serves both)."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise SpaceError(f"cannot read search space file {path}: {exc.strerror}") from None
        data = load_yaml(text, f"search space file {path}")
        try:
            return cls.from_dict(data)
        except SpaceError as exc:
            raise SpaceError(f"{path}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """The ``{name: spec}`` form that :meth:`from_dict` reads back."""
        out = {}
        for p in self.params:
            spec = p.model_dump(by_alias=True, exclude_none=True, exclude={"name"})
            if isinstance(p, IntParam) and p.step == 1:
                spec.pop("step")
            if not getattr(p, "log", True):
                spec.pop("log")
            out[p.name] = spec
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)

    # -- queries ------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def __getitem__(self, name: str) -> FloatParam | IntParam | CategoricalParam:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    @staticmethod
    def is_active(param: FloatParam | IntParam | CategoricalParam, config: dict[str, Any]) -> bool:
        """Whether ``param`` is active under ``config`` (its parent's value read from it)."""
        return param.when is None or (
            param.when.parent in config and param.when.holds(config[param.when.parent]))

    def active(self, config: dict[str, Any]) -> list[FloatParam | IntParam | CategoricalParam]:
        """The parameters active under ``config`` (parents are read from ``config``)."""
        return [p for p in self.params if self.is_active(p, config)]

    def build(self, value: Callable[[Param], Any]) -> dict[str, Any]:
        """A configuration built parameter by parameter in the space's order: each active one
        takes ``value(param)``, an inactive one (its parent's value, built before it, switches
        it off) is left out. How a tool's proposal becomes a configuration."""
        config: dict[str, Any] = {}
        for p in self.params:
            if self.is_active(p, config):
                config[p.name] = value(p)
        return config

    def json_schema(self) -> dict[str, Any]:
        """The space as JSON schema: typed, bounded properties and nothing else.

        A free-form object lets a small model ramble until max_tokens; a closed one keeps its
        answer short, and listing the unconditional parameters as required stops it from leaving
        some out. Conditions are not expressible here, so configs are still validated.
        """
        props: dict[str, Any] = {}
        for p in self.params:
            if isinstance(p, CategoricalParam):
                props[p.name] = {"enum": p.choices}
            else:
                kind = "number" if isinstance(p, FloatParam) else "integer"
                props[p.name] = {"type": kind, "minimum": p.low, "maximum": p.high}
        required = [p.name for p in self.params if p.when is None]
        return {"type": "object", "properties": props, "required": required,
                "additionalProperties": False}

    def validate(self, config: Any) -> dict[str, Any]:
        """Check ``config`` and return it in canonical order; raise SpaceError naming the problem.

        Every active parameter must be present and inside its bounds; inactive or unknown keys are
        errors, because a config that silently carries junk would be logged as if it mattered.
        """
        if not isinstance(config, dict):
            raise SpaceError(f"a configuration must be a mapping, got {type(config).__name__}")
        unknown = [k for k in config if k not in self.names]
        if unknown:
            raise SpaceError(f"unknown parameter(s) {unknown}; the space has {self.names}")
        out: dict[str, Any] = {}
        for p in self.params:
            if not self.is_active(p, out):
                if p.name in config:
                    raise SpaceError(f"parameter '{p.name}' is inactive here (needs {p.when.describe()})")
                continue
            if p.name not in config:
                raise SpaceError(f"parameter '{p.name}' is missing")
            value = config[p.name]
            p.check(value)
            out[p.name] = int(value) if isinstance(p, IntParam) else value
            if isinstance(p, FloatParam):
                out[p.name] = p.snap(value)  # on the grid's own float, not 0.30000000000000004
        return out

    def countable(self, limit: int = 100_000) -> list[list[Any]] | None:
        """Every parameter's values when the space is finite (integers, choices, floats with
        ``low == high``) and has at most ``limit`` points; None otherwise."""
        values: list[list[Any]] = []
        for p in self.params:
            if isinstance(p, CategoricalParam):
                values.append(list(p.choices))
            elif isinstance(p, IntParam) and (p.high - p.low) // p.step < limit:
                values.append(list(range(p.low, p.high + 1, p.step)))
            elif isinstance(p, FloatParam) and p.low == p.high:
                values.append([float(p.low)])
            elif isinstance(p, FloatParam) and p.step and p.steps < limit:
                values.append([p.snap(p.low + k * p.step) for k in range(p.steps + 1)])
            else:
                return None
        return values if math.prod(len(v) for v in values) <= limit else None

    def untried(self, taken: set[str]) -> dict[str, Any] | None:
        """A valid configuration whose :func:`config_key` is not in ``taken``, in a
        :meth:`countable` space; None when every point is taken (or it is not countable).

        Why: the tools sample, and in a small discrete space their samples repeat (an int 1..10
        with 10 trials ran x=3 twice and never x=2); enumerating finds what is left."""
        values = self.countable()
        for combo in itertools.product(*values) if values is not None else ():
            full = dict(zip(self.names, combo, strict=True))
            config = self.validate({p.name: full[p.name] for p in self.active(full)})
            if config_key(config) not in taken:
                return config
        return None

    def is_valid(self, config: Any) -> bool:
        try:
            self.validate(config)
        except SpaceError:
            return False
        return True

    def format(self, config: dict[str, Any]) -> str:
        """``config`` for people: ``name=value`` in the space's order, numbers as
        :func:`format_value` writes them (what the prompt shows), keys the space lacks last."""
        keys = [n for n in self.names if n in config] + [k for k in config if k not in self.names]
        return ", ".join(f"{k}={format_value(config[k])}" for k in keys)

    def describe(self, free_only: bool = False) -> str:
        """One deterministic line per parameter, for prompts and tables; ``free_only`` leaves
        out parameters with a single choice (pinned)."""
        lines = []
        for p in self.params:
            if free_only and isinstance(p, CategoricalParam) and len(p.choices) == 1:
                continue
            cond = f" (only when {p.when.describe()})" if p.when else ""
            lines.append(f"- {p.name}: {p.describe()}{cond}")
        return "\n".join(lines)


def format_value(value: Any) -> str:
    """Deterministic value formatting: 3 significant digits, a bare exponent for very small or
    large numbers (``2.17e-4``), bare words; no locale or repr drift.

    Why so short: SmolLM2's tokenizer spends a token per digit, and numbers are most of a
    round's prompt: ``0.0002171`` is 9 tokens, ``2.17e-4`` 7. Three digits still tell apart the
    configurations tools propose and a table's grid points.
    """
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e3 or not math.isfinite(value):
            return format(value, ".3g")
        mantissa, _, exponent = format(value, ".2e").partition("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    if isinstance(value, str) and value and " " not in value and value != "-":
        return value
    return json.dumps(value)


def _explain(exc: ValidationError, items: list[Any]) -> str:
    """Turn pydantic's nested error into one line that names the parameter."""
    err = exc.errors()[0]
    loc = list(err["loc"])
    where = ""
    if len(loc) >= 2 and loc[0] == "params" and isinstance(loc[1], int) and loc[1] < len(items):
        item = items[loc[1]]
        name = item.get("name", f"#{loc[1]}") if isinstance(item, dict) else f"#{loc[1]}"
        field = ".".join(str(x) for x in loc[3:] if not isinstance(x, int))
        where = f"parameter '{name}'" + (f", field '{field}'" if field else "")
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "union_tag_invalid":
        msg = f"unknown type {err.get('input', {}).get('type')!r}; use float, int or categorical"
    if err["type"] == "union_tag_not_found":
        msg = "missing 'type' (float, int or categorical)"
    if msg.startswith("parameter '") or not where:
        return msg
    return f"{where}: {msg}"
