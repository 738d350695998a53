"""One colour per thing across every figure of ``asap report``: a tool is the same colour in the
optimization history and on the timeline's training bars, a kind of LLM call the same on the
timeline and in the latency plot.

Tools get fixed tab10 colours in the registry's order (:data:`~asap.tools.hpo.panel.TOOLS`: the
panel first, so two studies' plots compare at a glance), then the LLM's own configurations and
the untried points; a tool past the tenth, or not registered, takes one by its name. LLM calls
are drawn in greys, which no tool uses.
"""

from __future__ import annotations

import zlib

from asap.tools.hpo.panel import TOOLS, UNTRIED

_TOOLS = (*list(TOOLS)[:5], "llm", UNTRIED, *list(TOOLS)[5:])[:10]
_TAB10 = [f"C{i}" for i in range(10)]
CALL_COLORS = {"critical": "#222222", "speculative": "#777777", "warm-up": "#bbbbbb"}


def tool_color(tool: str) -> str:
    """The colour of ``tool`` in every figure."""
    if tool in _TOOLS:
        return _TAB10[_TOOLS.index(tool)]
    return _TAB10[zlib.crc32(tool.encode()) % 10]
