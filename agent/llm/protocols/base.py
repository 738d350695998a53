"""The decision-protocol interface: how a round's question is sent and its answer read.

Why an interface: a protocol touches four places (what the request carries, how the answer is
parsed and validated into a decision, what a reminder or a retry says, what a cache warm-up
sends); as one class, the graph, the guard and the prompt call it and never branch on its name. Add one with a module here, its ``answer_<name>.txt`` and
``reminder_<name>.txt`` prompt templates, and :func:`asap.agent.llm.protocols.register`, which checks
them when it runs.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool

from asap.prompts import render
from asap.tools.hpo.portfolio import Offer
from asap.tools.hpo.space import Space
from asap.tools.ledger.study import Study


def label(i: int) -> str:
    """The label of the i-th proposal (A, B, ...): what the prompt shows and the LLM answers."""
    return chr(65 + i)


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


class DecisionProtocol(ABC):
    """One way for the LLM to answer a round, bound to a session's model and study.

    ``tools``: the session's HPO tools (``train_on_gpu`` and the suggest tools), for protocols
    that let the model call them; ``grammar``: the server takes llama.cpp GBNF grammars.
    """

    name: ClassVar[str]
    summary: ClassVar[str]  # how it answers, for --decide's help
    brief: ClassVar[bool] = True  # proposal lines without configurations unless set otherwise
    preference: ClassVar[int] = 0  # --decide auto asks the protocols in this order, highest first

    @classmethod
    def speaks(cls, llm: BaseChatModel) -> tuple[bool, str]:
        """Whether ``llm`` answers in this protocol, and why: ``--decide auto`` asks every
        registered protocol in order of :attr:`preference`, and the first that says yes decides
        the session's rounds. Here: yes, for a protocol any server can answer; a protocol that
        needs something of the server (native tool calls) probes for it."""
        return True, "any server answers it"

    def __init__(self, llm: BaseChatModel, study: Study, tools: Sequence[BaseTool] = (),
                 grammar: bool = False) -> None:
        self.llm, self.study, self.grammar = llm, study, grammar

    @classmethod
    def answer_text(cls) -> str:
        """The system prompt's paragraph on how to answer."""
        return render(f"answer_{cls.name}.txt").rstrip("\n")

    def reminder(self) -> BaseMessage:
        """What goes back when the model wrote text instead of a decision."""
        return HumanMessage(render(f"reminder_{self.name}.txt"))

    @abstractmethod
    def request(self, messages: list[BaseMessage], n_labels: int, *,
                cancel: threading.Event | None, trial_number: int, **detail: Any) -> BaseMessage:
        """One decision request for a round with ``n_labels`` proposals, timed into the ledger
        (every call it makes is an ``llm_call`` row with ``detail``)."""

    @abstractmethod
    def check(self, answer: BaseMessage, offers: Sequence[Offer], space: Space) -> Verdict:
        """The answer as a :class:`Verdict`: a valid decision, or what to send back."""

    @abstractmethod
    def warm_model(self) -> Runnable:
        """The model as every request sends it (tool definitions included): what a KV-cache
        warm-up must send for its prefix to match."""
