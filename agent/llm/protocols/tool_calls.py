"""The tool-call protocol: the model calls ``train_on_gpu`` or ``stop`` (or a suggest tool to
explore first), as OpenAI-style function calls.

For servers that parse tool calls for their model (vLLM with a tool parser, hosted APIs). Every
call gets an answer (OpenAI requires one per call id); problems go back as
``ToolMessage(status="error")`` naming what is wrong.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, ValidationError

from asap.agent.guard import attribute
from asap.agent.llm.client import ToolCaller, llm_errors, openai_error
from asap.agent.llm.protocols.base import DecisionProtocol, Verdict
from asap.tools.hpo.portfolio import Offer
from asap.tools.hpo.space import Space, SpaceError
from asap.tools.hpo_tools import TrainArgs, stop_tool
from asap.tools.ledger.study import Study


class _Ready(BaseModel):
    """Report that you are ready."""

    ready: bool


class ToolCallProtocol(DecisionProtocol):
    """``train_on_gpu``/``stop`` decide; the suggest tools explore within the round."""

    name = "tools"
    summary = "native tool calls"
    brief = False  # the model copies a proposal's configuration into its call: show them
    preference = 1  # where the server parses the model's tool calls, before the JSON labels

    @classmethod
    def speaks(cls, llm: BaseChatModel) -> tuple[bool, str]:
        """One short request with a single tool: a tool call back means the server parses tool
        calls for this model; plain text, a refusal or an unreadable answer means it does not."""
        probe = StructuredTool.from_function(func=lambda ready: "ok", name="report_ready",
                                             args_schema=_Ready, description=_Ready.__doc__)
        try:
            answer = ToolCaller(llm, [probe]).invoke(
                [HumanMessage("Call the tool report_ready with ready=true.")])
        except (openai_error("APIStatusError"), NotImplementedError) as exc:
            return False, f"refused tools: {type(exc).__name__}: {str(exc)[:120]}"
        except llm_errors() as exc:  # an answer it could not read: its calls would be errors
            return False, f"the probe failed: {type(exc).__name__}: {str(exc)[:120]}"
        if answer.tool_calls:
            return True, "answered with a tool call"
        return False, f"answered with text: {str(answer.content)[:80]!r}"

    def __init__(self, llm: BaseChatModel, study: Study, tools: Sequence[BaseTool] = (),
                 grammar: bool = False) -> None:
        super().__init__(llm, study, tools, grammar)
        self.tools = {t.name: t for t in tools if t.name != "train_on_gpu"}  # what explores
        self.caller = ToolCaller(llm, [*tools, stop_tool()], study)

    def request(self, messages: list[BaseMessage], n_labels: int, *,
                cancel: threading.Event | None, trial_number: int, **detail: Any) -> BaseMessage:
        return self.caller.invoke(messages, cancel=cancel, trial_number=trial_number, **detail)

    def warm_model(self) -> Runnable:
        return self.caller.bound()

    def check(self, answer: BaseMessage, offers: Sequence[Offer], space: Space) -> Verdict:
        """The first valid decision in a message wins; suggest tools run and their proposals
        join the round's offers."""
        ai = answer if isinstance(answer, AIMessage) else AIMessage(content=answer.content)
        if not ai.tool_calls and not ai.invalid_tool_calls:
            return Verdict("remind", feedback=[self.reminder()],
                           reason=f"text instead of a tool call: {str(ai.content)[:120]!r}")
        feedback: list[BaseMessage] = []
        problems: list[str] = []
        found: list[Offer] = []
        decided: Verdict | None = None

        def refuse(call_id: str, problem: str) -> None:
            problems.append(problem)
            feedback.append(ToolMessage(problem, tool_call_id=call_id, status="error"))

        for bad in ai.invalid_tool_calls:
            refuse(bad.get("id") or "", f"the arguments of {bad.get('name')!r} are not valid "
                   f"JSON: {bad.get('error') or bad.get('args')}")
        for call in ai.tool_calls:
            name, args, call_id = call["name"], call["args"], call.get("id") or ""
            if decided is not None:
                feedback.append(ToolMessage("ignored: one decision per round",
                                            tool_call_id=call_id))
            elif name == "stop":
                decided = Verdict("stop", reason=str(args.get("reason", ""))
                                  or "the LLM chose to stop")
            elif name == "train_on_gpu":
                try:
                    train = TrainArgs.model_validate(args)
                    config = space.validate(train.params)
                    decided = Verdict("train", choice=attribute(config, [*offers, *found],
                                                                train.tool))
                except ValidationError as exc:
                    refuse(call_id, f"train_on_gpu: {_first_error(exc)}")
                except SpaceError as exc:
                    refuse(call_id, f"train_on_gpu: configuration outside the search space: {exc}")
            elif name in self.tools:
                try:
                    reply = self.tools[name].invoke(call)
                except ValidationError as exc:
                    refuse(call_id, f"{name}: {_first_error(exc)}")
                    continue
                feedback.append(reply)
                artifact = getattr(reply, "artifact", None) or {}
                if "error" in artifact:
                    problems.append(f"{name}: {artifact['error']}")
                found += [(artifact["tool"], c) for c in artifact.get("configs", [])]
            else:
                refuse(call_id, f"unknown tool {name!r}; call one of "
                       f"{sorted([*self.tools, 'train_on_gpu', 'stop'])}")
        if decided is not None:
            return decided
        if problems:
            return Verdict("retry", feedback=feedback, reason="; ".join(problems), offers=found)
        return Verdict("explore", feedback=feedback, offers=found)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "arguments"
    return f"argument {where!r}: {err['msg']}"
