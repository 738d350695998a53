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

import os
from typing import Any, NotRequired

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableLambda
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict  # Studio's schemas need it on Python 3.11

from asap.graphs.api import run_task
from asap.graphs.background import cancellable
from asap.graphs.chat import build_chat_graph
from asap.graphs.tuning import graph as tuning_graph
from asap.tools.types import Cancel


class TuneInput(TypedDict):
    """One tuning task: a workload reference, a trial budget, :class:`TuneConfig` fields."""

    workload: str
    trials: NotRequired[int]
    settings: NotRequired[dict[str, Any]]


class TuneOutput(TypedDict):
    """The task's :class:`~asap.graphs.api.TaskResult` as a dict."""

    result: dict[str, Any]


class TuneTask(TuneInput):
    result: NotRequired[dict[str, Any]]


def endpoint_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with the LLM endpoint from ``ASAP_BASE_URL`` / ``ASAP_MODEL`` when they name
    none: what a server's environment (langgraph.json's ``env``) configures."""
    if settings.get("base_url") or not os.environ.get("ASAP_BASE_URL"):
        return settings
    return {**settings, "base_url": os.environ["ASAP_BASE_URL"],
            "model": settings.get("model") or os.environ.get("ASAP_MODEL", "default")}


def build_tune_graph(llm: BaseChatModel | None = None):
    """``START -> tune -> END``; ``llm`` decides (default: the endpoint in ``settings``, else
    ``ASAP_BASE_URL``/``ASAP_MODEL``, else the embedded server). Run async (a server), a
    cancelled run stops its session: the running trial is failed, no new one starts."""
    def run(state: TuneTask, cancel: Cancel | None = None) -> dict[str, Any]:
        settings = state.get("settings", {}) if llm is not None else endpoint_settings(
            state.get("settings", {}))
        result = run_task(state["workload"], llm=llm, trials=state.get("trials", 20),
                          cancel=cancel, **settings)
        return {"result": result.model_dump()}

    async def arun(state: TuneTask) -> dict[str, Any]:
        return await cancellable(lambda cancel: run(state, cancel))

    g = StateGraph(TuneTask, input_schema=TuneInput, output_schema=TuneOutput)
    g.add_node("tune", RunnableLambda(run, afunc=arun, name="tune"))
    g.add_edge(START, "tune")
    g.add_edge("tune", END)
    return g.compile()


graph = build_tune_graph()
chat_graph = build_chat_graph()
__all__ = ["build_tune_graph", "chat_graph", "graph", "tuning_graph"]
