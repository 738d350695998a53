"""Compiled graphs for other LangGraph apps and ``langgraph.json``.

- ``tuning_graph``: the tuning loop itself (propose -> agent -> guard -> dispatch ->
  await_train || speculate -> reconcile), as LangGraph's tooling draws it. It runs on a live
  :class:`~asap.graphs.context.TuneContext` (a study, tools, a trainer, a chat model), which only an
  in-process caller can hand it: :func:`asap.graphs.session.tune` builds one.
- ``graph``: one tuning task from plain JSON, as a server serves it to clients. Input state:
  ``{"workload": str, "trials": int, "settings": {the TuneConfig fields a client may set}}``,
  under the operator's :class:`~asap.graphs.policy.ServerPolicy`; output adds ``"result"``:
  :class:`~asap.graphs.api.TaskResult` as a dict. ``build_tune_graph()`` builds one for your own
  app, where you are the operator and every setting is yours.
- ``chat_graph``: the chat (its LLM from the run's context, else ``ASAP_BASE_URL``/``ASAP_MODEL``;
  the platform supplies the checkpointer).
"""

from __future__ import annotations

import asyncio
import copy
from typing import Annotated, Any, NotRequired

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableLambda
from langgraph.config import get_config, get_stream_writer
from langgraph.constants import CONFIG_KEY_CHECKPOINTER
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, ConfigDict, Field, create_model
from typing_extensions import TypedDict  # Studio's schemas need it on Python 3.11

from asap.agent.config import TuneConfig, endpoint_from_env
from asap.graphs.api import TaskResult, run_task
from asap.graphs.background import cancellable
from asap.graphs.callbacks import TuneCallback
from asap.graphs.chat import build_chat_graph
from asap.graphs.policy import CLIENT_SETTINGS, ServerPolicy
from asap.graphs.tuning import graph as tuning_graph
from asap.tools.ledger.study import Study
from asap.tools.types import Cancel, Trial


def _settings_model(name: str, names: frozenset[str] | None = None) -> type[BaseModel]:
    """TuneConfig's fields (``names`` of them; all but the workload and the trial budget, the
    task's own keys), each optional with TuneConfig's default and description: the form Studio
    shows for ``settings``. TuneConfig itself still validates the run's values."""
    fields = {key: (field.annotation, copy.copy(field))  # its default, bounds, description
              for key, field in TuneConfig.model_fields.items()
              if key not in ("workload", "trials") and (names is None or key in names)}
    return create_model(name, __doc__="asap tune's settings (TuneConfig).",
                        __config__=ConfigDict(extra="forbid"), **fields)


TuneSettings = _settings_model("TuneSettings")
ClientSettings = _settings_model("ClientSettings", CLIENT_SETTINGS)  # what a served client sets


class TuneInput(TypedDict):
    """One tuning task: a workload reference, a trial budget, :class:`TuneConfig` fields."""

    workload: Annotated[str, Field(description="digits-mlp, digits-cnn, charlm, "
                                   "hpobench:<ds>, nasbench201:<ds> or package.module:function")]
    trials: NotRequired[Annotated[int, Field(ge=1, description="trial budget (default 20)")]]
    settings: NotRequired[TuneSettings]  # type: ignore[valid-type]


class ServedInput(TypedDict):
    """One tuning task from a served graph's client (:mod:`asap.graphs.policy`): a workload the
    server serves, a trial budget, the settings a client may choose."""

    workload: Annotated[str, Field(description="digits-mlp, digits-cnn, charlm, "
                                   "hpobench:<ds>, nasbench201:<ds> or one the server registers")]
    trials: NotRequired[Annotated[int, Field(ge=1, description="trial budget (default 20)")]]
    settings: NotRequired[ClientSettings]  # type: ignore[valid-type]


class TuneOutput(TypedDict):
    """The task's :class:`~asap.graphs.api.TaskResult` (so far, when the run was cancelled)."""

    result: TaskResult
    cancelled: NotRequired[bool]


class TuneTask(TuneInput):
    result: NotRequired[TaskResult]
    cancelled: NotRequired[bool]


class StreamEvents(TuneCallback):
    """Each trial's start, report and result and each decision as a ``custom`` stream event
    (LangGraph's stream writer): ``client.runs.stream(..., stream_mode="custom")`` shows the
    session's progress as it happens."""

    def __init__(self) -> None:
        self.write = get_stream_writer()

    def on_trial_start(self, study: Study, number: int, config: dict[str, Any], tool: str
                       ) -> None:
        self.write({"event": "trial_start", "trial": number, "tool": tool, "config": config})

    def on_report(self, study: Study, number: int, step: int, value: float) -> None:
        self.write({"event": "report", "trial": number, "step": step, "value": value})

    def on_trial_complete(self, study: Study, trial: Trial, tool: str) -> None:
        self.write({"event": "trial", "trial": trial.number, "status": trial.status,
                    "value": trial.value, "tool": tool})

    def on_decision(self, study: Study, decision: dict[str, Any]) -> None:
        self.write({"event": "decision", **decision})

    def on_message(self, text: str) -> None:
        self.write({"event": "message", "text": text})


