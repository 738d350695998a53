"""The command line's settings flags, generated from :class:`~asap.agent.config.TuneConfig`.

Why generated: flags copied by hand drift from the library (their choice lists written twice,
their defaults not the library's). Each flag takes its name, type, ``Literal`` choices, default
and help from the field; :data:`ALIASES` is the
short table of flags whose CLI name differs from the field's. Unset flags are left out, so the
model's defaults apply: they live once, in TuneConfig.
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Iterable
from typing import Any, Literal, Union, get_args, get_origin

from pydantic.fields import FieldInfo

from asap.agent.config import TuneConfig

# CLI-only names: a unit left out, or an ablation switch spelled as what it turns off.
ALIASES = {"time_budget_s": "--time-budget", "trial_timeout_s": "--trial-timeout",
           "llm_timeout_s": "--llm-timeout", "decide_ahead": "--no-ahead",
           "selftune": "--no-selftune"}
SELF_TUNED = {"context", "depth", "plan"}  # None is spelled "auto": the self-tuner sets them
METAVARS = {"cost_weight": "{W,cool}", "clock": "{real,virtual}",
            "ray_address": "ADDR", "study": "NAME", "base_url": "URL", "model": "NAME", "optuna_storage": "URL", "space": "FILE", "db": "FILE"}
SKIP = {"workload", "api_key"}  # a positional argument; the key only from OPENAI_API_KEY


def flag_of(name: str) -> str:
    """The CLI flag of TuneConfig field ``name``."""
    return ALIASES.get(name) or "--" + name.replace("_", "-")


def _inner(annotation: Any) -> list[Any]:
    """The members of ``X | None`` / ``X | Literal[...]`` (one item for a plain type)."""
    if get_origin(annotation) in (Union, types.UnionType):
        return [a for a in get_args(annotation) if a is not type(None)]
    return [annotation]


def _extra(field: FieldInfo) -> dict[str, Any]:
    """A field's schema extras, computed when asked (the protocol registry's names and help)."""
    extra = field.json_schema_extra
    if callable(extra):
        extra(schema := {})
        return schema
    return extra if isinstance(extra, dict) else {}


def choices_of(field: FieldInfo) -> list[str] | None:
    """The names a field takes: its ``Literal`` values or its schema's enum."""
    extra = _extra(field)
    if "enum" in extra:
        return list(extra["enum"])  # type: ignore[arg-type]
    members = _inner(field.annotation)
    if len(members) == 1 and get_origin(members[0]) is Literal:
        return [str(v) for v in get_args(members[0])]
    return None


def _help(name: str, field: FieldInfo) -> str:
    text = str(field.description or _extra(field).get("description", "")).rstrip(".")
    default = field.default
    if name in SELF_TUNED:
        shown = "auto"
    elif isinstance(default, bool):
        shown = "on" if default else "off"
    else:
        shown = None if default is None else default
    if name in ("decide_ahead", "selftune"):
        return text + " (this flag turns it off)"
    return f"{text} (default: {shown})" if shown is not None else text


def add_settings(parser: argparse.ArgumentParser, names: Iterable[str] | None = None,
                 help_overrides: dict[str, str] | None = None, *, keep_defaults: bool = False
                 ) -> None:
    """Add a flag for each TuneConfig field (``names``: only these), in the model's order.
    Unset flags are absent from the parsed namespace (the model's defaults apply), or with
    ``keep_defaults`` hold the field's default (commands that read a few settings directly)."""
    wanted = set(names) if names is not None else None
    for name, field in TuneConfig.model_fields.items():
        if name in SKIP or (wanted is not None and name not in wanted):
            continue
        flag, text = flag_of(name), (help_overrides or {}).get(name) or _help(name, field)
        if flag.startswith("--no-"):
            parser.add_argument(flag, dest=name, action="store_false",
                                default=field.default if keep_defaults else argparse.SUPPRESS,
                                help=text)
            continue
        choices = choices_of(field)
        parser.add_argument(flag, dest=name, help=text,
                            default=field.default if keep_defaults else argparse.SUPPRESS,
                            choices=choices if name not in METAVARS else None,
                            metavar=METAVARS.get(name) or (None if choices else _metavar(name,
                                                                                     field)))


def _metavar(name: str, field: FieldInfo) -> str:
    members = _inner(field.annotation)
    if name in SELF_TUNED:
        return "{N,auto}"
    if name.endswith("_s"):
        return "SECONDS"
    if members == [bool]:
        return "{on,off}"
    return "N" if int in members else "X" if float in members else "TEXT"


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    """The settings flags given on the command line, as TuneConfig values (the model
    validates them; a value that is not even a number is named here)."""
    out: dict[str, Any] = {}
    for name, field in TuneConfig.model_fields.items():
        if name in SKIP or not hasattr(args, name):
            continue
        value = getattr(args, name)
        out[name] = value if not isinstance(value, str) else _parse(name, field, value)
    return out


def _parse(name: str, field: FieldInfo, text: str) -> Any:
    """A flag's text as the field's type: "auto" as None where the self-tuner decides, numbers
    as numbers; anything else stays text for the model to judge."""
    if name in SELF_TUNED and text == "auto":
        return None
    members = _inner(field.annotation)
    literals = [v for m in members if get_origin(m) is Literal for v in get_args(m)]
    if text in literals:
        return text
    for kind, what in ((int, "an integer"), (float, "a number")):
        if kind in members:
            try:
                return kind(text)
            except ValueError:
                names = [what, *(["auto"] if name in SELF_TUNED else []), *map(str, literals)]
                raise ValueError(f"{flag_of(name)} must be {' or '.join(names)}, "
                                 f"got {text!r}") from None
    return text
