"""A compiled graph that runs one tuning task, for other LangGraph apps and ``langgraph.json``.

Input state: ``{"workload": str, "trials": int, "settings": {TuneConfig fields}}``.
Output state adds ``"result"``: :class:`~asap.agent.api.TaskResult` as a dict.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from langchain_core.language_models import BaseChatModel
from langgraph.graph import END, START, StateGraph

from asap.agent.api import run_task


class TuneTask(TypedDict):
    workload: str
    trials: NotRequired[int]
    settings: NotRequired[dict[str, Any]]
    result: NotRequired[dict[str, Any]]


def build_tune_graph(llm: BaseChatModel | None = None):
    """``START -> tune -> END``; ``llm`` decides (default: the endpoint in ``settings``, else the
    embedded server)."""
    def tune_node(state: TuneTask) -> dict[str, Any]:
        result = run_task(state["workload"], llm=llm, trials=state.get("trials", 20),
                          **state.get("settings", {}))
        return {"result": result.model_dump()}

    g = StateGraph(TuneTask)
    g.add_node("tune", tune_node)
    g.add_edge(START, "tune")
    g.add_edge("tune", END)
    return g.compile()


graph = build_tune_graph()  # what langgraph.json loads
