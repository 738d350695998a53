"""The chat graph: "tune the learning rate and width of my model in train.py:fit for accuracy".

    START -> gather -> confirm -> tune -> END        (a new request)
          -> respond -> END | confirm | gather       (after a session: questions, extend, narrow)

``gather`` reads the request (:mod:`asap.agent.chat.intent`; the LLM as JSON only for what plain
reading misses) and asks for what is still missing; ``confirm`` shows the plan
(:mod:`asap.agent.chat.plan`) and waits for the person (a LangGraph ``interrupt``: human in the loop)
before any compute is spent or any file written; ``tune`` writes the space file and runs the
session, streaming each finished trial (``get_stream_writer``); ``respond`` answers questions from
the ledger (:mod:`asap.agent.chat.answers`: the numbers never come from the LLM), extends the budget,
narrows the space (a new study: a study's space is fixed) or stops.

The graph is compiled once per checkpointer; the chat model and ledger come in the run's
:class:`ChatContext` (``graph.invoke(..., context=ChatContext(...))``), or from ``ASAP_BASE_URL``
/ ``ASAP_MODEL`` / ``ASAP_DB`` when a server runs it without one.
"""

from __future__ import annotations

import json
import re
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableLambda
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import BaseModel, ValidationError

from asap.agent.chat import answers
from asap.agent.chat.intent import (
    CLASSIFY,
    EXTRACT,
    NO,
    YES,
    Intent,
    Request,
    grounded,
    parse_intent,
    parse_request,
)
from asap.agent.chat.plan import (
    budget_text,
    make_plan,
    match,
    missing,
    new_study_name,
    plan_of,
    repin,
    write_space,
)
from asap.agent.chat.questions import is_question
from asap.agent.config import ConfigError, TuneConfig
from asap.agent.llm.client import json_model, llm_errors
from asap.graphs.background import cancellable
from asap.graphs.callbacks import TuneCallback
from asap.graphs.chat_questions import NOTHING, answer, say
from asap.graphs.chat_state import ChatContext, ChatInput, ChatState, chat_context
from asap.graphs.policy import ServerPolicy
from asap.graphs.session import tune
from asap.tools.hpo.space import Space, SpaceError
from asap.tools.hpo.space_edit import narrow
from asap.tools.ledger.store import Ledger
from asap.tools.ledger.study import Study
from asap.tools.types import Cancel, Trial
from asap.tools.workloads import BUILTIN, WorkloadError


def _ask_json(ctx: ChatContext, system: str, text: str, schema: type[BaseModel],
              name: str) -> BaseModel | None:
    # Tagged so that the chat's token stream shows answers, not this JSON.
    model = json_model(ctx.llm, schema.model_json_schema(), name=name).with_config(
        tags=["nostream"])
    try:
        answer = model.invoke([SystemMessage(system), HumanMessage(text)])
        return schema.model_validate(json.loads(answer.content))
    except (*llm_errors(), ValidationError):
        return None


def gather(state: ChatState, runtime: Runtime[ChatContext]) -> ChatState:
    """Read the request (the unambiguous parts directly, the rest through the LLM as JSON);
    ask for what is missing, else plan. A field that makes planning fail is dropped and asked
    for again, never kept (it would fail every later turn)."""
    ctx = chat_context(runtime)
    text = state["messages"][-1].content
    if is_question(text):  # answered, never read as a request
        return answer(ctx, state, text)
    request = {**state.get("request", {}), **parse_request(text)}
    if missing(request) is not None:  # the LLM only for what plain reading did not find
        request = {**_extract(ctx, text), **request}
    return _plan_or_ask(ctx, request)


def _extract(ctx: ChatContext, text: str) -> dict[str, Any]:
    """The request fields the LLM read in ``text``, each grounded in it (a small model copies
    the prompt's examples: a workload or file the person never wrote is not taken)."""
    got = _ask_json(ctx, EXTRACT.format(builtins=", ".join(BUILTIN)), text, Request, "request")
    found = {k: v for k, v in got.model_dump().items() if v is not None} if got else {}
    return grounded(found, text)


def _plan_or_ask(ctx: ChatContext, request: dict[str, Any]) -> ChatState:
    question = missing(request)
    if question is None:
        try:
            study = new_study_name(ctx.db, request["workload"], ctx.spaces)
            return {"request": request, "plan": make_plan(request, study=study),
                    "phase": "ready"}
        except (WorkloadError, SpaceError, ConfigError) as exc:
            request = _drop_culprit(request, exc)
            question = f"{exc}. " + (missing(request) or "What should I use instead?")
    return {"request": request, "phase": "gather", "messages": [AIMessage(question)]}


def _drop_culprit(request: dict[str, Any], exc: Exception) -> dict[str, Any]:
    """``request`` without the field that made planning fail."""
    if isinstance(exc, WorkloadError):
        culprit = ["workload", "space_file", "metric"]
    elif isinstance(exc, SpaceError):
        ranges = request.get("ranges") or {}
        culprit = (["ranges"] if "range" in str(exc) or any(f"'{r}'" in str(exc) for r in ranges)
                   and ranges else ["space_file"] if request.get("space_file") else ["params"])
    else:
        culprit = ["trials", "minutes"]
    return {k: v for k, v in request.items() if k not in culprit}


