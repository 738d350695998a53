"""The guard: every LLM answer is checked before anything trains, and a round always ends.

Checks, in the order a bad answer fails them: a tool call at all (text gets one reminder), a known
tool, arguments matching the tool's pydantic schema, a configuration inside the search space.
Problems go back to the LLM naming what is wrong (a ``ToolMessage(status="error")`` in the tools
protocol; a user message in the JSON protocol, which has no tool-call ids). The graph bounds the
retries and then lets :func:`fallback` decide, so a session never stalls and never trains an
invalid configuration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool
from pydantic import ValidationError

from asap.agent.decision import DecisionError, parse_decision
from asap.agent.fit import off_centre
from asap.agent.prompt import fmt, label
from asap.prompts import render
from asap.tools.hpo_tools import TrainArgs
from asap.tools.portfolio import Offer
from asap.tools.space import Space, SpaceError
from asap.tools.study import Study


@dataclass
class Verdict:
    """What one LLM answer amounts to.

    ``train``/``stop`` end the round; ``explore`` (a suggest tool ran), ``retry`` (a problem) and
    ``remind`` (text instead of a decision) go back to the LLM with ``feedback``.
    """

    kind: Literal["train", "stop", "retry", "remind", "explore"]
    choice: Offer | None = None
    feedback: list[BaseMessage] = field(default_factory=list)
    reason: str = ""
    offers: list[Offer] = field(default_factory=list)


def same_config(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal as the prompt shows them: an LLM copies floats at the prompt's 6 digits."""
    return a.keys() == b.keys() and all(fmt(a[k]) == fmt(b[k]) for k in a)


def attribute(config: dict[str, Any], offers: Sequence[Offer], claimed: str | None = None) -> Offer:
    """The offer ``config`` copies (its tool and exact values), else the LLM's own config.

    Two tools can offer the same config (random start-up samples); the tool the LLM named wins,
    then the latest offer (what it just asked for).
    """
    matches = [(tool, offered) for tool, offered in offers if same_config(config, offered)]
    named = [m for m in matches if m[0] == claimed]
    return (named or matches or [("llm", config)])[-1]


def check_json(ai: AIMessage, offers: Sequence[Offer], space: Space) -> Verdict:
    """A JSON-protocol answer: a label (``"B"``), ``"stop"``, or the "own" step's object."""
    text = ai.content if isinstance(ai.content, str) else str(ai.content)
    labels = [label(i) for i in range(len(offers))]
    try:
        decision = parse_decision(text, labels)
        if decision.action == "stop":
            return Verdict("stop", reason="the LLM chose to stop")
        if decision.action == "train":
            return Verdict("train", choice=offers[labels.index(decision.choice)])
        return Verdict("train", choice=attribute(space.validate(decision.params), offers))
    except (DecisionError, SpaceError) as exc:
        kind = "remind" if text.lstrip()[:1] not in ('{', '"') else "retry"
        note = render("reminder_json.txt") if kind == "remind" else render("invalid.txt", reason=exc)
        return Verdict(kind, feedback=[HumanMessage(note)], reason=str(exc))


def check_tools(ai: AIMessage, offers: Sequence[Offer], space: Space,
                tools: Mapping[str, BaseTool]) -> Verdict:
    """A tools-protocol answer: ``train_on_gpu``/``stop`` decide, suggest tools explore.

    Every tool call gets an answer (OpenAI requires one per call id); the first valid decision in
    a message wins.
    """
    if not ai.tool_calls and not ai.invalid_tool_calls:
        return Verdict("remind", feedback=[HumanMessage(render("reminder_tools.txt"))],
                       reason=f"text instead of a tool call: {str(ai.content)[:120]!r}")
    feedback: list[BaseMessage] = []
    problems: list[str] = []
    found: list[Offer] = []
    decided: Verdict | None = None

    def refuse(call_id: str, problem: str) -> None:
        problems.append(problem)
        feedback.append(ToolMessage(problem, tool_call_id=call_id, status="error"))

    for bad in ai.invalid_tool_calls:
        refuse(bad.get("id") or "", f"the arguments of {bad.get('name')!r} are not valid JSON: "
               f"{bad.get('error') or bad.get('args')}")
    for call in ai.tool_calls:
        name, args, call_id = call["name"], call["args"], call.get("id") or ""
        if decided is not None:
            feedback.append(ToolMessage("ignored: one decision per round", tool_call_id=call_id))
        elif name == "stop":
            decided = Verdict("stop", reason=str(args.get("reason", "")) or "the LLM chose to stop")
        elif name == "train_on_gpu":
            try:
                train = TrainArgs.model_validate(args)
                config = space.validate(train.params)
                decided = Verdict("train", choice=attribute(config, [*offers, *found], train.tool))
            except ValidationError as exc:
                refuse(call_id, f"train_on_gpu: {_first_error(exc)}")
            except SpaceError as exc:
                refuse(call_id, f"train_on_gpu: configuration outside the search space: {exc}")
        elif name in tools:
            try:
                reply = tools[name].invoke(call)
            except ValidationError as exc:
                refuse(call_id, f"{name}: {_first_error(exc)}")
                continue
            feedback.append(reply)
            artifact = getattr(reply, "artifact", None) or {}
            if "error" in artifact:
                problems.append(f"{name}: {artifact['error']}")
            found += [(artifact["tool"], c) for c in artifact.get("configs", [])]
        else:
            refuse(call_id, f"unknown tool {name!r}; call one of {sorted([*tools, 'train_on_gpu', 'stop'])}")
    if decided is not None:
        return decided
    if problems:
        return Verdict("retry", feedback=feedback, reason="; ".join(problems), offers=found)
    return Verdict("explore", feedback=feedback, offers=found)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "arguments"
    return f"argument {where!r}: {err['msg']}"


def fallback(study: Study, proposals: Sequence[Offer], scored: bool = False) -> Offer:
    """What trains when the LLM does not decide: the prior's pick (A) once the prior has scored
    the round; before that (the first trials: nothing is known of values or costs), the
    proposal nearest the centre of the space (:func:`~asap.agent.fit.off_centre`).

    Why the centre: a typical configuration costs a typical time, where a random start-up
    sample can cost the extreme (on HPOBench car, TPE's first sample trained for 31 minutes,
    and a 15-minute budget ended with no result); the first point of a Sobol design, and the
    default configuration SMAC runs first, sit there too. Deterministic: ties go to the earlier
    proposal.
    """
    if scored:
        return proposals[0]
    return min(proposals, key=lambda offer: off_centre(study.space, offer[1]))
