"""The chat graph's state, its input schema and its run context (the chat model and the
ledger), with the context a LangGraph server gets when a run brings none."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime, get_runtime
from typing_extensions import TypedDict  # Studio's schemas need it on Python 3.11

from asap.agent.llm import chat_model
from asap.tools.ledger import DEFAULT_DB
from asap.tools.types import Cancel


class ChatInput(TypedDict):
    """A person's turn: ``{"messages": [{"role": "user", "content": "tune digits-mlp ..."}]}``."""

    messages: Annotated[list[BaseMessage], add_messages]


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
    db: str = DEFAULT_DB
    base_url: str | None = None
    model: str | None = None
    tune_llm: BaseChatModel | None = None
    space_dir: Path | None = None
    # Set from another thread (the terminal's Ctrl-C) to stop a running session; the terminal
    # clears it before each turn. Server runs get their own (see run_tuning_async).
    cancel: Cancel = field(default_factory=Cancel, compare=False)

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
                       db=os.environ.get("ASAP_DB", DEFAULT_DB))


def chat_context(runtime: Runtime[ChatContext] | None = None) -> ChatContext:
    runtime = runtime or get_runtime(ChatContext)
    return runtime.context if runtime.context is not None else env_context()