def confirm(state: ChatState, runtime: Runtime[ChatContext]) -> ChatState:
    """Show the plan and wait for the person: nothing is trained before a yes. Any other answer
    but a plain no is read as a change to the plan ("no, just 1 more", "20 trials", "also tune
    dropout"), which is confirmed again."""
    plan = state["plan"]
    pinned = f"\nFixed: {plan['fixed']}" if plan.get("fixed") else ""
    question = (f"I will tune {plan['workload']} to {plan['direction']} {plan['metric']} "
                f"(study {plan['study']}), {budget_text(plan)}, over:\n{plan['space']}{pinned}\n"
                "Proceed? (yes, or say what to change)")
    reply = str(interrupt({"question": question, "plan": plan}))
    said = [AIMessage(question), HumanMessage(reply)]
    if YES.match(reply):
        return {"messages": said, "phase": "go"}
    if is_question(reply):  # answered; the plan still waits for a yes
        answered = answer(chat_context(runtime), state, reply)
        return {"messages": [*said, *answered.get("messages", [])], "phase": "ready",
                "plan": answered.get("plan") or plan}
    if not NO.match(reply):
        revised = _revise(state, chat_context(runtime), reply)
        if revised is not None:
            return {**revised, "messages": [*said, *revised.get("messages", [])]}
    # Nothing starts; after a session the thread goes back to answering questions about it.
    return {"messages": [*said, AIMessage(NOTHING)],
            "phase": "done" if state.get("study") else "gather", "plan": None}


def _revise(state: ChatState, ctx: ChatContext, reply: str) -> ChatState | None:
    """The plan changed by ``reply``, or None when it names no change."""
    plan, intent = state["plan"], parse_intent(reply)
    done = plan.get("done", 0)
    if intent is not None and intent.action == "extend" and (intent.trials or intent.minutes):
        return {"plan": _extended(plan, done, intent), "phase": "ready"}
    request = state.get("request", {})
    changes = parse_request(reply) or _extract(ctx, reply)
    if "params" in changes and re.search(r"\b(also|too|as well|and)\b", reply, re.I):
        changes["params"] = list(dict.fromkeys([*request.get("params", []), *changes["params"]]))
    if "ranges" in changes:  # a range edit keeps the earlier ones ("and dropout up to 0.3")
        changes["ranges"] = {**request.get("ranges", {}), **changes["ranges"]}
    changes = {k: v for k, v in changes.items() if v != request.get(k)}
    if not changes:
        return None
    if set(changes) <= {"trials", "minutes"}:  # the same study, another budget ("20 trials")
        trials = changes.get("trials")
        if trials is not None and trials <= done:
            return None
        return {"plan": {**plan, "trials": trials or plan["trials"],
                         "more": trials - done if trials and done else None,
                         "time_budget_s": changes["minutes"] * 60 if changes.get("minutes")
                         else plan["time_budget_s"]}, "phase": "ready"}
    out = _plan_or_ask(ctx, {**request, "workload": plan["workload"], **changes})
    return {**out, "phase": "ready"} if out.get("phase") == "ready" else out


def _extended(plan: dict[str, Any], done: int, intent: Intent) -> dict[str, Any]:
    """``plan`` extended by ``intent``'s trials or minutes past the ``done`` trials."""
    more = intent.trials or (0 if intent.minutes else 10)
    return {**plan, "trials": done + more if more else 1000, "done": done,
            "more": more if more and done else None,
            "time_budget_s": intent.minutes * 60 if intent.minutes else None}


class _StreamTrials(TuneCallback):
    """The session's progress as ``custom`` stream events of the chat graph: trials starting,
    their intermediate values, finished trials, notices."""

    def __init__(self) -> None:
        self.write = get_stream_writer()

    def on_message(self, text: str) -> None:
        self.write({"notice": text})

    def on_trial_start(self, study: Study, number: int, config: dict[str, Any], tool: str
                       ) -> None:
        self.write({"started": number, "tool": tool, "config": study.space.format(config)})

    def on_report(self, study: Study, number: int, step: int, value: float) -> None:
        self.write({"report": number, "step": step, "value": value, "metric": study.metric})

    def on_trial_complete(self, study: Study, trial: Trial, tool: str) -> None:
        self.write({"trial": trial.number, "status": trial.status, "value": trial.value,
                    "tool": tool})


def run_tuning(state: ChatState, cancel: Cancel | None = None) -> ChatState:
    """Write the confirmed space, run the session, streaming each trial to the chat. The
    session stops when ``cancel`` (default: the context's, the terminal's Ctrl-C) is set: the
    running trial is failed, everything finished is saved, and the thread answers questions."""
    ctx, plan = chat_context(), state["plan"]
    cfg = checked_plan(plan, ctx)  # before anything is written: the state may be a client's
    write_space(plan, ctx.spaces)  # the path cfg names
    try:
        tune(cfg, llm=ctx.tune_llm, callbacks=[_StreamTrials()], cancel=cancel or ctx.cancel)
        done = "Done. "
    except KeyboardInterrupt:
        done = "Stopped; everything finished is saved. "
    study = Ledger(ctx.db).open_study(plan["study"])
    return {"messages": [AIMessage(done + answers.best(study) + "\n" + answers.time_split(study))],
            "study": plan["study"], "phase": "done"}


