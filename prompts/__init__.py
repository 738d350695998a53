"""The prompt templates and their loader.

Templates are text files beside this module, read with ``importlib.resources`` and rendered with
``string.Template.substitute``: a missing variable is an error, never a silent blank.
"""

from __future__ import annotations

import string
from functools import cache
from importlib import resources
from typing import Any


@cache
def template(name: str) -> string.Template:
    return string.Template(resources.files(__name__).joinpath(name).read_text())


def placeholders(name: str) -> set[str]:
    """The variables a template needs (for the test that code and files agree)."""
    t = template(name)
    return {m.group("named") or m.group("braced") for m in t.pattern.finditer(t.template)
            if m.group("named") or m.group("braced")}


def render(name: str, **values: Any) -> str:
    """``name`` with ``values`` substituted; a missing one raises ``KeyError``."""
    return template(name).substitute(values)
