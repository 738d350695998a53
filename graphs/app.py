"""Compiled graphs for other LangGraph apps and ``langgraph.json``.

- ``tuning_graph``: the tuning loop itself (propose -> agent -> guard -> dispatch ->
  await_train || speculate -> reconcile), as LangGraph's tooling draws it. It runs on a live
  :class:`~asap.graphs.state.TuneContext` (a study, tools, a trainer, a chat model), which only an
  in-process caller can hand it: :func:`asap.graphs.session.tune` builds one.
- ``graph``: one tuning task from plain JSON, for servers and parent graphs. Input state:
  ``{"workload": str, "trials": int, "settings": {TuneConfig fields}}``; output adds ``"result"``:
  :class:`~asap.graphs.api.TaskResult` as a dict.
- ``chat_graph``: the chat (its LLM from the run's context, else ``ASAP_BASE_URL``/``ASAP_MODEL``;
  the platform supplies the checkpointer).
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from langchain_core.language_models import BaseChatModel
from langgraph.graph import END, START, StateGraph

from asap.graphs.api import run_task
from asap.graphs.chat import build_chat_graph
from asap.graphs.tuning import graph as tuning_graph


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


graph = build_tune_graph()
chat_graph = build_chat_graph()
__all__ = ["build_tune_graph", "chat_graph", "graph", "tuning_graph"]
