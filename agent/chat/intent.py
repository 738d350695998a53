"""What a person's chat message asks for: a tuning request, or a question about a session.

Unambiguous parts (workload references, "N trials", "N minutes", known parameter names, top/why/
time/more/narrow/stop) are read with plain patterns; the chat asks the LLM, as JSON in the
:class:`Request` and :class:`Intent` schemas, only for what these miss. Pure functions: tested
without a model.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel

from asap.tools.hpo.panel import name_pattern, spoken
from asap.tools.hpo.space_edit import ALIASES, KNOWN_RANGES, canonical
from asap.tools.workloads import BUILTIN


class Request(BaseModel):
    """What the person asked for; the LLM fills what the conversation says, null otherwise."""

    workload: str | None = None
    metric: str | None = None
    direction: Literal["maximize", "minimize"] | None = None
    trials: int | None = None
    minutes: float | None = None
    params: list[str] | None = None
    space_file: str | None = None
    # {parameter as the person named it: [low, high]}: ranges to search, the rest still tuned
    ranges: dict[str, list[float]] | None = None


class Intent(BaseModel):
    """What a message after a session asks for."""

    action: Literal["top", "why", "time", "best", "extend", "narrow", "pin", "stop", "new",
                    "other"]
    n: int | None = None
    tool: str | None = None
    trials: int | None = None
    minutes: float | None = None
    param: str | None = None
    low: float | None = None
    high: float | None = None
    value: str | None = None  # pin: the choice to fix ("adam")


EXTRACT = """You turn a request to tune a model into JSON. Fields (null when not said):
workload: one of {builtins}, hpobench:<dataset>, nasbench201:<dataset>, or the user's code as
module:function (e.g. "train.py:fit" is "train:fit"); metric: the metric name; direction:
maximize or minimize; trials: a number of trials; minutes: a time budget in minutes; params: the
hyperparameters to tune; space_file: a search space file if one is named."""

CLASSIFY = """After a tuning session the user writes a message. Classify it as JSON: action is top
(the best trials; n how many), why (why a tool was used; tool), time (where the time went), best,
extend (more budget: trials or minutes; also "make it better"), narrow (a parameter's new range:
param, low, high), pin (try one value of a parameter: param, value), stop, new (a different
tuning request), or other."""

YES = re.compile(r"^\s*(y|yes|ok|okay|sure|go|go ahead|proceed|start|do it|confirm)\b(?!.*\d)",
                 re.I)
NO = re.compile(r"^\s*(n|no|nope|cancel|abort|stop|never ?mind|don'?t)\W*$", re.I)


def grounded(found: dict[str, Any], text: str) -> dict[str, Any]:
    """The LLM-read request fields that ``text`` supports: a workload or file named in it (a
    small model copies its prompt's example "train.py:fit"), numbers it contains, parameter
    names it mentions. The rest is dropped, so the chat asks instead of keeping a guess."""
    words, out = text.lower(), {}
    numbers = {float(n) for n in re.findall(r"\d+(?:\.\d+)?", words)}
    for key, value in found.items():
        if key in ("workload", "space_file", "metric"):
            stem = str(value).lower().replace(".py:", ":")
            ok = stem in words.replace(".py:", ":") or str(value).lower() in words
        elif key in ("trials", "minutes"):
            ok = float(value) in numbers or (key == "minutes" and float(value) / 60 in numbers)
        elif key == "ranges":  # each bound a number the person wrote
            value = {k: v for k, v in value.items() if len(v) == 2
                     and all(float(x) in numbers for x in v)}
            ok = bool(value)
        elif key == "params":
            value = [p for p in value if canonical(p).replace("_", " ") in words
                     or p.lower() in words or canonical(p) in words]
            ok = bool(value)
        else:
            ok = True
        if ok:
            out[key] = value
    return out


def parse_request(text: str) -> dict[str, Any]:
    """The unambiguous parts of a request, read without the LLM: workload references, "N
    trials", "N minutes/hours", known parameter names, maximize/minimize."""
    out: dict[str, Any] = {}
    ref = re.search(r"\b((?:hpobench|nasbench201):\w+|" + "|".join(map(re.escape, BUILTIN))
                    + r"|[A-Za-z_][\w.]*\.py:\w+|[A-Za-z_][\w.]*:[A-Za-z_]\w*)", text)
    if ref:
        out["workload"] = re.sub(r"\.py:", ":", ref.group(1))
    if m := re.search(r"(\d+)\s*(?:trials?|runs?|tries|attempts?|evaluations?|experiments?|"
                      r"iterations?|configs?|configurations?)\b", text, re.I):
        out["trials"] = int(m.group(1))
    if m := re.search(r"(\d+(?:\.\d+)?)\s*(minutes?|mins?|hours?|h)\b", text, re.I):
        out["minutes"] = float(m.group(1)) * (60 if m.group(2).lower().startswith("h") else 1)
    ranges, words = parse_ranges(text)
    if ranges:
        out["ranges"] = ranges
    names = [n for n in [*ALIASES, *KNOWN_RANGES] if re.search(rf"\b{re.escape(n)}\b", words)]
    if names:  # "learning rate" and "lr" name the same parameter: keep one of each
        seen: dict[str, str] = {}
        for n in names:
            seen.setdefault(canonical(n), n)
        out["params"] = list(seen.values())
    if m := re.search(r"\b(maximi[sz]e|minimi[sz]e)\b", words):
        out["direction"] = "maximize" if m.group(1).startswith("maxi") else "minimize"
    if m := re.search(r"\bfor (?:the )?((?:\w*_)?(?:loss|acc\w*|error|score|f1|auc)\w*)\b",
                      words):
        out["metric"] = m.group(1)
    return out


_NUMBER = r"(-?\d+(?:\.\d+)?(?:e-?\d+)?)"
_RANGE = re.compile(r"((?:[a-z][\w-]*\s+){0,3}[a-z][\w-]*)\s+(?:(?:to\s+)?(?:stay\s+)?"
                    r"(?:between|from|within|in(?: the range(?: of)?)?)\s+)\[?\s*" + _NUMBER
                    + r"\s*(?:and|to|-|\.\.|,)\s*" + _NUMBER + r"\s*\]?", re.I)


def parse_ranges(text: str) -> tuple[dict[str, list[float]], str]:
    """The ranges a message gives ("keep the learning rate between 0.001 and 0.01", "lr from
    1e-3 to 1e-2", "width in [32, 64]"): ``{parameter: [low, high]}``, the parameter as the
    person named it (the longest known name ending the words before the range, else the last
    word), and the text without them, so that a parameter named only to give its range is not
    read as "tune only this one"."""
    ranges: dict[str, list[float]] = {}
    rest = text.lower()
    for m in _RANGE.finditer(text.lower()):
        words = m.group(1).split()
        name = next((" ".join(words[i:]) for i in range(len(words))
                     if " ".join(words[i:]) in ALIASES or canonical(" ".join(words[i:]))
                     in KNOWN_RANGES), words[-1])
        low, high = float(m.group(2)), float(m.group(3))
        ranges[name] = [min(low, high), max(low, high)]
        rest = rest.replace(m.group(0), " ".join(words[:len(words) - len(name.split())]))
    return ranges, rest


def parse_intent(text: str) -> Intent | None:
    """Plain questions and commands read without the LLM; None when unsure."""
    t = text.lower()
    n = re.search(r"\b(\d+)\b", t)
    if re.search(r"\btop\b|\bbest \d+", t):
        return Intent(action="top", n=int(n.group(1)) if n else 5)
    if m := re.search(r"narrow (?:the )?(\w[\w ]*?) to ([-\d.e+]+)\s*(?:\.\.|-|to)\s*([-\d.e+]+)",
                      t):
        return Intent(action="narrow", param=m.group(1), low=float(m.group(2)),
                      high=float(m.group(3)))
    if ranges := parse_ranges(t)[0]:  # "keep lr between 0.001 and 0.01"
        (param, (low, high)), = list(ranges.items())[:1]
        return Intent(action="narrow", param=param, low=low, high=high)
    if m := re.search(r"\b(?:try|use|switch to)\s+([a-z][\w.-]*)(?:\s+(?:instead|rather))?", t):
        if m.group(1) not in ("more", "again", "another", "it", "the", "a"):
            return Intent(action="pin", value=m.group(1))
    if re.search(r"\b(more|extend|another|longer|better|improve|keep going|continue)\b", t):
        minutes = re.search(r"(\d+(?:\.\d+)?)\s*min", t)
        return Intent(action="extend", minutes=float(minutes.group(1)) if minutes else None,
                      trials=int(n.group(1)) if n and not minutes else None)
    if t.startswith("why"):
        tool = re.search(rf"\b({name_pattern('llm')})\b", t)
        return Intent(action="why", tool=spoken(tool.group(1)) if tool else None)
    if re.search(r"\b(time|long|wall-?clock)\b", t):
        return Intent(action="time")
    if re.fullmatch(r"\s*(stop|halt|enough)\W*", t):
        return Intent(action="stop")
    return None