def checked_plan(plan: dict[str, Any], ctx: ChatContext) -> TuneConfig:
    """The session a plan asks for, checked whole before its space file is written: the study
    a name (not a path), the space well formed, the settings valid, and on a server the task
    one the operator's policy allows (a client can write a thread's state)."""
    if not isinstance(plan, dict) or not {"workload", "trials", "study", "params", "metric",
                                          "direction"} <= set(plan):
        raise ConfigError("the plan to run is incomplete; ask for a tuning session again")
    settings = {"time_budget_s": plan.get("time_budget_s"), "study": plan["study"]}
    if ctx.served:  # capped as the operator says; its ledger is the context's
        settings = ServerPolicy.from_env().task(plan["workload"], plan["trials"], settings)
        settings.pop("db")
    cfg = TuneConfig.make(workload=plan["workload"], trials=plan["trials"], db=ctx.db,
                          base_url=ctx.base_url, model=ctx.model,
                          space=str(ctx.spaces / f"{plan['study']}.space.yaml"), **settings)
    try:
        Space.from_dict({"params": plan["params"]})
    except SpaceError as exc:
        raise ConfigError(f"the plan's search space: {exc}") from None
    return cfg


async def run_tuning_async(state: ChatState) -> ChatState:
    """:func:`run_tuning` for async runs (a LangGraph server): ``runs.cancel`` stops it."""
    return await cancellable(lambda cancel: run_tuning(state, cancel))


def respond(state: ChatState, runtime: Runtime[ChatContext]) -> ChatState:
    """Answer from the ledger, or change the plan (extend, narrow) and go back to confirm."""
    ctx = chat_context(runtime)
    text = state["messages"][-1].content
    if NO.match(text):  # a plain no to nothing in particular
        return say(NOTHING)
    if is_question(text):  # answered from the ledger, never turned into an action
        return answer(ctx, state, text)
    intent = (parse_intent(text) or _ask_json(ctx, CLASSIFY, text, Intent, "intent")
              or Intent(action="other"))
    study = Ledger(ctx.db).open_study(state["study"])
    plan = plan_of(study)  # changes apply to the study tuned last, not a plan refused since
    try:
        if intent.action == "top":
            return say(answers.top(study, intent.n or 5))
        if intent.action == "why":
            return say(answers.why_picked(study, intent.tool))
        if intent.action == "time":
            return say(answers.time_split(study))
        if intent.action == "best":
            return say(answers.best(study))
        if intent.action == "stop":
            return say(f"Stopped. {study.name} is saved in {ctx.db}; ask me about it any time.")
        if intent.action == "new":
            return {"phase": "gather", "request": {}}
        if intent.action == "extend":
            return {"plan": _extended(plan, len(study.finished_ids()), intent), "phase": "ready"}
        space = None
        if intent.action == "narrow" and intent.param and intent.low is not None \
                and intent.high is not None:
            space = narrow(study.space, match([intent.param], study.space)[0], intent.low,
                           intent.high)
        elif intent.action == "pin" and intent.value:
            space = repin(study, intent.value, intent.param)
        if space is not None:  # a new study: a study's space is fixed
            request = {**state.get("request", {}), "workload": plan["workload"]}
            name = new_study_name(ctx.db, plan["workload"], ctx.spaces)
            return {"plan": {**make_plan(request, study=name, space=space),
                             "trials": plan["trials"]}, "phase": "ready"}
    except (SpaceError, ConfigError) as exc:
        return say(f"I cannot do that: {exc}")
    return answer(ctx, state, text)  # no action named: answered from the ledger's facts


def build_chat_graph(checkpointer: Any = None):
    """The compiled chat graph; pass a checkpointer (``SqliteSaver``) to persist threads."""
    g = StateGraph(ChatState, context_schema=ChatContext, input_schema=ChatInput)
    tune_node = RunnableLambda(run_tuning, afunc=run_tuning_async, name="tune")
    for name, fn in [("gather", gather), ("confirm", confirm), ("tune", tune_node),
                     ("respond", respond)]:
        g.add_node(name, fn)
    g.add_conditional_edges(START, lambda s: "respond" if s.get("study") and s.get(
        "phase") == "done" else "gather", ["gather", "respond"])
    g.add_conditional_edges("gather", lambda s: "confirm" if s.get("phase") == "ready" else END,
                            ["confirm", END])
    g.add_conditional_edges("confirm", lambda s: {"go": "tune", "ready": "confirm"}.get(
        s.get("phase"), END), ["tune", "confirm", END])
    g.add_edge("tune", END)
    g.add_conditional_edges("respond", lambda s: {"ready": "confirm", "gather": "gather"}.get(
        s.get("phase"), END), ["confirm", "gather", END])
    return g.compile(checkpointer=checkpointer)
