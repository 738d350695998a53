"""The chat graph: "tune the learning rate and width of my model in train.py:fit for accuracy".

    START -> gather -> confirm -> tune -> END        (a new request)
          -> respond -> END | confirm | gather       (after a session: questions, extend, narrow)

``gather`` has the LLM extract what it needs (workload, metric and direction, budget, which
parameters) as JSON and asks for what is still missing; ``confirm`` shows the proposed space and
budget and waits for the person (a LangGraph ``interrupt``: human in the loop) before any compute
is spent; ``tune`` runs the tuning session, streaming each finished trial (``get_stream_writer``);
``respond`` answers questions from the ledger (:mod:`asap.agent.answers`: the numbers never come
from the LLM), extends the budget, narrows the space (a new study: a study's space is fixed) or
stops. Threads persist in LangGraph's SQLite checkpointer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

import yaml
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt
from pydantic import BaseModel, ValidationError
from rich.console import Console

from asap.agent import answers
from asap.agent.config import ConfigError, TuneConfig
from asap.agent.ledger import Ledger, Trial
from asap.agent.llm import LLM_ERRORS, json_model
from asap.agent.tune import tune
from asap.tools.space import (
    ALIASES,
    KNOWN_RANGES,
    Space,
    SpaceError,
    canonical,
    narrow,
    propose_space,
    restrict,
)
from asap.tools.workloads import BUILTIN, WorkloadError, resolve


class Request(BaseModel):
    """What the person asked for; the LLM fills what the conversation says, null otherwise."""

    workload: str | None = None
    metric: str | None = None
    direction: Literal["maximize", "minimize"] | None = None
    trials: int | None = None
    minutes: float | None = None
    params: list[str] | None = None
    space_file: str | None = None


class Intent(BaseModel):
    """What a message after a session asks for."""

    action: Literal["top", "why", "time", "best", "extend", "narrow", "stop", "new", "other"]
    n: int | None = None
    tool: str | None = None
    trials: int | None = None
    minutes: float | None = None
    param: str | None = None
    low: float | None = None
    high: float | None = None


class ChatState(TypedDict, total=False):
    messages: Annotated[list[BaseMessage], add_messages]
    request: dict[str, Any]  # gathered so far
    plan: dict[str, Any] | None  # what confirm shows and tune runs
    study: str | None  # the last study tuned in this thread
    phase: Literal["gather", "ready", "go", "done"]


@dataclass
class ChatRuntime:
    """The chat's model and where sessions go; ``tune_llm`` decides in sessions (default: the
    endpoint ``base_url``/``model``, else the embedded server)."""

    llm: BaseChatModel
    db: str = "asap.db"
    base_url: str | None = None
    model: str | None = None
    tune_llm: BaseChatModel | None = None
    workdir: Path = Path(".")


EXTRACT = """You turn a request to tune a model into JSON. Fields (null when not said):
workload: one of {builtins}, hpobench:<dataset>, nasbench201:<dataset>, or the user's code as
module:function (e.g. "train.py:fit" is "train:fit"); metric: the metric name; direction:
maximize or minimize; trials: a number of trials; minutes: a time budget in minutes; params: the
hyperparameters to tune; space_file: a search space file if one is named."""

CLASSIFY = """After a tuning session the user writes a message. Classify it as JSON: action is top
(the best trials; n how many), why (why a tool was used; tool), time (where the time went), best,
extend (more budget: trials or minutes), narrow (a parameter's new range: param, low, high), stop,
new (a different tuning request), or other."""

YES = re.compile(r"^\s*(y|yes|ok|okay|sure|go|go ahead|proceed|start|do it|confirm)\b", re.I)


def _ask_json(rt: ChatRuntime, system: str, text: str, schema: type[BaseModel],
              name: str) -> BaseModel | None:
    # Tagged so that the chat's token stream shows answers, not this JSON.
    model = json_model(rt.llm, schema.model_json_schema(), name=name).with_config(
        tags=["nostream"])
    try:
        answer = model.invoke([SystemMessage(system), HumanMessage(text)])
        return schema.model_validate(json.loads(answer.content))
    except (*LLM_ERRORS, ValidationError):
        return None


def parse_request(text: str) -> dict[str, Any]:
    """The unambiguous parts of a request, read without the LLM: workload references, "N
    trials", "N minutes/hours", known parameter names, maximize/minimize."""
    out: dict[str, Any] = {}
    ref = re.search(r"\b((?:hpobench|nasbench201):\w+|" + "|".join(map(re.escape, BUILTIN))
                    + r"|[A-Za-z_][\w.]*\.py:\w+|[A-Za-z_][\w.]*:[A-Za-z_]\w*)", text)
    if ref:
        out["workload"] = re.sub(r"\.py:", ":", ref.group(1))
    if m := re.search(r"(\d+)\s*trials?\b", text, re.I):
        out["trials"] = int(m.group(1))
    if m := re.search(r"(\d+(?:\.\d+)?)\s*(minutes?|mins?|hours?|h)\b", text, re.I):
        out["minutes"] = float(m.group(1)) * (60 if m.group(2).lower().startswith("h") else 1)
    words = text.lower()
    names = [n for n in [*ALIASES, *KNOWN_RANGES] if re.search(rf"\b{re.escape(n)}\b", words)]
    if names:  # "learning rate" and "lr" name the same parameter: keep one of each
        seen: dict[str, str] = {}
        for n in names:
            seen.setdefault(canonical(n), n)
        out["params"] = list(seen.values())
    if m := re.search(r"\b(maximi[sz]e|minimi[sz]e)\b", words):
        out["direction"] = "maximize" if m.group(1).startswith("maxi") else "minimize"
    if m := re.search(r"\bfor (?:the )?((?:\w*_)?(?:loss|acc\w*|error|score|f1|auc)\w*)\b",
                      words):
        out["metric"] = m.group(1)
    return out


def gather(state: ChatState, *, rt: ChatRuntime) -> ChatState:
    """Read the request (the unambiguous parts directly, the rest through the LLM as JSON);
    ask for what is missing, else plan."""
    text = state["messages"][-1].content
    request = {**state.get("request", {}), **parse_request(text)}
    if _missing(request) is not None:  # the LLM only for what plain reading did not find
        got = _ask_json(rt, EXTRACT.format(builtins=", ".join(BUILTIN)), text, Request,
                        "request")
        found = {k: v for k, v in got.model_dump().items() if v is not None} if got else {}
        request = {**found, **request}
    question = _missing(request)
    if question is None:
        try:
            return {"request": request, "plan": _plan(rt, request), "phase": "ready"}
        except (WorkloadError, SpaceError, ConfigError) as exc:
            question = f"{exc}. What should I use instead?"
    return {"request": request, "phase": "gather", "messages": [AIMessage(question)]}


def _missing(request: dict[str, Any]) -> str | None:
    if not request.get("workload"):
        return ("What should I tune? Name the workload: a built-in (" + ", ".join(BUILTIN)
                + ", hpobench:<dataset>) or your code as module:function.")
    if ":" in request["workload"] and not request["workload"].startswith(
            ("hpobench:", "nasbench201:")) and not request.get("metric"):
        return "Which metric does your function return, and should it go up or down?"
    if not request.get("trials") and not request.get("minutes"):
        return "What budget: how many trials, or how many minutes?"
    return None


def _plan(rt: ChatRuntime, request: dict[str, Any], *, study: str | None = None,
          space: Space | None = None) -> dict[str, Any]:
    """The session to propose: workload, study, space (written to a file), budget."""
    ref = request["workload"]
    builtin = not (":" in ref and not ref.startswith(("hpobench:", "nasbench201:")))
    metric, direction = request.get("metric"), request.get("direction")
    pinned: dict[str, Any] = {}
    if space is None and request.get("space_file"):
        space = Space.from_file(request["space_file"])
    if builtin:
        wl = resolve(ref)
        metric, direction = wl.metric, wl.direction
    if space is None and builtin:
        space = wl.space
        if request.get("params"):
            space, pinned = restrict(space, _match(request["params"], space))
    elif space is None:
        space, unknown = propose_space(request.get("params") or [])
        if unknown:
            raise SpaceError(f"I know no range for {unknown}: give one, or a space file")
    if not builtin:
        direction = direction or ("minimize" if re.search(r"loss|error|rmse|mae", metric or "")
                                  else "maximize")
    name = study or _new_study_name(rt, ref)
    path = rt.workdir / f"{name}.space.yaml"
    path.write_text(yaml.safe_dump({"metric": metric, "direction": direction,
                                    "params": space.to_dict()}, sort_keys=False))
    minutes = request.get("minutes")
    plan = {"workload": ref, "study": name, "space_file": str(path), "metric": metric,
            "direction": direction, "pinned": pinned, "space": space.describe(),
            "trials": int(request.get("trials") or 1000),
            "time_budget_s": float(minutes) * 60 if minutes else None}
    TuneConfig.make(workload=ref, trials=plan["trials"], time_budget_s=plan["time_budget_s"])
    return plan


def _match(names: list[str], space: Space) -> list[str]:
    """Space parameters for the person's words ("learning rate" -> lr or learning_rate_init)."""
    out = []
    for raw in names:
        keys = {raw.strip().lower().replace(" ", "_").replace("-", "_"), canonical(raw)}
        hits = [n for n in space.names if any(n == k or k in n for k in keys)]
        if not hits:
            raise SpaceError(f"'{raw}' is not a parameter of this workload ({space.names})")
        out.append(hits[0])
    return out


def _new_study_name(rt: ChatRuntime, ref: str) -> str:
    ledger = Ledger(rt.db)
    stem = "chat-" + re.sub(r"[^A-Za-z0-9]+", "-", ref).strip("-")
    n = 1
    while ledger.has_study(f"{stem}-{n}") or (rt.workdir / f"{stem}-{n}.space.yaml").exists():
        n += 1
    return f"{stem}-{n}"


def confirm(state: ChatState, *, rt: ChatRuntime) -> ChatState:
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


def run_tuning(state: ChatState, *, rt: ChatRuntime) -> ChatState:
    """Run the session, streaming each finished trial to the chat."""
    plan, write = state["plan"], get_stream_writer()
    cfg = TuneConfig.make(workload=plan["workload"], trials=plan["trials"],
                          time_budget_s=plan["time_budget_s"], study=plan["study"], db=rt.db,
                          space=plan["space_file"], base_url=rt.base_url, model=rt.model)

    def progress(trial: Trial, tool: str) -> None:
        write({"trial": trial.number, "status": trial.status, "value": trial.value, "tool": tool})
    try:
        tune(cfg, console=Console(quiet=True), llm=rt.tune_llm, on_trial=progress)
        done = "Done. "
    except KeyboardInterrupt:
        done = "Stopped (Ctrl-C); everything finished is saved. "
    study = Ledger(rt.db).open_study(plan["study"])
    return {"messages": [AIMessage(done + answers.best(study) + "\n" + answers.time_split(study))],
            "study": plan["study"], "phase": "done"}


def parse_intent(text: str) -> Intent | None:
    """Plain questions and commands read without the LLM; None when unsure."""
    t = text.lower()
    n = re.search(r"\b(\d+)\b", t)
    if re.search(r"\btop\b|\bbest \d+", t):
        return Intent(action="top", n=int(n.group(1)) if n else 5)
    if m := re.search(r"narrow (?:the )?(\w[\w ]*?) to ([-\d.e+]+)\s*(?:\.\.|-|to)\s*([-\d.e+]+)",
                      t):
        return Intent(action="narrow", param=m.group(1), low=float(m.group(2)),
                      high=float(m.group(3)))
    if re.search(r"\b(more|extend|another|longer)\b", t):
        minutes = re.search(r"(\d+(?:\.\d+)?)\s*min", t)
        return Intent(action="extend", minutes=float(minutes.group(1)) if minutes else None,
                      trials=int(n.group(1)) if n and not minutes else None)
    if t.startswith("why"):
        tool = re.search(r"\b(tpe|cma-?es|ngopt|de|random|llm|qmc|gp)\b", t)
        return Intent(action="why", tool=tool.group(1).replace("-", "") if tool else None)
    if re.search(r"\b(time|long|wall-?clock)\b", t):
        return Intent(action="time")
    if re.fullmatch(r"\s*(stop|halt|enough)\W*", t):
        return Intent(action="stop")
    return None


def respond(state: ChatState, *, rt: ChatRuntime) -> ChatState:
    """Answer from the ledger, or change the plan (extend, narrow) and go back to confirm."""
    text = state["messages"][-1].content
    intent = (parse_intent(text) or _ask_json(rt, CLASSIFY, text, Intent, "intent")
              or Intent(action="other"))
    study = Ledger(rt.db).open_study(state["study"])
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
            return _say(f"Stopped. {study.name} is saved in {rt.db}; ask me about it any time.")
        if intent.action == "new":
            return {"phase": "gather", "request": {}}
        if intent.action == "extend":
            extra = intent.trials or (0 if intent.minutes else 10)
            plan = {**plan, "trials": len(study.finished_ids()) + extra if extra else 1000,
                    "time_budget_s": intent.minutes * 60 if intent.minutes else None}
            return {"plan": plan, "phase": "ready"}
        if intent.action == "narrow" and intent.param and intent.low is not None \
                and intent.high is not None:
            space = narrow(study.space, _match([intent.param], study.space)[0], intent.low,
                           intent.high)
            request = {**state["request"], "workload": plan["workload"]}
            new = _plan(rt, request, space=space)
            return {"plan": {**new, "trials": plan["trials"],
                             "time_budget_s": plan["time_budget_s"]}, "phase": "ready"}
    except (SpaceError, ConfigError) as exc:
        return _say(f"I cannot do that: {exc}")
    context = answers.best(study) + "\n" + answers.time_split(study)
    try:
        reply = rt.llm.invoke([SystemMessage(f"You answer questions about a tuning session. "
                                             f"Facts from the ledger:\n{context}"),
                               HumanMessage(text)])
    except LLM_ERRORS as exc:
        return _say(f"(the LLM failed: {type(exc).__name__}) Here is what the ledger says:\n"
                    + context)
    return {"messages": [AIMessage(reply.content)]}


def _say(text: str) -> ChatState:
    return {"messages": [AIMessage(text)]}


def build_chat_graph(rt: ChatRuntime, checkpointer: Any = None):
    """The compiled chat graph; pass a checkpointer (``SqliteSaver``) to persist threads."""
    from functools import partial
    g = StateGraph(ChatState)
    for name, fn in [("gather", gather), ("confirm", confirm), ("tune", run_tuning),
                     ("respond", respond)]:
        g.add_node(name, partial(fn, rt=rt))
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
