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

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Scalar = bool | int | float | str


class SpaceError(ValueError):
    """A search space, or a configuration checked against one, is invalid."""


class Condition(BaseModel):
    """Activates a parameter only when its parent's value passes every given test."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    parent: str
    in_: list[Scalar] | None = Field(default=None, alias="in")
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    @model_validator(mode="after")
    def _has_a_test(self) -> Condition:
        if self.in_ is None and all(v is None for v in (self.ge, self.gt, self.le, self.lt)):
            raise ValueError(f"condition on '{self.parent}' needs 'in' or one of ge/gt/le/lt")
        return self

    def holds(self, value: Any) -> bool:
        """True when ``value`` (the parent's value) activates the child."""
        if self.in_ is not None and value not in self.in_:
            return False
        bounds = ((self.ge, lambda v, b: v >= b), (self.gt, lambda v, b: v > b),
                  (self.le, lambda v, b: v <= b), (self.lt, lambda v, b: v < b))
        for bound, test in bounds:
            if bound is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not test(value, bound):
                return False
        return True

    def describe(self) -> str:
        parts = []
        if self.in_ is not None:
            parts.append(f"{self.parent} in {json.dumps(self.in_)}")
        for op, bound in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(self, op) is not None:
                parts.append(f"{self.parent} {bound} {getattr(self, op):g}")
        return " and ".join(parts)


class _Param(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    when: Condition | None = None


class FloatParam(_Param):
    type: Literal["float"] = "float"
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _bounds(self) -> FloatParam:
        _check_bounds(self.name, self.low, self.high, self.log)
        return self

    def check(self, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpaceError(f"parameter '{self.name}': expected a number, got {value!r}")
        if not math.isfinite(value):
            raise SpaceError(f"parameter '{self.name}': {value!r} is not finite")
        if not self.low <= value <= self.high:
            raise SpaceError(
                f"parameter '{self.name}': {value!r} is outside [{self.low:g}, {self.high:g}]"
            )

    def describe(self) -> str:
        return f"float in [{self.low:g}, {self.high:g}]" + (" log" if self.log else "")


class IntParam(_Param):
    type: Literal["int"] = "int"
    low: int
    high: int
    log: bool = False
    step: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _bounds(self) -> IntParam:
        _check_bounds(self.name, self.low, self.high, self.log)
        if self.log and self.step != 1:
            raise ValueError(f"parameter '{self.name}': log and step > 1 cannot be combined")
        if (self.high - self.low) % self.step:
            raise ValueError(f"parameter '{self.name}': high - low must be a multiple of step {self.step}")
        return self

    def check(self, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpaceError(f"parameter '{self.name}': expected an integer, got {value!r}")
        if isinstance(value, float) and not value.is_integer():
            raise SpaceError(f"parameter '{self.name}': expected an integer, got {value!r}")
        if not self.low <= value <= self.high:
            raise SpaceError(f"parameter '{self.name}': {value!r} is outside [{self.low}, {self.high}]")
        if (int(value) - self.low) % self.step:
            raise SpaceError(
                f"parameter '{self.name}': {value!r} is not on the grid {self.low} + k*{self.step}"
            )

    def describe(self) -> str:
        extra = " log" if self.log else (f" step {self.step}" if self.step != 1 else "")
        return f"int in [{self.low}, {self.high}]{extra}"


class CategoricalParam(_Param):
    type: Literal["categorical"] = "categorical"
    choices: list[Scalar] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> CategoricalParam:
        if len({json.dumps(c) for c in self.choices}) != len(self.choices):
            raise ValueError(f"parameter '{self.name}': choices must be unique")
        return self

    def check(self, value: Any) -> None:
        # Exact type match: True is not 1, and "1" is not 1.
        if not any(type(value) is type(c) and value == c for c in self.choices):
            raise SpaceError(
                f"parameter '{self.name}': {value!r} is not one of {json.dumps(self.choices)}"
            )

    def describe(self) -> str:
        return f"one of {json.dumps(self.choices)}"


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


def _check_bounds(name: str, low: float, high: float, log: bool) -> None:
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"parameter '{name}': bounds must be finite")
    if low > high:
        raise ValueError(f"parameter '{name}': low {low:g} is greater than high {high:g}")
    if log and low <= 0:
        raise ValueError(f"parameter '{name}': a log scale needs low > 0, got {low:g}")


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
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpaceError(f"search space file {path} is not valid YAML/JSON: {exc}") from None
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
                out[p.name] = float(value)
        return out

    def is_valid(self, config: Any) -> bool:
        try:
            self.validate(config)
        except SpaceError:
            return False
        return True

    def describe(self) -> str:
        """One deterministic line per parameter, for prompts and tables."""
        lines = []
        for p in self.params:
            cond = f" (only when {p.when.describe()})" if p.when else ""
            lines.append(f"- {p.name}: {p.describe()}{cond}")
        return "\n".join(lines)


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
