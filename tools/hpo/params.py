"""The parameters of a search space: float, int and categorical, each optionally conditional.

Each parameter validates its own bounds when built and checks a value against them
(:meth:`check`, raising :class:`SpaceError` naming the parameter); :class:`Condition` says when a
conditional one is active. :class:`~asap.tools.hpo.space.Space` orders them and checks whole configs.
"""

from __future__ import annotations

import json
import math
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Scalar = bool | int | float | str | None  # None: a categorical choice, as in Optuna


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

    def fits(self, value: Any) -> bool:
        """Whether :meth:`check` accepts ``value``."""
        try:
            self.check(value)  # type: ignore[attr-defined]
        except SpaceError:
            return False
        return True

    @field_validator("name")
    @classmethod
    def _printable(cls, v: str) -> str:
        # A name goes into the LLM's prompt as it is: a newline there starts a line of its own
        # (an instruction a space file smuggles in), an ESC a terminal sequence in `asap show`.
        if any(unicodedata.category(c) == "Cc" for c in v):
            raise ValueError(f"parameter {v!r}: a name holds no control characters (newlines, "
                             "tabs, escapes)")
        return v


class FloatParam(_Param):
    type: Literal["float"] = "float"
    low: float
    high: float
    log: bool = False
    step: float | None = Field(default=None, gt=0)  # values low + k*step (Optuna's step)

    @model_validator(mode="after")
    def _bounds(self) -> FloatParam:
        _check_bounds(self.name, self.low, self.high, self.log)
        if self.step is not None:
            if self.log:
                raise ValueError(f"parameter '{self.name}': log and step cannot be combined")
            if abs(self.steps * self.step - (self.high - self.low)) > 1e-9 * max(1.0, self.high):
                raise ValueError(f"parameter '{self.name}': high - low must be a multiple of "
                                 f"step {self.step:g}")
        return self

    @property
    def steps(self) -> int:
        """How many steps the grid has (its points are one more)."""
        return round((self.high - self.low) / self.step) if self.step else 0

    def middle(self) -> float:
        """Where the parameter stands before anything is known: the middle of its range (on a
        log scale for a log one), on its grid."""
        mid = math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2
        return self.snap(mid)

    def snap(self, value: float) -> float:
        """``value`` on the grid (the nearest point of it, inside the bounds): what a
        continuous optimizer's proposal becomes."""
        if self.step is None:
            return min(max(float(value), self.low), self.high)
        k = min(max(round((float(value) - self.low) / self.step), 0), self.steps)
        return float(min(self.low + k * self.step, self.high))

    def check(self, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpaceError(f"parameter '{self.name}': expected a number, got {value!r}")
        if not math.isfinite(value):
            raise SpaceError(f"parameter '{self.name}': {value!r} is not finite")
        if not self.low <= value <= self.high:
            raise SpaceError(
                f"parameter '{self.name}': {value!r} is outside [{self.low:g}, {self.high:g}]"
            )
        if self.step is not None and abs(self.snap(value) - value) > 1e-9 * max(1.0, abs(value)):
            raise SpaceError(f"parameter '{self.name}': {value!r} is not on the grid "
                             f"{self.low:g} + k*{self.step:g}")

    def describe(self) -> str:
        return f"float in [{self.low:g}, {self.high:g}]" + (" log" if self.log else "") + (
            f" step {self.step:g}" if self.step else "")


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

    def middle(self) -> int:
        """The middle of the range (on a log scale for a log one), on the step's grid."""
        mid = math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2
        if self.step != 1:
            mid = self.low + round((mid - self.low) / self.step) * self.step
        return int(round(mid))

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

    def middle(self) -> Scalar:
        """Its first choice."""
        return self.choices[0]

    def describe(self) -> str:
        return f"one of {json.dumps(self.choices)}"


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


def _check_bounds(name: str, low: float, high: float, log: bool) -> None:
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"parameter '{name}': bounds must be finite")
    if low > high:
        raise ValueError(f"parameter '{name}': low {low:g} is greater than high {high:g}")
    if not math.isfinite(high - low):  # +-1e308: every tool's arithmetic would overflow
        raise ValueError(f"parameter '{name}': the range {low:g} .. {high:g} is too wide "
                         "(high - low overflows); use a log scale or narrower bounds")
    if log and low <= 0:
        raise ValueError(f"parameter '{name}': a log scale needs low > 0, got {low:g}")
