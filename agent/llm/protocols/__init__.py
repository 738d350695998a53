"""The decision protocols, by name: how the LLM answers a round.

``json`` (:class:`JsonLabelProtocol`): a proposal's label under a JSON schema, for any server
with structured output; ``tools`` (:class:`ToolCallProtocol`): native tool calls. ``auto``
(:func:`pick_protocol`) asks each protocol, by preference, whether the model speaks it. A new
protocol is a module implementing :class:`DecisionProtocol` (with ``speaks`` and ``preference``
where ``auto`` should consider it first), its two prompt templates, and a :func:`register` call.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool

from asap.agent.config import AUTO
from asap.agent.llm.protocols.base import DecisionProtocol, Verdict, label
from asap.agent.llm.protocols.json_label import JsonLabelProtocol
from asap.agent.llm.protocols.tool_calls import ToolCallProtocol
from asap.tools.ledger.study import Study

PROTOCOLS: dict[str, type[DecisionProtocol]] = {}


def register(protocol: type[DecisionProtocol]) -> type[DecisionProtocol]:
    """Add ``protocol`` to :data:`PROTOCOLS`, checked now rather than inside a session's round:
    a name of its own, and the prompt templates it reads (``answer_<name>.txt``,
    ``reminder_<name>.txt`` in :mod:`asap.prompts`). A problem is a ValueError naming it."""
    name = getattr(protocol, "name", None)
    if not isinstance(name, str) or not name.isidentifier() or name == AUTO:
        raise ValueError(f"decision protocol {protocol.__name__}: its name must be an "
                         f"identifier other than {AUTO!r}, got {name!r}")
    if name in PROTOCOLS and PROTOCOLS[name] is not protocol:
        raise ValueError(f"decision protocol {name!r} is registered already "
                         f"({PROTOCOLS[name].__name__})")
    missing = [f for f in (f"answer_{name}.txt", f"reminder_{name}.txt")
               if not resources.files("asap.prompts").joinpath(f).is_file()]
    if missing:
        raise ValueError(f"decision protocol {name!r} needs the prompt template(s) {missing} "
                         "in asap/prompts")
    PROTOCOLS[name] = protocol
    return protocol


register(JsonLabelProtocol)
register(ToolCallProtocol)
DEFAULT = JsonLabelProtocol.name  # what works with any server that has structured output

__all__ = ["AUTO", "DEFAULT", "PROTOCOLS", "DecisionProtocol", "JsonLabelProtocol",
           "ToolCallProtocol", "Verdict", "label",
           "make_protocol", "pick_protocol", "register"]


def make_protocol(name: str, llm: BaseChatModel, study: Study, tools: Sequence[BaseTool] = (),
                  grammar: bool = False) -> DecisionProtocol:
    """The protocol ``name`` bound to a session; an unknown name is an error naming the known."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown decision protocol {name!r}; choose one of {list(PROTOCOLS)}")
    return PROTOCOLS[name](llm, study, tools, grammar)


def pick_protocol(llm: BaseChatModel, mode: str, study: Study | None = None) -> str:
    """The protocol for this endpoint and model: ``mode`` itself, or with ``auto`` the first
    registered protocol, by :attr:`~DecisionProtocol.preference`, whose
    :meth:`~DecisionProtocol.speaks` says this model answers in it (:data:`DEFAULT` if none
    does); the choice and every protocol's reason are a ``protocol`` event."""
    if mode != AUTO:
        return mode
    chosen, reasons = DEFAULT, []
    for protocol in sorted(PROTOCOLS.values(), key=lambda p: -p.preference):  # stable
        ok, why = protocol.speaks(llm)
        reasons.append(f"{protocol.name}: {why}")
        if ok:
            chosen = protocol.name
            break
    if study is not None:
        study.log_event("protocol", chosen=chosen, reason="; ".join(reasons))
    return chosen
