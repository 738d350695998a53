"""Compiled graphs for other LangGraph apps and ``langgraph.json``: ``graph`` runs one tuning
task; ``chat_graph`` is the chat.

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


def _chat_graph():
    """The chat graph for LangGraph's dev tooling: the LLM at ``ASAP_BASE_URL`` / ``ASAP_MODEL``
    (nothing connects until a message arrives); the platform supplies the checkpointer."""
    import os

    from asap.agent.llm import chat_model
    from asap.graphs.chat import ChatRuntime, build_chat_graph
    base_url = os.environ.get("ASAP_BASE_URL", "http://127.0.0.1:8080/v1")
    model = os.environ.get("ASAP_MODEL", "default")
    return build_chat_graph(ChatRuntime(llm=chat_model(base_url, model), base_url=base_url,
                                        model=model, db=os.environ.get("ASAP_DB", "asap.db")))


graph = build_tune_graph()  # what langgraph.json loads
chat_graph = _chat_graph()
