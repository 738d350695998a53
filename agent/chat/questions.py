"""Telling a question from a request in the chat, and which question it is.

Why first, before any action rule: a question must be answered, never turned into an action.
"why TPE?" had proposed a new study, "is width or lr more important here?" 10 more trials
(every sentence with "more" extended), "what should I try next?" tried to pin a choice called
"next". A question is a message ending in "?", opening with an interrogative word, or asking to
explain; a polite request ("can you run 5 more trials?") stays a request, and every request
still needs an explicit yes before anything runs.
"""

from __future__ import annotations

import re
from typing import Literal

from asap.tools.hpo.panel import name_pattern, spoken

Kind = Literal["help", "summary", "why", "time", "importance", "next", "top", "best", "other"]

_OPENERS = r"what|what's|whats|why|how|which|where|when|who|whose|is|are|was|were|does|do|did|"\
           r"should|has|have|explain|tell me|show me|describe|list"
_POLITE = re.compile(r"^\s*(can|could|would|will)\s+you\s+(please\s+)?(run|tune|try|extend|"
                     r"narrow|add|do|start|stop|give it|train)\b", re.I)
# "so why tpe", "ok, what happened": a question behind a discourse marker.
_MARKED = re.compile(r"^(so|ok|okay|well|and|but|hmm|alright|right),?\s+"
                     r"(what|what's|why|how|which|where|when|who)\b")
# "so what did you actually do there, in plain words": a question however it opens.
_SUMMARY = re.compile(r"\b(what (did|have) you (actually |really )?(do|done|did)|what happened|"
                      r"summar\w*|recap|in plain (words|english)|overview|walk me through)\b")
HELP = re.compile(r"^\s*(help|\?|what can you do\??|commands?)\s*$", re.I)


def is_question(text: str) -> bool:
    """Whether ``text`` asks something (and must be answered, not acted on)."""
    t = text.strip().lower()
    if not t or _POLITE.match(t):
        return False
    return t.endswith("?") or bool(HELP.match(t)) or bool(
        re.match(rf"^({_OPENERS})\b", t)) or bool(_MARKED.match(t)) or bool(_SUMMARY.search(t))


def kind(text: str) -> Kind:
    """Which question: the answers the ledger and the study can give."""
    t = text.lower()
    if HELP.match(t):
        return "help"
    if re.search(r"\b(important|importance|matters?|mattered|influen\w*|sensitiv\w*|effect of|"
                 r"(biggest|most|largest|any) (difference|impact|effect)|made a difference)\b", t):
        return "importance"
    if _SUMMARY.search(t):
        return "summary"
    if re.search(r"\b(next|try|suggest\w*|recommend\w*|get (above|below|better|higher|lower)|"
                 r"improve)\b", t):
        return "next"
    if re.search(r"\bwhy\b", t):
        return "why"
    if re.search(r"\b(time|long|wall-?clock|seconds|minutes|slow|fast|cost)\b", t):
        return "time"
    if re.search(r"\btop\b|\bbest \d+|\b\d+ best\b", t):
        return "top"
    if re.search(r"\bbest\b", t):
        return "best"
    return "other"


def tool_named(text: str) -> str | None:
    """The tool a question names ("why TPE?"), as the ledger spells its algorithm."""
    m = re.search(rf"\b({name_pattern('llm', 'prior', 'untried')})\b", text.lower())
    return spoken(m.group(1)) if m else None


def target_named(text: str) -> float | None:
    """A value a question aims at ("to get above 0.97")."""
    m = re.search(r"\b(?:above|over|below|under|beat|reach|to)\s+(-?\d+(?:\.\d+)?)", text.lower())
    return float(m.group(1)) if m else None
