"""The chat graph: "tune the learning rate and width of my model in train.py:fit for accuracy".

    START -> gather -> confirm -> tune -> END        (a new request)
          -> respond -> END | confirm | gather       (after a session: questions, extend, narrow)

``gather`` reads the request (:mod:`asap.agent.intent`; the LLM as JSON only for what plain
reading misses) and asks for what is still missing; ``confirm`` shows the plan
(:mod:`asap.agent.plan`) and waits for the person (a LangGraph ``interrupt``: human in the loop)
before any compute is spent or any file written; ``tune`` writes the space file and runs the
session, streaming each finished trial (``get_stream_writer``); ``respond`` answers questions from
the ledger (:mod:`asap.agent.answers`: the numbers never come from the LLM), extends the budget,
narrows the space (a new study: a study's space is fixed) or stops.

The graph is compiled once per checkpointer; the chat model and ledger come in the run's
:class:`ChatContext` (``graph.invoke(..., context=ChatContext(...))``), or from ``ASAP_BASE_URL``
/ ``ASAP_MODEL`` / ``ASAP_DB`` when a server runs it without one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import BaseModel, ValidationError

from asap.agent import answers
from asap.agent.config import ConfigError, TuneConfig
from asap.agent.intent import CLASSIFY, EXTRACT, YES, Intent, Request, parse_intent, parse_request
from asap.agent.llm import LLM_ERRORS, chat_model, json_model
from asap.agent.plan import make_plan, match, missing, new_study_name, write_space
from asap.graphs.session import TuneCallback, tune
from asap.tools.ledger import Ledger, Study
from asap.tools.space import SpaceError
from asap.tools.space_edit import narrow
from asap.tools.types import Trial
from asap.tools.workloads import BUILTIN, WorkloadError


class ChatState(TypedDict, total=False):
    messages: Annotated[list[BaseMessage], add_messages]
    request: dict[str, Any]  # gathered so far
    plan: dict[str, Any] | None  # what confirm shows and tune runs
    study: str | None  # the last study tuned in this thread
    phase: Literal["gather", "ready", "go", "done"]


@dataclass(frozen=True)
class ChatContext:
    """The chat's model and where sessions go; ``tune_llm`` decides in sessions (default: the
    endpoint ``base_url``/``model``, else the embedded server). Space files go to ``space_dir``
    (default: beside the ledger)."""

    llm: BaseChatModel
    db: str = "asap.db"
    base_url: str | None = None
    model: str | None = None
    tune_llm: BaseChatModel | None = None
    space_dir: Path | None = None

    @property
    def spaces(self) -> Path:
        return self.space_dir or Path(self.db).resolve().parent


@cache
def env_context() -> ChatContext:
    """The context when a LangGraph server runs the graph without one: the LLM at
    ``ASAP_BASE_URL`` / ``ASAP_MODEL`` (nothing connects until a message arrives)."""
    base_url = os.environ.get("ASAP_BASE_URL", "http://127.0.0.1:8080/v1")
    model = os.environ.get("ASAP_MODEL", "default")
    return ChatContext(llm=chat_model(base_url, model), base_url=base_url, model=model,
                       db=os.environ.get("ASAP_DB", "asap.db"))


def _ctx(runtime: Runtime[ChatContext]) -> ChatContext:
    return runtime.context if runtime.context is not None else env_context()


def _ask_json(ctx: ChatContext, system: str, text: str, schema: type[BaseModel],
              name: str) -> BaseModel | None:
    # Tagged so that the chat's token stream shows answers, not this JSON.
    model = json_model(ctx.llm, schema.model_json_schema(), name=name).with_config(
        tags=["nostream"])
    try:
        answer = model.invoke([SystemMessage(system), HumanMessage(text)])
        return schema.model_validate(json.loads(answer.content))
    except (*LLM_ERRORS, ValidationError):
        return None


def gather(state: ChatState, runtime: Runtime[ChatContext]) -> ChatState:
    """Read the request (the unambiguous parts directly, the rest through the LLM as JSON);
    ask for what is missing, else plan."""
    ctx = _ctx(runtime)
    text = state["messages"][-1].content
    request = {**state.get("request", {}), **parse_request(text)}
    if missing(request) is not None:  # the LLM only for what plain reading did not find
        got = _ask_json(ctx, EXTRACT.format(builtins=", ".join(BUILTIN)), text, Request,
                        "request")
        found = {k: v for k, v in got.model_dump().items() if v is not None} if got else {}
        request = {**found, **request}
    question = missing(request)
    if question is None:
        try:
            study = new_study_name(ctx.db, request["workload"], ctx.spaces)
            return {"request": request, "plan": make_plan(request, study=study),
                    "phase": "ready"}
        except (WorkloadError, SpaceError, ConfigError) as exc:
            question = f"{exc}. What should I use instead?"
    return {"request": request, "phase": "gather", "messages": [AIMessage(question)]}


def confirm(state: ChatState) -> ChatState:
    """Show the plan and wait for the person: nothing is trained before a yes."""
    plan = state["plan"]
    budget = f"{plan['trials']} trials" if plan["trials"] < 1000 else "no trial limit"
    if plan["time_budget_s"]:
        budget += f", {plan['time_budget_s'] / 60:g} minutes"
    pinned = f"\nFixed: {plan['pinned']}" if plan["pinned"] else ""
    question = (f"I will tune {plan['workload']} to {plan['direction']} {plan['metric']} "
                f"(study {plan['study']}), {budget}, over:\n{plan['space']}{pinned}\n"
                "Proceed? (yes, or say what to change)")
    reply = interrupt({"question": question, "plan": plan})
    said = [AIMessage(question), HumanMessage(str(reply))]
    if YES.match(str(reply)):
        return {"messages": said, "phase": "go"}
    # Nothing starts; after a session the thread goes back to answering questions about it.
    return {"messages": [*said, AIMessage("Nothing started. What should change?")],
            "phase": "done" if state.get("study") else "gather", "plan": None}


class _StreamTrials(TuneCallback):
    """Each finished trial as a ``custom`` stream event of the chat graph."""

    def __init__(self) -> None:
        self.write = get_stream_writer()

    def on_trial_complete(self, study: Study, trial: Trial, tool: str) -> None:
        self.write({"trial": trial.number, "status": trial.status, "value": trial.value,
                    "tool": tool})


def run_tuning(state: ChatState, runtime: Runtime[ChatContext]) -> ChatState:
    """Write the confirmed space, run the session, streaming each finished trial to the chat."""
    ctx, plan = _ctx(runtime), state["plan"]
    space_file = write_space(plan, ctx.spaces)
    cfg = TuneConfig.make(workload=plan["workload"], trials=plan["trials"],
                          time_budget_s=plan["time_budget_s"], study=plan["study"], db=ctx.db,
                          space=str(space_file), base_url=ctx.base_url, model=ctx.model)
    try:
        tune(cfg, llm=ctx.tune_llm, callbacks=[_StreamTrials()])
        done = "Done. "
    except KeyboardInterrupt:
        done = "Stopped (Ctrl-C); everything finished is saved. "
    study = Ledger(ctx.db).open_study(plan["study"])
    return {"messages": [AIMessage(done + answers.best(study) + "\n" + answers.time_split(study))],
            "study": plan["study"], "phase": "done"}


def respond(state: ChatState, runtime: Runtime[ChatContext]) -> ChatState:
    """Answer from the ledger, or change the plan (extend, narrow) and go back to confirm."""
    ctx = _ctx(runtime)
    text = state["messages"][-1].content
    intent = (parse_intent(text) or _ask_json(ctx, CLASSIFY, text, Intent, "intent")
              or Intent(action="other"))
    study = Ledger(ctx.db).open_study(state["study"])
    plan = state["plan"]
    try:
        if intent.action == "top":
            return _say(answers.top(study, intent.n or 5))
        if intent.action == "why":
            return _say(answers.why(study, intent.tool))
        if intent.action == "time":
            return _say(answers.time_split(study))
        if intent.action == "best":
            return _say(answers.best(study))
        if intent.action == "stop":
            return _say(f"Stopped. {study.name} is saved in {ctx.db}; ask me about it any time.")
        if intent.action == "new":
            return {"phase": "gather", "request": {}}
        if intent.action == "extend":
            extra = intent.trials or (0 if intent.minutes else 10)
            plan = {**plan, "trials": len(study.finished_ids()) + extra if extra else 1000,
                    "time_budget_s": intent.minutes * 60 if intent.minutes else None}
            return {"plan": plan, "phase": "ready"}
        if intent.action == "narrow" and intent.param and intent.low is not None \
                and intent.high is not None:
            space = narrow(study.space, match([intent.param], study.space)[0], intent.low,
                           intent.high)
            request = {**state["request"], "workload": plan["workload"]}
            name = new_study_name(ctx.db, plan["workload"], ctx.spaces)
            new = make_plan(request, study=name, space=space)
            return {"plan": {**new, "trials": plan["trials"],
                             "time_budget_s": plan["time_budget_s"]}, "phase": "ready"}
    except (SpaceError, ConfigError) as exc:
        return _say(f"I cannot do that: {exc}")
    context = answers.best(study) + "\n" + answers.time_split(study)
    try:
        reply = ctx.llm.invoke([SystemMessage(f"You answer questions about a tuning session. "
                                             f"Facts from the ledger:\n{context}"),
                               HumanMessage(text)])
    except LLM_ERRORS as exc:
        return _say(f"(the LLM failed: {type(exc).__name__}) Here is what the ledger says:\n"
                    + context)
    return {"messages": [AIMessage(reply.content)]}


def _say(text: str) -> ChatState:
    return {"messages": [AIMessage(text)]}


def build_chat_graph(checkpointer: Any = None):
    """The compiled chat graph; pass a checkpointer (``SqliteSaver``) to persist threads."""
    g = StateGraph(ChatState, context_schema=ChatContext)
    for name, fn in [("gather", gather), ("confirm", confirm), ("tune", run_tuning),
                     ("respond", respond)]:
        g.add_node(name, fn)
    g.add_conditional_edges(START, lambda s: "respond" if s.get("study") and s.get(
        "phase") == "done" else "gather", ["gather", "respond"])
    g.add_conditional_edges("gather", lambda s: "confirm" if s.get("phase") == "ready" else END,
                            ["confirm", END])
    g.add_conditional_edges("confirm", lambda s: "tune" if s.get("phase") == "go" else END,
                            ["tune", END])
    g.add_edge("tune", END)
    g.add_conditional_edges("respond", lambda s: {"ready": "confirm", "gather": "gather"}.get(
        s.get("phase"), END), ["confirm", "gather", END])
    return g.compile(checkpointer=checkpointer)