def _given(state: TuneTask) -> dict[str, Any]:
    """The task's settings as given: a dict from JSON, or the typed model's fields that were
    set."""
    given = state.get("settings") or {}
    return given.model_dump(exclude_unset=True) if isinstance(given, BaseModel) else given


def _so_far(state: TuneTask, given: dict[str, Any]) -> dict[str, Any] | None:
    """The task's result from its study as the session left it; None without a study."""
    from asap.agent.report.stats import summarize
    from asap.tools.ledger.store import Ledger

    cfg = TuneConfig.make(workload=state["workload"],
                          **{k: v for k, v in given.items() if k != "llm"})
    ledger = Ledger(cfg.db, readonly=True)
    if not ledger.has_study(cfg.study_name):
        return None
    return TaskResult.from_summary(summarize(ledger.open_study(cfg.study_name))).model_dump()


async def _keep_partial(graph: Any, config: dict[str, Any], state: TuneTask,
                        given: dict[str, Any]) -> None:
    """Write the task's result so far into the thread's state, marked ``cancelled`` (the ledger
    read in a thread: a server's event loop must not block)."""
    try:
        result = await asyncio.to_thread(_so_far, state, given)
        conf = config.get("configurable", {})
        saver = conf.get(CONFIG_KEY_CHECKPOINTER)  # the server's, for this thread
        if result is None or saver is None or "thread_id" not in conf:
            return
        thread = {"configurable": {"thread_id": conf["thread_id"], "checkpoint_ns": "",
                                   CONFIG_KEY_CHECKPOINTER: saver}}
        await graph.aupdate_state(thread, {"result": result, "cancelled": True},
                                  as_node="tune")
    except Exception:  # noqa: BLE001 - a cancellation must go on whatever happens here
        return


def build_tune_graph(llm: BaseChatModel | None = None, *, served: bool = False):
    """``START -> tune -> END``; ``llm`` decides (default: the endpoint in ``settings``, else
    ``ASAP_BASE_URL``/``ASAP_MODEL``, else the embedded server). Run async (a server), a
    cancelled run stops its session: the running trial is failed, no new one starts.

    ``served``: the graph a server hands to clients (:data:`graph`, what langgraph.json
    serves): each task passes the operator's :class:`~asap.graphs.policy.ServerPolicy` (read
    from the server's environment) before anything runs, and its input schema offers only the
    settings a client may choose. In your own app (``served=False``) you are the operator."""
    def allowed(state: TuneTask) -> dict[str, Any]:
        given = _given(state)
        if not served:
            return given
        return ServerPolicy.from_env().task(state["workload"], state.get("trials", 20), given)

    def run(state: TuneTask, cancel: Cancel | None = None,
            given: dict[str, Any] | None = None) -> dict[str, Any]:
        given = allowed(state) if given is None else given
        settings = dict(given if llm is not None else endpoint_from_env(given))
        on_off = settings.pop("llm", None)  # settings' llm=False: the prior decides, no endpoint
        result = run_task(state["workload"], llm=llm if llm is not None else on_off,
                          trials=state.get("trials", 20), cancel=cancel,
                          callbacks=(StreamEvents(),), **settings)
        return {"result": result.model_dump()}

    async def arun(state: TuneTask) -> dict[str, Any]:
        config = get_config()  # the run's: its thread and checkpointer
        given = allowed(state)
        try:
            return await cancellable(lambda cancel: run(state, cancel, given))
        except asyncio.CancelledError:
            # The session has stopped (its running trial failed "cancelled"): the thread's
            # state gets the result so far, marked cancelled, before the cancellation goes on
            # (shielded: a second cancellation of the run must not cut that write short).
            await asyncio.shield(_keep_partial(compiled, config, state, given))
            raise

    g = StateGraph(TuneTask, input_schema=ServedInput if served else TuneInput,
                   output_schema=TuneOutput)
    g.add_node("tune", RunnableLambda(run, afunc=arun, name="tune"))
    g.add_edge(START, "tune")
    g.add_edge("tune", END)
    compiled = g.compile()
    return compiled


graph = build_tune_graph(served=True)
chat_graph = build_chat_graph()

# What langgraph.json serves, by module path: it works from any directory where asap-hpo is
# installed (a file path would point into a checkout).
GRAPHS = {"tune": "asap.graphs.app:graph", "tuning": "asap.graphs.app:tuning_graph",
          "chat": "asap.graphs.app:chat_graph"}


def langgraph_config(base_url: str = "http://127.0.0.1:8080/v1", model: str = "default"
                     ) -> dict[str, Any]:
    """A ``langgraph.json`` for ``langgraph dev``/``build``: the graphs by module path, asap-hpo
    as the dependency, and the LLM endpoint the graphs read (``asap llm serve``'s default)."""
    return {"dependencies": ["asap-hpo"], "graphs": dict(GRAPHS),
            "env": {"ASAP_BASE_URL": base_url, "ASAP_MODEL": model}, "python_version": "3.11"}


__all__ = ["GRAPHS", "build_tune_graph", "chat_graph", "graph", "langgraph_config",
           "tuning_graph"]
