"""The JSON-label protocol: the answer is one JSON string, a proposal's label, "own" or "stop".

For servers that do not parse tool calls for their model (SmolLM2 under llama.cpp answers tool
requests with text but obeys a JSON-schema ``response_format``). An "own" answer is followed by
a second request whose schema is the search space itself (:mod:`asap.agent.llm.decision`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable

from asap.agent.guard import attribute
from asap.agent.llm.client import json_model, timed_invoke
from asap.agent.llm.decision import (
    DecisionError,
    decision_schema,
    is_own,
    label_grammar,
    own_schema,
    parse_decision,
)
from asap.agent.llm.protocols.base import DecisionProtocol, Verdict, label
from asap.prompts import render
from asap.tools.hpo.portfolio import Offer
from asap.tools.hpo.space import Space, SpaceError


class JsonLabelProtocol(DecisionProtocol):
    """Labels under a JSON schema (or, on llama.cpp, the same as an exact GBNF grammar)."""

    name = "json"
    summary = "a proposal's label under a JSON schema"
    brief = True  # the answer is a label: the block need not show configurations

    def request(self, messages: list[BaseMessage], n_labels: int, *,
                cancel: threading.Event | None, trial_number: int, **detail: Any) -> BaseMessage:
        labels = [label(i) for i in range(n_labels)]
        model = json_model(self.llm, decision_schema(labels),
                           grammar=label_grammar(labels) if self.grammar else None)
        answer = timed_invoke(model, messages, study=self.study, protocol=self.name,
                              trial_number=trial_number, cancel=cancel, **detail)
        if not is_own(str(answer.content)):
            return answer
        step = [*messages, answer, HumanMessage(render("own.txt"))]  # the configuration next
        params = timed_invoke(json_model(self.llm, own_schema(self.study.space), "params"),
                              step, study=self.study, protocol=self.name,
                              trial_number=trial_number, cancel=cancel, own=True, **detail)
        return AIMessage(content=_own_answer(str(params.content)),
                         usage_metadata=params.usage_metadata)

    def check(self, answer: BaseMessage, offers: Sequence[Offer], space: Space) -> Verdict:
        """A label (``"B"``), ``"stop"``, or the "own" step's object."""
        text = answer.content if isinstance(answer.content, str) else str(answer.content)
        labels = [label(i) for i in range(len(offers))]
        try:
            decision = parse_decision(text, labels)
            if decision.action == "stop":
                return Verdict("stop", reason="the LLM chose to stop")
            if decision.action == "train":
                return Verdict("train", choice=offers[labels.index(decision.choice)])
            return Verdict("train", choice=attribute(space.validate(decision.params), offers))
        except (DecisionError, SpaceError) as exc:
            if text.lstrip()[:1] not in ('{', '"'):
                return Verdict("remind", feedback=[self.reminder()], reason=str(exc))
            return Verdict("retry", feedback=[HumanMessage(render("invalid.txt", reason=exc))],
                           reason=str(exc))

    def warm_model(self) -> Runnable:
        return self.llm


def _own_answer(params: str) -> str:
    """The two steps of an "own" decision as the one object :meth:`check` reads."""
    try:
        return json.dumps({"action": "own", "params": json.loads(params)})
    except json.JSONDecodeError:
        return '{"action": "own", "params": ' + params  # not JSON: the guard says so
