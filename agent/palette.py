"""One colour per thing across every figure of ``asap report``: a tool is the same colour in the
optimization history and on the timeline's training bars, a kind of LLM call the same on the
timeline and in the latency plot.

Tools get fixed tab10 colours (the panel's four first, so two studies' plots compare at a
glance); a tool not listed here takes one by its name. LLM calls are drawn in greys, which no
tool uses.
"""

from __future__ import annotations

import zlib

_TOOLS = ("optuna:tpe", "optuna:cmaes", "nevergrad:NGOpt", "nevergrad:DE", "optuna:random",
          "llm", "asap:untried", "optuna:gp", "optuna:qmc", "nevergrad:CMA")
_TAB10 = [f"C{i}" for i in range(10)]
CALL_COLORS = {"critical": "#222222", "speculative": "#777777", "warm-up": "#bbbbbb"}


def tool_color(tool: str) -> str:
    """The colour of ``tool`` in every figure."""
    if tool in _TOOLS:
        return _TAB10[_TOOLS.index(tool)]
    return _TAB10[zlib.crc32(tool.encode()) % 10]
